"""WebSocket benchmark peers: objtransport (native and raw) and a plain ``websockets`` pair.

Same contract as :mod:`benchmarks.workers`: ``recv_*`` reports its port then
``(received, bytes, seconds, CPU seconds)``; ``send_*`` sends ``count`` messages and returns
its CPU seconds; ``echo_*`` serves until told to stop, then reports its CPU seconds;
``ping_*`` returns round trips in µs and its CPU seconds. The plain pair runs with compression off,
one WebSocket message per message, as the library's users write it.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection

from .workers import DEADLINE, cpu_seconds

# -- plain websockets ---------------------------------------------------------------------


def recv_plain(pipe: Connection, size: int, count: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> None:
        got = 0
        first = cpu0 = 0.0
        nbytes = 0
        done = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            nonlocal got, first, nbytes, cpu0
            async for msg in ws:
                if not got:
                    first = time.perf_counter()
                    cpu0 = cpu_seconds()
                got += 1
                nbytes += len(msg)
                if got >= count:
                    done.set()

        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            pipe.send(next(iter(server.sockets)).getsockname()[1])
            try:
                await asyncio.wait_for(done.wait(), DEADLINE)
            except TimeoutError:
                pass
            pipe.send((got, nbytes, time.perf_counter() - first, cpu_seconds() - cpu0))

    asyncio.run(main())


def send_plain(port: int, size: int, count: int) -> float:
    from websockets.asyncio.client import connect

    async def main() -> float:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None,
                           proxy=None) as ws:
            payload = b"x" * size
            cpu0 = cpu_seconds()
            for _ in range(count):
                await ws.send(payload)  # drains above the write buffer's high-water mark
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


def echo_plain(pipe: Connection) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            async for msg in ws:
                await ws.send(msg)

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            pipe.send(next(iter(server.sockets)).getsockname()[1])
            cpu0 = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send(cpu_seconds() - cpu0)

    asyncio.run(main())


def ping_plain(port: int, rounds: int, warmup: int) -> tuple[list[float], float]:
    from websockets.asyncio.client import connect

    async def main() -> tuple[list[float], float]:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, proxy=None) as ws:
            payload = b"p" * 64
            out: list[float] = []
            cpu0 = cpu_seconds()
            for i in range(rounds + warmup):
                t = time.perf_counter_ns()
                await ws.send(payload)
                await ws.recv()
                if i >= warmup:
                    out.append((time.perf_counter_ns() - t) / 1000)
            return out, cpu_seconds() - cpu0

    return asyncio.run(main())
