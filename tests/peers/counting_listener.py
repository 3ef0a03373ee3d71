"""A listener in its own process: counts messages, reports JSON lines on stdout.

usage: python -m tests.peers.counting_listener PORT [EXPECTED]
Prints {"port": P} once listening, then {"received": N, "rss_kb": R} every 0.2 s, and exits
after EXPECTED messages (if given) or when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

from objtransport import Message, NetworkTransport


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main(port: int, expected: int | None) -> None:
    received = 0
    numbers: dict[int, int] = {}  # per connection: next expected number (checks order)
    errors = 0

    def on_message(msg: Message) -> None:
        nonlocal received, errors
        received += 1
        if msg.data[:1] == b"#":
            n = int(msg.data[1:].split(b" ")[0])
            if numbers.get(msg.conn_id, 0) != n:
                errors += 1
            numbers[msg.conn_id] = n + 1

    async with NetworkTransport(max_connections=5000) as net:
        listener = await net.listen("127.0.0.1", port, handler=on_message)
        print(json.dumps({"port": listener.port}), flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.run_in_executor(None, sys.stdin.read)
        while not stdin_closed.done():
            print(json.dumps({"received": received, "rss_kb": rss_kb(), "errors": errors,
                              "connections": len(listener.connections)}), flush=True)
            if expected is not None and received >= expected:
                break
            await asyncio.sleep(0.2)
        print(json.dumps({"received": received, "rss_kb": rss_kb(), "errors": errors,
                          "connections": len(listener.connections), "done": True}),
              flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
