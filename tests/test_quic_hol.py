"""Head-of-line blocking, QUIC against TCP, under the same 2 % loss of the client's packets.

Both sides send numbered messages alternating between objtransport streams 1 and 2, one
per loop turn, and count the stream-2 messages delivered while stream 1 has a gap (a
stream-1 message sent earlier is still missing: it waits for a retransmission).

* QUIC: the client's datagrams go through a seeded ``LossyDatagramProxy`` (2 % dropped).
  Each objtransport stream is a QUIC stream of its own, so stream 2 goes on past the gap.
* TCP: both peers run in a network namespace of their own whose nftables drop 2 % of the
  client's segments (all addresses 127.0.0.1 inside it; this kernel has no netem). One
  ordered byte stream: every message sent after a lost segment, of either stream, waits for
  its retransmission, so the count is 0 with retransmissions proven by the namespace's TCP
  counters. This needs root (namespaces, nftables); ``make test`` installs nftables.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("aioquic")

from objtransport import NetworkTransport  # noqa: E402
from objtransport.testing import LossyDatagramProxy  # noqa: E402

from .test_quic import Pem, make_pem  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: the listener's port inside the namespace (a namespace of its own: no other user)
NS_PORT = 7000
DROP_PERCENT = 2


@pytest.fixture(scope="module")
def pem() -> Pem:
    return make_pem()


def past_a_gap(arrived: list[tuple[int, int]]) -> int:
    """Stream-2 messages (flow 1) delivered while stream 1 (flow 0) had a gap: a flow-0
    message sent before them had not arrived yet. Numbers alternate: flow = n % 2."""
    next0 = 0  # the first flow-0 number not delivered yet (each stream stays in order)
    count = 0
    for flow, n in arrived:
        if flow == 0:
            next0 = max(next0, n + 2)
        elif n > next0:
            count += 1
    return count


# -- QUIC: a lossy UDP proxy -----------------------------------------------------------------
async def _lossy_run(pem: Pem, streams: tuple[int, int], seed: int) -> list[tuple[int, int]]:
    """Send 600 numbered messages alternating between two objtransport streams through a
    proxy dropping 2 % of the client's datagrams; return (flow, number) in arrival order."""
    arrived: list[tuple[int, int]] = []
    total = 600
    async with NetworkTransport(timeout=5.0) as server, NetworkTransport(
            timeout=5.0) as client:
        listener = await server.listen(
            "127.0.0.1", 0, transport="quic",
            handler=lambda m: arrived.append((m.data[0], int(m.data[1:]))), **pem.server)
        proxy = await LossyDatagramProxy("127.0.0.1", listener.port, seed=seed,
                                         drop=DROP_PERCENT / 100).start()
        try:
            conn = await client.connect("127.0.0.1", proxy.port, transport="quic",
                                        **pem.client)
            for i in range(total):
                flow = i % 2
                await client.send_data(conn, b"%c%d" % (flow, i), stream=streams[flow])
                await asyncio.sleep(0)  # one message per packet: a loss hits one flow
            await client.flush(conn, timeout=10)
            assert len(proxy.dropped) >= 5
            await client.disconnect(conn)
        finally:
            await proxy.close()
    assert sorted(n for _, n in arrived) == list(range(total))  # nothing lost
    return arrived


# both loops: the QUIC driver stamps aioquic with time.monotonic(), not uvloop's loop.time()
# (1 ms steps: aioquic then paced whole milliseconds at once, and the seeded pattern dropped
# 1 datagram, not >= 5)
@pytest.mark.timeout(60)
async def test_a_loss_on_one_stream_does_not_delay_another(pem: Pem) -> None:
    # objtransport streams 1 and 2: two QUIC streams. Stream 2 goes on while stream 1 waits
    arrived = await _lossy_run(pem, (1, 2), seed=3)
    assert past_a_gap(arrived) > 0
    for flow in (0, 1):  # each stream stays in order
        mine = [n for f, n in arrived if f == flow]
        assert mine == sorted(mine)
    # the same traffic on one stream (one ordered byte stream, as TCP is): both wait
    arrived = await _lossy_run(pem, (0, 0), seed=3)
    assert [n for _, n in arrived] == list(range(600))
    assert past_a_gap(arrived) == 0


# -- TCP: nftables in a network namespace ----------------------------------------------------
_RULES = """
table inet hol {
  chain input {
    type filter hook input priority 0;
    tcp dport %d tcp flags & syn == 0 numgen random mod 100 < %d counter drop
  }
}
"""


def _run(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


@contextmanager
def lossy_namespace(port: int, drop_percent: int) -> Iterator[str]:
    """A network namespace with its loopback up, dropping ``drop_percent`` % of the TCP
    segments to ``port`` (never a SYN: the connect is not what is measured); deleted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a network namespace and nftables rules drop the TCP packets")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make test` installs them as root "
                    "(apt-get install nftables iproute2)")
    name = f"ot-hol-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _run("ip", "netns", "add", name)
    except RuntimeError as e:  # root in a container without CAP_SYS_ADMIN
        pytest.skip(f"this machine refuses a network namespace: {e}")
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        try:
            _run("ip", "netns", "exec", name, "nft", "-f", "-",
                 stdin=_RULES % (port, drop_percent))
        except RuntimeError as e:  # a kernel without nf_tables
            pytest.skip(f"this kernel refuses the nftables rule: {e}")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.mark.timeout(180)
def test_over_tcp_with_the_same_loss_both_streams_wait() -> None:
    with lossy_namespace(NS_PORT, DROP_PERCENT) as ns:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.peers.hol_tcp",
             str(NS_PORT)], capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    arrived = [(flow, n) for flow, n in result["arrived"]]
    sent = result["sent"]
    # segments were lost and sent again (the namespace's own TCP counters)
    assert result["dropped"] >= 3 and result["retrans"] >= 3, result["dropped"]
    assert sorted(n for _, n in arrived) == list(range(sent))  # nothing lost
    # no stream-2 message went past a stream-1 gap: both waited for every retransmission
    assert past_a_gap(arrived) == 0
    assert [n for _, n in arrived] == list(range(sent))
