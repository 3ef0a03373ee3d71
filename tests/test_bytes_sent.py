"""``bytes_sent`` counts payload bytes handed to the socket, not bytes queued; what the
application queued is ``bytes_queued``. A throttled send over TCP shows the difference."""

from __future__ import annotations

import asyncio

import pytest

from objtransport import Message, NetworkTransport
from objtransport.testing import eventually

RATE = 4_000_000  # bytes/s
BURST = 200_000
SIZE = 2_000_000  # half a second at RATE
SLACK = 256 * 1024  # the transport's buffer and one fragment


@pytest.mark.parametrize("framing, parts", [
    ("native", 1),  # one large message: paced fragment by fragment
    ("raw", 40),  # raw frames leave whole: paced message by message
])
async def test_throttled_send_counts_what_left_not_what_was_queued(framing: str,
                                                                   parts: int) -> None:
    got = asyncio.Event()
    received = 0

    def on_message(msg: Message) -> None:
        nonlocal received
        received += len(msg.data)
        if received == SIZE:
            got.set()

    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, framing=framing, handler=on_message)
        conn = await net.connect("127.0.0.1", listener.port, framing=framing,
                                 max_bandwidth=RATE, burst=BURST)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(parts):
            await net.send_data(conn, b"x" * (SIZE // parts))
        samples = []
        while not got.is_set():
            info = net.connection_info(conn)
            samples.append((loop.time() - start, info.bytes_sent, info.bytes_queued))
            try:
                await asyncio.wait_for(got.wait(), 0.05)
            except TimeoutError:
                pass
            assert loop.time() - start < 5.0
        first_t, first_sent, first_queued = samples[0]
        assert first_queued == SIZE  # queued at once ...
        assert first_sent <= BURST + RATE * first_t + SLACK < SIZE  # ... sent at the rate
        for t, sent, _ in samples:  # never ahead of what the bucket allowed
            assert sent <= BURST + RATE * t + SLACK, (t, sent)
        sent_series = [s for _, s, _ in samples]
        assert sent_series == sorted(sent_series)  # a counter: it only grows
        assert len({s for s in sent_series if 0 < s < SIZE}) >= 2  # seen in between
        await eventually(lambda: net.connection_info(conn).bytes_sent == SIZE, 2.0)
        info = net.connection_info(conn)
        assert info.bytes_queued == SIZE
        assert info.send_rate < 2 * RATE


async def test_unthrottled_counters_agree_once_flushed() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0)
        conn = await net.connect("127.0.0.1", listener.port)
        sizes = [10, 20, 300_000, 5]
        for n in sizes:
            await net.send_data(conn, b"y" * n)
        for _ in sizes:
            await net.receive(timeout=5.0)
        info = net.connection_info(conn)
        assert info.bytes_sent == info.bytes_queued == sum(sizes)
        assert net.get_metrics().total_bytes_sent == sum(sizes)
