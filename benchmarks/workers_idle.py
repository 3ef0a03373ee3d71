"""Memory per idle connection: one listener holding ``n`` idle TCP connections.

The listener process measures its Python heap with :mod:`tracemalloc` (started before it
listens; the figure is the growth from before the first connection to after the last, after
``gc.collect()``), divided by the connections it holds. The client process opens the
connections with plain asyncio sockets (so its own cost does not matter): native ones send
the preface and a HELLO like an objtransport client without ACKs and answer the listener's
PINGs. Once all are open, the client PINGs every connection at once and counts the answers
within 1 s (the asyncio baseline echoes a 4-byte message instead); it freezes its own
objects first (``gc.freeze``), so that its own full collection does not fall in the burst.
Both processes' CPU time over the burst is reported per ping (tx: the client, rx: the
listener), and the listener's full collections that fell in it. The listener has just
collected (its heap and tracked objects were measured): a full collection falls in the
burst only if answering makes objects that outlive it (docs/design.md, "Idle connections,
a ping burst").

Both processes raise their ``RLIMIT_NOFILE`` soft limit to the hard limit; a hard limit
below ``n`` + 100 fails the run with a message saying so.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import struct
import time
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .runner import CTX, SRC_VAR, BenchError, Result, import_from, use_loop

SETUP_TIMEOUT = 120.0
_LEN = struct.Struct("!I")
_PING, _PONG = 4, 5


def _raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 100
    if hard != resource.RLIM_INFINITY and hard < need:
        raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _tracked() -> tuple[int, float]:
    """Objects the garbage collector tracks, and how long a full collection over them takes
    (ms, with tracemalloc off: the pause every connection waits behind)."""
    gc.collect()
    t0 = time.perf_counter()
    gc.collect()
    return len(gc.get_objects()), (time.perf_counter() - t0) * 1000


async def _burst(pipe: Connection) -> None:
    """Between "burst" and "done" from the parent: the listener's CPU time (user + sys, s)
    and the full collections (generation 2) that fell in, with their time (ms): sent back."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "burst": the client PINGs next
    full: list[float] = []
    started = [0.0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                full.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(timer)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await loop.run_in_executor(None, pipe.recv)  # "done": the client has its answers
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.remove(timer)
    pipe.send((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, len(full), sum(full)))


async def _held(count: Callable[[], int], n: int, wait: float = 10.0) -> int:
    """The connections the listener holds, once it holds ``n`` (or after ``wait`` s): the
    client may see its connection open before the listener has taken it."""
    for _ in range(int(wait / 0.05)):  # nothing announces the listener's count
        if count() >= n:
            break
        await asyncio.sleep(0.05)
    return count()


# -- listeners ------------------------------------------------------------------------------

def serve_objtransport(pipe: Connection, n: int) -> None:
    from objtransport import NetworkTransport

    _raise_nofile(n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with NetworkTransport(max_connections=n + 10) as net:
            listener = await net.listen("127.0.0.1", 0)
            objs0, _ = _tracked()
            tracemalloc.start()
            base = _heap()
            pipe.send(listener.port)
            await loop.run_in_executor(None, pipe.recv)  # "measure": all are open
            held = await _held(lambda: len(listener.connections), n)
            heap = _heap() - base
            tracemalloc.stop()  # before the pings: dropping the traces takes a while
            objs, gc_ms = _tracked()
            pipe.send((held, heap, objs - objs0, gc_ms))
            await _burst(pipe)
            await loop.run_in_executor(None, pipe.recv)  # "stop"

    asyncio.run(main())


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)


async def echo_server(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Server, list[_Echo]]:
    """A plain asyncio echo server on loopback and the list its connections join."""
    conns: list[_Echo] = []

    def factory() -> _Echo:
        p = _Echo()
        conns.append(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
    return server, conns


def serve_asyncio(pipe: Connection, n: int) -> None:
    _raise_nofile(n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, conns = await echo_server(loop)
        objs0, _ = _tracked()
        tracemalloc.start()
        base = _heap()
        pipe.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, pipe.recv)
        held = await _held(lambda: len(conns), n)
        heap = _heap() - base
        tracemalloc.stop()
        objs, gc_ms = _tracked()
        pipe.send((held, heap, objs - objs0, gc_ms))
        await _burst(pipe)
        await loop.run_in_executor(None, pipe.recv)
        server.close()

    asyncio.run(main())


# -- the client ----------------------------------------------------------------------------

class _Client(asyncio.Protocol):
    """One idle connection: native (preface + HELLO, answers PINGs) or a plain echo peer."""

    def __init__(self, native: bool, opened: Callable[[], None]) -> None:
        self.native = native
        self.opened = opened
        self.buf = bytearray()
        self.ready = False
        self.answered: asyncio.Future[float] | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        if self.native:
            from objtransport.sansio.framing import MAGIC, Hello, encode_hello

            self.t.write(MAGIC + encode_hello(Hello(os.urandom(16), 0, 1 << 20, 1 << 20)))
        else:
            self.ready = True
            self.opened()

    def data_received(self, data: bytes) -> None:
        if not self.native:
            self._answer()
            return
        buf = self.buf
        buf += data
        if not self.ready and len(buf) >= 4:
            del buf[:4]  # the listener's preface
            self.ready = True
            self.opened()
        while len(buf) >= 4:
            (length,) = _LEN.unpack_from(buf)
            if len(buf) < 4 + length:
                break
            ftype = buf[5]
            if ftype == _PING:
                self.t.write(bytes(buf[:4 + length]).replace(b"\x04", b"\x05", 1)
                             if buf[5:6] == b"\x04" else b"")
            elif ftype == _PONG:
                self._answer()
            del buf[:4 + length]

    def _answer(self) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(time.perf_counter() - self.sent_at)

    def ping(self) -> asyncio.Future[float]:
        from objtransport.sansio.framing import FrameType, encode_frame

        self.answered = asyncio.get_running_loop().create_future()
        self.sent_at = time.perf_counter()
        self.t.write(encode_frame(FrameType.PING, b"p" * 8) if self.native else b"ping")
        return self.answered


def open_idle(pipe: Connection, port: int, n: int, native: bool) -> None:
    """Open ``n`` connections; report "open"; on "ping", PING all at once and report
    ``(answered within 1 s, p99 ms, max ms, CPU s)``; close on "stop"."""
    _raise_nofile(n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        all_open = asyncio.Event()
        opened = 0

        def one_opened() -> None:
            nonlocal opened
            opened += 1
            if opened == n:
                all_open.set()

        clients: list[_Client] = []
        sem = asyncio.Semaphore(256)

        async def connect() -> None:
            async with sem:
                _, proto = await loop.create_connection(lambda: _Client(native, one_opened),
                                                        "127.0.0.1", port)
                clients.append(proto)

        await asyncio.gather(*(connect() for _ in range(n)))
        await asyncio.wait_for(all_open.wait(), SETUP_TIMEOUT)
        pipe.send("open")
        if await loop.run_in_executor(None, pipe.recv) != "ping":  # "stop": no burst
            for c in clients:  # (workers_idle_rounds: the listener's keepalive rounds only)
                c.t.close()
            return
        # the measuring tool's own full collection (its 10,000 protocols and transports)
        # must not fall in the burst: the listener's answers are what is measured
        gc.collect()
        gc.freeze()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        futs = [c.ping() for c in clients]
        done, _ = await asyncio.wait(futs, timeout=1.0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        times = sorted(f.result() for f in done)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000 if times else 0.0
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        # each within 1 s of its ping; the p99 and the slowest answer (ms); the client's CPU
        pipe.send((sum(1 for t in times if t <= 1.0), p99,
                   times[-1] * 1000 if times else 0.0, cpu))
        await loop.run_in_executor(None, pipe.recv)  # "stop"
        for c in clients:
            c.t.close()

    asyncio.run(main())


# -- the run --------------------------------------------------------------------------------

def _child(loop: str, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    use_loop(loop)
    import_from(os.environ.get(SRC_VAR, ""))  # --against: the other checkout's package
    target(*args)


def _recv(pipe: Connection, timeout: float, what: str) -> Any:
    if not pipe.poll(timeout):
        raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
    return pipe.recv()


def stop_children(pipes: tuple[Connection, ...], procs: tuple[Any, ...]) -> None:
    """Tell each child "stop" (a pipe already closed is skipped), then join each started
    process for up to 20 s and kill it if it still runs."""
    for pipe in pipes:
        try:
            pipe.send("stop")
        except OSError:
            pass
    for proc in procs:
        if proc is not None:
            proc.join(20)
            if proc.is_alive():
                proc.kill()


def idle(serve: Callable[[Connection, int], None], n: int, native: bool, loop: str) -> Result:
    """Bytes of listener heap per idle connection (value); CPU µs per ping of the client
    (tx: the PINGs sent, the answers read) and of the listener (rx: the answers) over the
    burst; ``extra``: the share of connections that answered a ping within 1 s (%), the
    p99 and the slowest of those answers (ms), the objects the listener's garbage
    collector tracks per connection and how long one full collection over them takes (ms),
    the full collections that fell in the burst and their time (ms)."""
    s_parent, s_child = CTX.Pipe()
    c_parent, c_child = CTX.Pipe()
    server = CTX.Process(target=_child, args=(loop, serve, (s_child, n)), daemon=True)
    server.start()
    client = None
    try:
        port = _recv(s_parent, 30, "the listener's port")
        client = CTX.Process(target=_child, args=(loop, open_idle, (c_child, port, n, native)),
                             daemon=True)
        client.start()
        t0 = time.perf_counter()
        _recv(c_parent, SETUP_TIMEOUT, f"{n} connections to open")
        opened_s = time.perf_counter() - t0
        s_parent.send("measure")
        held, heap, objs, gc_ms = _recv(s_parent, 60, "the listener's heap")
        if held < n:
            raise BenchError(f"the listener holds {held} of {n} connections")
        s_parent.send("burst")
        c_parent.send("ping")
        answered, p99, slowest, client_cpu = _recv(c_parent, 30, "the pings")
        s_parent.send("done")
        listener_cpu, fulls, full_ms = _recv(s_parent, 30, "the listener's CPU time")
        if answered < n:
            raise BenchError(f"{answered} of {n} connections answered a ping within 1 s "
                             f"(p99 {p99:.0f} ms; listener CPU {listener_cpu * 1000:.0f} ms, "
                             f"{fulls} full collections in the burst)")
    finally:
        stop_children((s_parent, c_parent), (client, server))
    return Result(heap / held, sender_cpu_us=client_cpu / n * 1e6,
                  receiver_cpu_us=listener_cpu / n * 1e6,
                  extra={"answered %": 100.0 * answered / n, "p99 ms": p99,
                         "max ms": slowest, "gc objs/conn": objs / held, "full gc ms": gc_ms,
                         "full gcs in burst": fulls, "full gc ms in burst": full_ms},
                  timed_s=opened_s)
