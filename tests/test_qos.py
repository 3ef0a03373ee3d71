"""Throttling, priorities and streams over real sockets on loopback: TCP, TLS, WebSocket,
gRPC and UDP.

Rate tests measure over seconds with margins, never exact timings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from objtransport import Message, NetworkTransport

from .conftest import TLS

MiB = 1024 * 1024
KINDS = ["tcp", "tls", "websocket", "grpc", "udp"]
TWO_KINDS = ["tcp", "websocket", "grpc", "udp"]


def _ends(kind: str, tls: TLS | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """listen() and connect() arguments for a transport kind ("tls" is TCP with TLS)."""
    transport = kind if kind in ("websocket", "grpc", "udp") else "tcp"
    if kind == "tls":
        assert tls is not None
        return ({"transport": transport, "ssl_context": tls.server_ctx},
                {"transport": transport, "ssl_context": tls.client_ctx})
    return {"transport": transport}, {"transport": transport}


async def _measure_rate(net: NetworkTransport, conn: int, seconds: float,
                        received: list[tuple[float, int]], size: int = 16 * 1024) -> float:
    """Send as fast as the API allows for ``seconds``; return the receiver's bytes/s."""
    payload = b"r" * size
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await net.send_data(conn, payload, timeout=10.0)
    await asyncio.sleep(0.2)  # let the last paced bytes arrive
    # the rate over the steady part: after the first burst, until the end
    first_t, first_n = received[min(5, len(received) - 1)]
    last_t, _ = received[-1]
    total = sum(n for _, n in received) - sum(n for _, n in received[:min(5, len(received)-1) + 1])
    return total / (last_t - first_t)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rate", [1 * MiB, 50 * MiB])
async def test_send_rate_within_5_percent_of_the_limit(rate: int, kind: str,
                                                       tls: TLS) -> None:
    received: list[tuple[float, int]] = []

    def on_message(msg: Message) -> None:
        received.append((time.perf_counter(), len(msg.data)))

    async with NetworkTransport() as net:
        lkw, ckw = _ends(kind, tls)
        listener = await net.listen("127.0.0.1", 0, handler=on_message, **lkw)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=rate, **ckw)
        measured = await _measure_rate(net, conn, 5.0, received)
        assert measured == pytest.approx(rate, rel=0.05), measured / rate
        info = net.connection_info(conn)
        assert info.throttle_wait > 1.0 and info.max_bandwidth == rate


async def test_bursts_never_exceed_burst() -> None:
    """Byte counts seen by the receiver in any 50 ms window stay within burst + rate*50ms."""
    received: list[tuple[float, int]] = []
    rate, burst = 2 * MiB, 64 * 1024

    def on_message(msg: Message) -> None:
        received.append((time.perf_counter(), len(msg.data)))

    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0, handler=on_message)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=rate, burst=burst)
        payload = b"b" * 4096
        for _ in range(600):  # 2.4 MB: about 1.2 s
            await net.send_data(conn, payload, timeout=10.0)
        await net.flush(conn, timeout=10.0)
        await asyncio.sleep(0.1)
    window = 0.05
    j = 0
    worst = 0
    acc = 0
    for i, (t, n) in enumerate(received):
        acc += n
        while received[j][0] < t - window:
            acc -= received[j][1]
            j += 1
        worst = max(worst, acc)
        _ = i
    # frames carry a 20-byte header each; allow one frame of slack
    assert worst <= burst + rate * window + 2 * 4116, worst


async def test_global_limit_applies_to_all_connections() -> None:
    received: list[tuple[float, int]] = []

    def on_message(msg: Message) -> None:
        received.append((time.perf_counter(), len(msg.data)))

    async with NetworkTransport(max_bandwidth=2 * MiB) as net, NetworkTransport() as server:
        listener = await server.listen("127.0.0.1", 0, handler=on_message)
        a = await net.connect("127.0.0.1", listener.port)
        b = await net.connect("127.0.0.1", listener.port)
        payload = b"g" * 16 * 1024
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.0

        async def pump(conn: int) -> None:
            while loop.time() < end:
                await net.send_data(conn, payload, timeout=10.0)

        await asyncio.gather(pump(a), pump(b))
        await asyncio.sleep(0.2)
    span = received[-1][0] - received[0][0]
    total = sum(n for _, n in received)
    assert total / span <= 2 * MiB * 1.15


@pytest.mark.parametrize("kind", TWO_KINDS)
async def test_rate_change_at_run_time_takes_effect_within_100_ms(kind: str) -> None:
    received: list[tuple[float, int]] = []

    def on_message(msg: Message) -> None:
        received.append((time.perf_counter(), len(msg.data)))

    async with NetworkTransport() as net:
        lkw, ckw = _ends(kind)
        listener = await net.listen("127.0.0.1", 0, handler=on_message, **lkw)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=64 * 1024,
                                 burst=16 * 1024, **ckw)
        payload = b"c" * 8192
        sender = asyncio.create_task(_pump(net, conn, payload, 3.0))
        await asyncio.sleep(0.5)
        changed = time.perf_counter()
        net.set_bandwidth(conn, 20 * MiB)
        await sender
    before = [n for t, n in received if t < changed]
    after_100ms = [n for t, n in received if changed <= t < changed + 0.1]
    # at 64 KiB/s, 100 ms carries 6.4 KiB; at 20 MiB/s it carries far more
    assert sum(after_100ms) > 10 * 64 * 1024 * 0.1, (sum(before), sum(after_100ms))


async def _pump(net: NetworkTransport, conn: int, payload: bytes, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await net.send_data(conn, payload, timeout=10.0)


@pytest.mark.parametrize("kind", KINDS)
async def test_high_priority_overtakes_a_64_mib_low_message_within_50_ms(
        kind: str, tls: TLS) -> None:
    arrivals: dict[bytes, float] = {}
    done = asyncio.Event()

    def on_message(msg: Message) -> None:
        arrivals[msg.data[:4]] = time.perf_counter()
        if msg.priority == "low":
            done.set()

    async with NetworkTransport(max_message_size=80 * MiB) as net:
        lkw, ckw = _ends(kind, tls)
        listener = await net.listen("127.0.0.1", 0, handler=on_message, **lkw)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=20 * MiB, **ckw)
        # the low send waits (backpressure: 64 MiB is far over max_pending_bytes) ...
        low = asyncio.create_task(net.send_data(conn, b"LOW!" + bytes(64 * MiB),
                                                priority="low", timeout=10.0))
        await asyncio.sleep(0.5)  # the big message is in flight
        assert not low.done()
        sent = time.perf_counter()
        # ... but a high message does not wait behind a low backlog
        await net.send_data(conn, b"HIGH" + bytes(96), priority="high")
        await asyncio.wait_for(done.wait(), 10)
        await low
    assert arrivals[b"HIGH"] - sent < 0.05, arrivals[b"HIGH"] - sent
    assert arrivals[b"HIGH"] < arrivals[b"LOW!"]


@pytest.mark.parametrize("kind", TWO_KINDS)
async def test_normal_and_low_share_by_weights_under_saturation(kind: str) -> None:
    got = {"normal": 0, "low": 0}
    received_at: list[float] = []

    def on_message(msg: Message) -> None:
        got[msg.priority] += len(msg.data)
        received_at.append(time.perf_counter())

    async with NetworkTransport() as net:
        lkw, ckw = _ends(kind)
        listener = await net.listen("127.0.0.1", 0, handler=on_message, **lkw)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=8 * MiB,
                                 max_pending_bytes=64 * MiB, max_unacked_bytes=64 * MiB, **ckw)
        payload = b"w" * 16 * 1024
        for _ in range(1000):  # 16 MB of each, far more than 1.5 s at 8 MiB/s
            await net.send_data(conn, payload, priority="normal")
            await net.send_data(conn, payload, priority="low")
        await asyncio.sleep(1.5)
        await net.disconnect(conn, timeout=0.1)
    ratio = got["normal"] / max(1, got["low"])
    assert ratio == pytest.approx(4.0, rel=0.10), got


@pytest.mark.parametrize("kind", TWO_KINDS)
async def test_streams_are_ordered_independently(kind: str) -> None:
    order: list[tuple[int, int]] = []
    done = asyncio.Event()

    def on_message(msg: Message) -> None:
        order.append((msg.stream, len(msg.data)))
        if len(order) == 4:
            done.set()

    async with NetworkTransport() as net:
        lkw, ckw = _ends(kind)
        listener = await net.listen("127.0.0.1", 0, handler=on_message, **lkw)
        conn = await net.connect("127.0.0.1", listener.port, max_bandwidth=20 * MiB, **ckw)
        await net.send_data(conn, bytes(8 * MiB), stream=1)  # ~0.4 s at 20 MiB/s
        await net.send_data(conn, b"after big, same stream", stream=1)
        await net.send_data(conn, b"s2 one", stream=2)
        await net.send_data(conn, b"s2 two", stream=2)
        await asyncio.wait_for(done.wait(), 10)
    assert order[:2] == [(2, 6), (2, 6)]  # stream 2 did not wait for stream 1's big message
    assert order[2:] == [(1, 8 * MiB), (1, 22)]  # stream 1 kept its own order


# not UDP: it has no flow control to slow the sender with; a throttled UDP reader could only
# drop datagrams, which max_receive_bandwidth does not do (docs/design.md, UDP)
@pytest.mark.parametrize("kind", ["tcp", "websocket", "grpc"])
async def test_receive_throttle_slows_a_fast_sender_without_buffering(kind: str) -> None:
    received: list[tuple[float, int]] = []

    def on_message(msg: Message) -> None:
        received.append((time.perf_counter(), len(msg.data)))

    async with NetworkTransport() as server, NetworkTransport() as client:
        lkw, ckw = _ends(kind)
        listener = await server.listen("127.0.0.1", 0, handler=on_message,
                                       max_receive_bandwidth=2 * MiB, **lkw)
        conn = await client.connect("127.0.0.1", listener.port, max_pending_bytes=MiB, **ckw)
        await _pump(client, conn, b"f" * 16 * 1024, 2.0)
        span = received[-1][0] - received[0][0]
        total = sum(n for _, n in received)
        assert total / span < 2 * MiB * 1.3  # read at the limit (plus socket buffers)
        # the sender was held back by TCP flow control, not buffered without bound
        assert client.connection_info(conn).pending_bytes <= 4 * MiB
        (sid,) = list(listener.connections)
        assert server.connection_info(sid).max_receive_bandwidth == 2 * MiB


async def test_qos_metrics() -> None:
    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0)
        conn = await net.connect("127.0.0.1", listener.port)
        await net.send_data(conn, b"h" * 10, priority="high")
        await net.send_data(conn, b"l" * 20, priority="low")
        await net.send_data(conn, b"n" * 30)
        for _ in range(3):
            await net.receive(timeout=5.0)
        info = net.connection_info(conn)
        assert info.sent_messages_by_priority == {"control": 0, "high": 1, "normal": 1,
                                                  "low": 1}
        assert info.sent_bytes_by_priority["low"] == 20 + 20  # payload + frame header
        m = net.get_metrics()
        assert m.sent_messages_by_priority["high"] == 1
        assert set(m.queued_bytes_by_priority) == {"control", "high", "normal", "low"}
