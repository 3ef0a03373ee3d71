"""Benchmark peers. Each runs in its own process (spawned), on 127.0.0.1 only.

Throughput: ``recv_*`` binds, reports its port, counts ``count`` messages and reports
``(received, bytes, seconds, CPU seconds)``, both from its first message to its last;
``send_*`` sends ``count`` messages as fast as its API allows and returns the CPU seconds of
its sending loop (until everything is handed to the kernel). Latency: ``echo_*`` serves
until told to stop, then reports its CPU seconds; ``ping_*`` returns its round trips in µs
and the CPU seconds of its loop. CPU is :func:`cpu_seconds`: user + sys of the whole process.
"""

from __future__ import annotations

import asyncio
import resource
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

LEN = struct.Struct("!I")
DEADLINE = 60.0


def cpu_seconds() -> float:
    """User + sys CPU time of this process so far, all threads included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime

# -- objtransport -------------------------------------------------------------------------


def recv_objtransport(pipe: Connection, size: int, count: int, transport: str = "tcp") -> None:
    """A listener of ``transport``: native or raw per connection (the sender's choice)."""
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        got = 0
        first = cpu0 = 0.0
        nbytes = 0
        done = asyncio.Event()

        def on_message(msg: Message) -> None:
            nonlocal got, first, nbytes, cpu0
            if not got:
                first = time.perf_counter()
                cpu0 = cpu_seconds()
            got += 1
            nbytes += len(msg.data)
            if got >= count:
                done.set()

        async with NetworkTransport() as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_message,
                                        transport=transport)
            pipe.send(listener.port)
            try:
                await asyncio.wait_for(done.wait(), DEADLINE)
            except TimeoutError:
                pass
            pipe.send((got, nbytes, time.perf_counter() - first, cpu_seconds() - cpu0))

    asyncio.run(main())


def recv_objtransport_batch(pipe: Connection, size: int, count: int) -> None:
    """A TCP listener whose handler takes one Batch per read (``batch=True``)."""
    from objtransport import Batch, NetworkTransport

    async def main() -> None:
        got = 0
        first = cpu0 = 0.0
        nbytes = 0
        done = asyncio.Event()

        def on_batch(batch: Batch) -> None:
            nonlocal got, first, nbytes, cpu0
            if not got:
                first = time.perf_counter()
                cpu0 = cpu_seconds()
            got += len(batch.payloads)
            nbytes += batch.nbytes
            if got >= count:
                done.set()

        async with NetworkTransport() as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_batch, batch=True)
            pipe.send(listener.port)
            try:
                await asyncio.wait_for(done.wait(), DEADLINE)
            except TimeoutError:
                pass
            pipe.send((got, nbytes, time.perf_counter() - first, cpu_seconds() - cpu0))

    asyncio.run(main())


def send_objtransport(port: int, size: int, count: int,
                      options: dict[str, Any] | None = None,
                      priorities: tuple[str, ...] = ("normal",), transport: str = "tcp",
                      framing: str = "native") -> float:
    """Send ``count`` messages; ``priorities`` are used in turn (a QoS mix)."""
    from objtransport import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE, **(options or {})) as net:
            conn = await net.connect("127.0.0.1", port, transport=transport, framing=framing)
            payload = b"x" * size
            cpu0 = cpu_seconds()
            if len(priorities) == 1:
                for _ in range(count):
                    await net.send_data(conn, payload)
            else:
                k = len(priorities)
                for i in range(count):
                    await net.send_data(conn, payload, priority=priorities[i % k])
            await net.flush(conn, timeout=DEADLINE)
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


def send_many_objtransport(port: int, size: int, count: int, batch: int = 1000) -> float:
    """Send ``count`` messages with ``send_many``, ``batch`` at a time."""
    from objtransport import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port)
            payloads = [b"x" * size] * batch
            cpu0 = cpu_seconds()
            for _ in range(count // batch):
                await net.send_many(conn, payloads)
            if count % batch:
                await net.send_many(conn, payloads[:count % batch])
            await net.flush(conn, timeout=DEADLINE)
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


def echo_objtransport(pipe: Connection, transport: str = "tcp") -> None:
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        async with NetworkTransport() as net:
            def echo(msg: Message) -> None:  # a plain handler replies without awaiting
                net.send_nowait(msg.conn_id, msg.data)

            listener = await net.listen("127.0.0.1", 0, handler=echo, transport=transport)
            pipe.send(listener.port)
            cpu0 = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send(cpu_seconds() - cpu0)

    asyncio.run(main())


def ping_objtransport(port: int, rounds: int, warmup: int, transport: str = "tcp",
                      framing: str = "native") -> tuple[list[float], float]:
    from objtransport import NetworkTransport

    async def main() -> tuple[list[float], float]:
        async with NetworkTransport() as net:
            conn = await net.connect("127.0.0.1", port, transport=transport, framing=framing)
            payload = b"p" * 64
            out: list[float] = []
            cpu0 = cpu_seconds()
            for i in range(rounds + warmup):
                t = time.perf_counter_ns()
                await net.send_data(conn, payload)
                await net.receive(conn, timeout=5.0)
                if i >= warmup:
                    out.append((time.perf_counter_ns() - t) / 1000)
            return out, cpu_seconds() - cpu0

    return asyncio.run(main())

# -- plain asyncio: one write per message, a length-prefix Protocol receiver --------------


class _Counter(asyncio.Protocol):
    def __init__(self, pipe: Connection, count: int, done: asyncio.Event) -> None:
        self.pipe, self.count, self.done = pipe, count, done
        self.buf = bytearray()
        self.got = 0
        self.nbytes = 0
        self.first = self.cpu0 = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.got and not self.buf:
            self.first = time.perf_counter()
            self.cpu0 = cpu_seconds()
        buf = self.buf
        buf += data
        off = 0
        n = len(buf)
        while n - off >= 4:
            (length,) = LEN.unpack_from(buf, off)
            if n - off - 4 < length:
                break
            msg = bytes(buf[off + 4:off + 4 + length])
            self.nbytes += len(msg)
            self.got += 1
            off += 4 + length
        del buf[:off]
        if self.got >= self.count:
            self.done.set()


def recv_asyncio(pipe: Connection, size: int, count: int) -> None:
    async def main() -> None:
        done = asyncio.Event()
        proto: list[_Counter] = []

        def factory() -> _Counter:
            proto.append(_Counter(pipe, count, done))
            return proto[-1]

        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        pipe.send(server.sockets[0].getsockname()[1])
        try:
            await asyncio.wait_for(done.wait(), DEADLINE)
        except TimeoutError:
            pass
        p = proto[0]
        pipe.send((p.got, p.nbytes, time.perf_counter() - p.first, cpu_seconds() - p.cpu0))
        server.close()

    asyncio.run(main())


def send_asyncio(port: int, size: int, count: int) -> float:
    async def main() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = b"x" * size
        head = LEN.pack(size)
        cpu0 = cpu_seconds()
        for _ in range(count):
            writer.write(head + payload)  # one write per message
            await writer.drain()
        await writer.drain()
        cpu = cpu_seconds() - cpu0
        await asyncio.sleep(0.2)
        writer.close()
        return cpu

    return asyncio.run(main())


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)


def echo_asyncio(pipe: Connection) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
        pipe.send(server.sockets[0].getsockname()[1])
        cpu0 = cpu_seconds()
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        pipe.send(cpu_seconds() - cpu0)
        server.close()

    asyncio.run(main())


class _Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.need = 0

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.need -= len(data)
        if self.need <= 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def ping_asyncio(port: int, rounds: int, warmup: int) -> tuple[list[float], float]:
    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Pinger, "127.0.0.1", port)
        payload = LEN.pack(64) + b"p" * 64
        out: list[float] = []
        cpu0 = cpu_seconds()
        for i in range(rounds + warmup):
            proto.need = len(payload)
            proto.waiter = loop.create_future()
            t = time.perf_counter_ns()
            proto.t.write(payload)
            await proto.waiter
            if i >= warmup:
                out.append((time.perf_counter_ns() - t) / 1000)
        cpu = cpu_seconds() - cpu0
        proto.t.close()
        return out, cpu

    return asyncio.run(main())

# -- pyzmq --------------------------------------------------------------------------------


def recv_pyzmq(pipe: Connection, size: int, count: int) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    pipe.send(port)
    sock.setsockopt(zmq.RCVTIMEO, int(DEADLINE * 1000))
    got = nbytes = 0
    first = cpu0 = 0.0
    try:
        while got < count:
            msg = sock.recv(copy=size < 65536)
            if not got:
                first = time.perf_counter()
                cpu0 = cpu_seconds()
            got += 1
            nbytes += len(msg)
    except zmq.Again:
        pass
    pipe.send((got, nbytes, time.perf_counter() - first, cpu_seconds() - cpu0))
    sock.close(linger=0)
    ctx.term()


def send_pyzmq(port: int, size: int, count: int) -> float:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(f"tcp://127.0.0.1:{port}")
    payload = b"x" * size
    cpu0 = cpu_seconds()
    for _ in range(count):
        sock.send(payload, copy=size < 65536)
    sock.close(linger=int(DEADLINE * 1000))
    ctx.term()  # returns once everything queued is sent
    return cpu_seconds() - cpu0


def echo_pyzmq(pipe: Connection) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    pipe.send(port)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    cpu0 = cpu_seconds()
    while not pipe.poll(0):
        if poller.poll(100):
            sock.send(sock.recv())
    pipe.send(cpu_seconds() - cpu0)
    sock.close(linger=0)
    ctx.term()


def ping_pyzmq(port: int, rounds: int, warmup: int) -> tuple[list[float], float]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(f"tcp://127.0.0.1:{port}")
    payload = b"p" * 64
    out: list[float] = []
    cpu0 = cpu_seconds()
    for i in range(rounds + warmup):
        t = time.perf_counter_ns()
        sock.send(payload)
        sock.recv()
        if i >= warmup:
            out.append((time.perf_counter_ns() - t) / 1000)
    cpu = cpu_seconds() - cpu0
    sock.close(linger=0)
    ctx.term()
    return out, cpu
