"""Listeners on every core (issue 16): aggregate 64 B msg/s into ``objtransport.serve``
with ``workers=2`` against ``workers=1``, next to a plain asyncio server (one process).

The senders must not eat the cores the receivers are measured on (a 2-core machine): each
of :data:`SENDERS` processes holds one blocking TCP connection and writes pre-encoded raw
frames (4-byte length + 64 B) 64 KiB at a time, so a sender costs a system call per ~970
messages and the receivers are the bottleneck. The listeners use raw framing (the same bytes
for every implementation). With 8 connections spread by the kernel over 2 workers, each
worker has one at least (p = 99 %).

Measured over a window while every sender is still sending (after a warm-up): messages the
receivers handed to their handlers (objtransport: the workers' ``messages_received`` added up
by the pool parent; asyncio: its protocol's count), divided by the window. CPU per message is
the receiving processes' user + sys over the window (``/proc/PID/stat`` of each worker; the
asyncio server's own ``getrusage``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from .runner import CTX, BenchError, Result, use_loop
from .workers import cpu_seconds

SIZE = 64
SENDERS = 8
WARMUP = 0.5
LEN = struct.Struct("!I")
_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + sys CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def serve_pool(pipe: Connection, loop: str, workers: int, window: float) -> None:
    """The pool's parent: start ``workers`` sinks on one port, report it, then measure."""
    use_loop(loop)
    from objtransport import WorkerPool
    from objtransport.workers import sink

    async def main() -> None:
        async with WorkerPool(sink, "127.0.0.1", 0, workers=workers, framing="raw",
                              stop_timeout=20.0) as pool:
            pipe.send(pool.port)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # senders run
            for _ in range(1200):  # every sender connected (at most 60 s)
                if (await pool.metrics()).active_connections >= SENDERS:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(WARMUP)
            pids = pool.pids
            m0, c0, t0 = await pool.metrics(), sum(map(_proc_cpu, pids)), time.perf_counter()
            await asyncio.sleep(window)
            m1, c1, t1 = await pool.metrics(), sum(map(_proc_cpu, pids)), time.perf_counter()
            got = m1.messages_received - m0.messages_received
            pipe.send((got, t1 - t0, c1 - c0))

    asyncio.run(main())


class _Count(asyncio.Protocol):
    """A plain length-prefix receiver: one ``bytes`` per message, counted."""

    got = 0
    connections = 0

    def __init__(self) -> None:
        self.buf = bytearray()
        _Count.connections += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        off, n, got = 0, len(buf), 0
        while n - off >= 4:
            (length,) = LEN.unpack_from(buf, off)
            if n - off - 4 < length:
                break
            bytes(buf[off + 4:off + 4 + length])  # what a handler would be given
            got += 1
            off += 4 + length
        del buf[:off]
        _Count.got += got


def serve_asyncio(pipe: Connection, loop: str, window: float) -> None:
    use_loop(loop)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Count, "127.0.0.1", 0,
                                                                 backlog=64)
        pipe.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        for _ in range(1200):  # every sender connected (at most 60 s)
            if _Count.connections >= SENDERS:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(WARMUP)
        n0, c0, t0 = _Count.got, cpu_seconds(), time.perf_counter()
        await asyncio.sleep(window)
        n1, c1, t1 = _Count.got, cpu_seconds(), time.perf_counter()
        pipe.send((n1 - n0, t1 - t0, c1 - c0))
        server.close()

    asyncio.run(main())


def send_raw(port: int, seconds: float) -> None:
    """One blocking connection; 64 KiB of pre-encoded raw frames per write, until the
    server goes (or ``seconds``)."""
    chunk = (LEN.pack(SIZE) + b"x" * SIZE) * (65536 // (SIZE + 4))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sock.sendall(chunk)
    except OSError:
        pass
    finally:
        sock.close()


def run(server: Any, args: tuple[Any, ...], loop: str, scale: float) -> Result:
    """One measurement: the server process, :data:`SENDERS` senders, the window's rate."""
    window = max(0.5, 2.0 * scale)
    parent, child = CTX.Pipe()
    srv = CTX.Process(target=server, args=(child, loop, *args, window), daemon=False)
    srv.start()
    senders = []
    try:
        if not parent.poll(60):
            raise BenchError("the server did not report its port within 60 s")
        port = parent.recv()
        senders = [CTX.Process(target=send_raw, args=(port, 120.0), daemon=True)
                   for _ in range(SENDERS)]
        for p in senders:
            p.start()
        parent.send("go")
        if not parent.poll(90 + window):
            raise BenchError(f"no figure from the server (exit code {srv.exitcode})")
        got, seconds, cpu = parent.recv()
    finally:
        srv.join(30)
        for p in senders:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        srv.join(30)
        if srv.is_alive():
            srv.kill()
            srv.join(5)
    if got <= 0:
        raise BenchError("nothing received in the window")
    return Result(got / seconds, receiver_cpu_us=cpu / got * 1e6, timed_s=seconds)
