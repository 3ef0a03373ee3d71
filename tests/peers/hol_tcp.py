"""Two objtransport streams over one TCP connection, for the head-of-line test.

usage: ip netns exec NS python -m tests.peers.hol_tcp PORT
Run inside a network namespace whose nftables drop some of the client's packets to PORT
(tests/test_quic_hol.py sets it up). A listener on 127.0.0.1:PORT and a client in this
process: the client sends numbered messages alternating between streams 1 and 2, one per
loop turn (one per segment, as the QUIC side sends one per packet), in rounds of 200 until
the namespace's nftables counter shows at least MIN_LOST dropped segments and its TCP
counters as many retransmitted ones (or MAX_ROUNDS rounds), each round acknowledged before
the next. Prints one JSON line:
``{"arrived": [[flow, n], ...], "sent": N, "retrans": R, "dropped": D}``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

from objtransport import Message, NetworkTransport

ROUND = 200
MIN_LOST = 3
MAX_ROUNDS = 50


def retransmitted() -> int:
    """TCP segments retransmitted in this network namespace (/proc/net/snmp is per netns)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("RetransSegs")])


def dropped() -> int:
    """Segments the namespace's nftables rule (table inet hol) dropped so far."""
    ruleset = subprocess.run(["nft", "list", "table", "inet", "hol"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    match = re.search(r"counter packets (\d+)", ruleset)
    return int(match.group(1)) if match else 0


async def main(port: int) -> None:
    arrived: list[tuple[int, int]] = []

    def on_message(msg: Message) -> None:
        arrived.append((msg.data[0], int(msg.data[1:])))

    base = retransmitted()
    sent = 0
    async with NetworkTransport(timeout=10.0) as server, NetworkTransport(
            timeout=10.0) as client:
        await server.listen("127.0.0.1", port, handler=on_message)
        conn = await client.connect("127.0.0.1", port)
        for _ in range(MAX_ROUNDS):
            for _ in range(ROUND):
                flow = sent % 2
                await client.send_data(conn, b"%c%d" % (flow, sent), stream=1 + flow)
                sent += 1
                await asyncio.sleep(0)
            # each round is acknowledged before the next: messages queued behind a
            # retransmission timeout would leave as a few large segments, and a loaded
            # machine once ran all rounds on 2 drops that way
            await client.flush(conn, timeout=30)
            if retransmitted() - base >= MIN_LOST and dropped() >= MIN_LOST:
                break
        await client.flush(conn, timeout=30)
        await client.disconnect(conn)
    print(json.dumps({"arrived": arrived, "sent": sent, "retrans": retransmitted() - base,
                      "dropped": dropped()}),
          flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(int(sys.argv[1])), 120))
