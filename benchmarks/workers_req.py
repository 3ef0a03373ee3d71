"""Request/reply and compression benchmark peers (issue 15).

Request/reply: ``serve_*(pipe)`` answers every request with its payload, reports its port,
serves until told "stop", then reports its CPU seconds; ``ask_*(port, count, inflight)``
keeps ``inflight`` requests of 64 B outstanding until ``count`` were answered and returns
``(seconds, CPU seconds)`` of that loop. Implementations: objtransport ``request()``, grpc.aio
unary calls (bytes in, bytes out, no protobuf), and a pyzmq DEALER/ROUTER pair with a request
id frame (blocking sockets, a window of ``inflight``).

Compression: the sender of :mod:`benchmarks.workers` with JSON-like text instead of b"x"
(which any codec shrinks to nothing) over a connection throttled to 10 MB/s.
"""

from __future__ import annotations

import asyncio
import json
import time
from multiprocessing.connection import Connection
from typing import Any

from .runner import CASE_TIMEOUT, CTX, START_TIMEOUT, Result, _get, _reap, _start
from .workers import DEADLINE, cpu_seconds

PAYLOAD = b"q" * 64


def reqrep(serve: Any, ask: Any, count: int, inflight: int, loop: str) -> Result:
    """Requests answered per second (receiver = the server's CPU per request)."""
    s_parent, s_child = CTX.Pipe()
    c_parent, c_child = CTX.Pipe()
    server = _start("server", loop, serve, (s_child,), s_parent, s_child, False)
    client = None
    stopped = False
    try:
        port = _get(server, [server], START_TIMEOUT, "the server's port")
        client = _start("client", loop, ask, (port, count, inflight), c_parent, c_child, True)
        seconds, ask_cpu = _get(client, [client, server], CASE_TIMEOUT, "the answers")
        s_parent.send("stop")
        stopped = True
        serve_cpu = _get(server, [server], START_TIMEOUT, "the server's CPU time")
    finally:
        if not stopped:
            try:
                s_parent.send("stop")
            except OSError:
                pass
        _reap([client, server])
    return Result(count / seconds, sender_cpu_us=ask_cpu / count * 1e6,
                  receiver_cpu_us=serve_cpu / count * 1e6, timed_s=seconds)


async def _windowed(call: Any, count: int, inflight: int) -> tuple[float, float]:
    """``inflight`` workers, each awaiting ``call()`` in turn, ``count`` calls in all."""
    for _ in range(min(inflight, 50)):  # warm-up
        await call()
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return time.perf_counter() - t0, cpu_seconds() - cpu0


# -- objtransport ------------------------------------------------------------------------------
def serve_objtransport(pipe: Connection) -> None:
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        async with NetworkTransport() as net:
            def answer(msg: Message) -> bytes:
                return msg.data

            listener = await net.listen("127.0.0.1", 0, handler=answer)
            pipe.send(listener.port)
            cpu0 = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send(cpu_seconds() - cpu0)

    asyncio.run(main())


def ask_objtransport(port: int, count: int, inflight: int) -> tuple[float, float]:
    from objtransport import NetworkTransport

    async def main() -> tuple[float, float]:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port)
            return await _windowed(lambda: net.request(conn, PAYLOAD), count, inflight)

    return asyncio.run(main())


# -- grpc.aio unary ------------------------------------------------------------------------------
def serve_grpc(pipe: Connection) -> None:
    import grpc

    async def main() -> None:
        async def call(request: bytes, context: Any) -> bytes:
            return request

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        pipe.send(port)
        cpu0 = cpu_seconds()
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        pipe.send(cpu_seconds() - cpu0)
        await server.stop(0)

    asyncio.run(main())


def ask_grpc(port: int, count: int, inflight: int) -> tuple[float, float]:
    import grpc

    async def main() -> tuple[float, float]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = channel.unary_unary("/bench.Echo/Call")
            return await _windowed(lambda: stub(PAYLOAD, timeout=DEADLINE), count, inflight)

    return asyncio.run(main())


# -- pyzmq DEALER/ROUTER ---------------------------------------------------------------------------
def serve_pyzmq(pipe: Connection) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    pipe.send(port)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    cpu0 = cpu_seconds()
    while not pipe.poll(0):
        if poller.poll(100):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                sock.send_multipart(frames)  # [identity, request id, payload]
    pipe.send(cpu_seconds() - cpu0)
    sock.close(linger=0)
    ctx.term()


def ask_pyzmq(port: int, count: int, inflight: int) -> tuple[float, float]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.setsockopt(zmq.RCVTIMEO, int(DEADLINE * 1000))
    pending: set[int] = set()

    def run(n: int) -> None:
        sent = 0
        done = 0
        while done < n:
            while sent < n and len(pending) < inflight:
                sent += 1
                pending.add(sent)
                sock.send_multipart([sent.to_bytes(8, "big"), PAYLOAD])
            rid, _ = sock.recv_multipart()
            pending.discard(int.from_bytes(rid, "big"))  # correlated, as a client would
            done += 1

    run(min(inflight, 50))
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    run(count)
    out = time.perf_counter() - t0, cpu_seconds() - cpu0
    sock.close(linger=0)
    ctx.term()
    return out


# -- compression over a throttled link ----------------------------------------------------------
def json_text(size: int) -> bytes:
    """About ``size`` bytes of JSON-like telemetry text."""
    rows = []
    n = 0
    i = 0
    while n < size:
        row = json.dumps({"id": i, "sensor": f"s-{i % 97}", "value": round(i * 0.37, 2),
                          "unit": "degC", "ok": i % 5 != 0})
        rows.append(row)
        n += len(row) + 1
        i += 1
    return ("[" + ",".join(rows) + "]").encode()[:size]


def send_compressed(port: int, size: int, count: int, compression: str | None,
                    rate: float = 10e6) -> float:
    from objtransport import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port, max_bandwidth=rate,
                                     compression=compression)  # type: ignore[arg-type]
            payload = json_text(size)
            cpu0 = cpu_seconds()
            for _ in range(count):
                await net.send_data(conn, payload, timeout=DEADLINE)
            await net.flush(conn, timeout=DEADLINE)
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())
