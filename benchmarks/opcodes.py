"""Bytecodes executed per 64 B ping-pong round trip: ``python -m benchmarks.opcodes``.

Both peers run in one process on uvloop (a listener with a plain echo handler, a client
that does ``send_data`` + ``receive``, as the bench's workers do), under a tracer that
counts every bytecode instruction (``f_trace_opcodes``) per function, or per line with
``--lines``. Two runs (500 and 1,500 round trips) are subtracted so that set-up drops out.
The count does not depend on the machine's load: it is the measure to compare two commits
by when CPU figures move by less than their noise (design.md, ping-pong round 4). The delayed
ACK is pushed back (the tracer slows each round trip past its 5 ms) so that only the
per-message path is counted; C calls (``len``, ``struct``, the transport) are not counted.

    .venv/bin/python -m benchmarks.opcodes
    .venv/bin/python -m benchmarks.opcodes --lines --top 200
"""

from __future__ import annotations

import argparse
import collections
import linecache
import logging
import sys
from types import FrameType
from typing import Any

import uvloop

import objtransport.sansio.handshake as handshake
from objtransport import Message, NetworkTransport

_counts: collections.Counter[tuple[str, str, int]] = collections.Counter()
_by_line = False


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        co = frame.f_code
        _counts[(co.co_filename, co.co_name, (frame.f_lineno or 0) if _by_line else 0)] += 1
    return _local


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    frame.f_trace_lines = False
    return _local


async def _pingpong(rounds: int) -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        def echo(msg: Message) -> None:
            server.send_nowait(msg.conn_id, msg.data)

        listener = await server.listen("127.0.0.1", 0, handler=echo)
        conn = await client.connect("127.0.0.1", listener.port)
        payload = b"p" * 64
        for _ in range(200):
            await client.send_data(conn, payload)
            await client.receive(conn, timeout=5.0)
        sys.settrace(_tracer)
        try:
            for _ in range(rounds):
                await client.send_data(conn, payload)
                await client.receive(conn, timeout=5.0)
        finally:
            sys.settrace(None)


def _run(rounds: int) -> dict[tuple[str, str, int], int]:
    _counts.clear()
    uvloop.run(_pingpong(rounds))
    return dict(_counts)


def main() -> None:
    global _by_line
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", action="store_true", help="per line, not per function")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    _by_line = a.lines
    handshake.ACK_DELAY = 1000.0  # see the module's docstring
    logging.disable(logging.WARNING)  # the pushed-back ACK leaves messages unacknowledged
    few, many = _run(500), _run(1500)
    total = (sum(many.values()) - sum(few.values())) / 1000
    print(f"bytecodes per round trip (both peers): {total:.1f}")
    rows = sorted(((v - few.get(k, 0)) / 1000, k) for k, v in many.items())
    for count, (path, name, line) in reversed(rows[-a.top:]):
        where = f"{path.rsplit('/', 1)[-1]}:{line if a.lines else name}"
        text = linecache.getline(path, line).strip()[:90] if a.lines else ""
        print(f"  {count:7.1f}  {where}  {text}")


if __name__ == "__main__":
    main()
