"""The sender's hot paths: the plain DATA header, ``queue`` and ``queue_many`` into the
small-frame buffer, and their accounting when a message is refused."""

from __future__ import annotations

import pytest

from objtransport.config import Options
from objtransport.sansio.events import Received, as_message
from objtransport.sansio.framing import (
    FRAME_HEADER,
    PLAIN_DATA,
    PLAIN_HEADER,
    VERSION,
    FrameType,
)
from objtransport.sansio.session import NativeSession

SEAL = 64 * 1024  # enough messages to cross a few growths of the buffer

OPTS = Options(keepalive_interval=10.0, pong_timeout=5.0, hello_timeout=3.0)


def native(conn_id: int) -> NativeSession:
    return NativeSession(OPTS, conn_id, "tcp", ("127.0.0.1", conn_id), 0.0,
                         bytes([conn_id]) * 16)


def wire(s: NativeSession) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(0.0))


def received(b: NativeSession, out: bytes) -> list[tuple[bytes, int]]:
    got: list[Received] = b.receive_data(out, 0.0)
    return [(m.data, m.stream) for m in (as_message(r, 0, "tcp", None) for r in got)]


def pair() -> tuple[NativeSession, NativeSession]:
    a, b = native(1), native(2)
    for _ in range(3):  # HELLOs, PINGs, PONGs: nothing left queued
        b.receive_data(wire(a), 0.0)
        a.receive_data(wire(b), 0.0)
    assert not a.scheduler.pending_bytes
    return a, b


def test_plain_header_is_the_frame_header_of_a_normal_data_frame() -> None:
    for length, seq in ((16, 1), (16 + 1024, 2**40 + 7), (16 + 65536, 2**64 - 1)):
        assert PLAIN_HEADER.pack(length, PLAIN_DATA, seq) == FRAME_HEADER.pack(
            length, VERSION, int(FrameType.DATA), 0, 2, 0, seq)


def test_queue_frames_every_message_in_order() -> None:
    a, b = pair()
    n = 3 * SEAL // 1000 + 5
    payloads = [i.to_bytes(4, "big") * 250 for i in range(n)]  # 1000 B each
    for p in payloads:
        a.queue(p)
    assert a.scheduler.pending_bytes == n * (1000 + 20)
    out = wire(a)
    assert len(out) == n * 1020 and a.scheduler.pending_bytes == 0
    assert received(b, out) == [(p, 0) for p in payloads]


def test_queue_many_keeps_the_accounting_when_one_is_refused() -> None:
    a, b = pair()
    good = [bytes([i % 251]) * 700 for i in range(2 * SEAL // 700 + 3)]
    with pytest.raises(TypeError):
        a.queue_many([*good, "not bytes", b"never"])  # type: ignore[list-item]
    assert a.scheduler.pending_bytes == len(good) * 720
    assert a.rs.next_seq == len(good)
    out = wire(a)
    assert len(out) == len(good) * 720
    assert received(b, out) == [(p, 0) for p in good]
    a.queue_many([b"after"])
    assert received(b, wire(a)) == [(b"after", 0)]


def test_small_frames_take_turns_with_a_large_message() -> None:
    a, b = pair()
    big = bytes(range(256)) * 4096  # 1 MiB: fragments, on stream 1
    a.send_message(big, stream=1)
    small = [bytes([i % 256]) * 900 for i in range(2 * SEAL // 900)]
    for p in small:
        a.send_message(p)
    got: list[tuple[bytes, int]] = []
    for _ in range(64):
        got += received(b, wire(a))
        if not a.scheduler.pending_bytes:
            break
    assert [d for d, s in got if s == 0] == small
    assert [d for d, s in got if s == 1] == [big]


def test_one_chunk_write_needs_every_other_queue_empty() -> None:
    """``data_to_send`` takes the normal small-frame buffer whole, without the scheduler,
    only when ``pending_bytes`` is that buffer's size: a high-priority frame or a large
    item queued beside it goes the general way (in priority order), and a large item's
    class, once sent and empty, does not keep small writes off the one-chunk path."""
    a, b = pair()
    sent0, by_prio0 = a.bytes_sent, list(a.scheduler.sent_bytes)
    a.queue(b"normal")
    a.queue(b"high", priority=1)
    assert received(b, wire(a)) == [(b"high", 0), (b"normal", 0)]
    big = bytes(range(256)) * 4096  # 1 MB: fragmented, a large item
    a.queue(big)
    a.queue(b"after")
    assert a.scheduler.classes is not None
    assert received(b, wire(a)) == [(big, 0), (b"after", 0)]
    assert not a.scheduler.pending_bytes
    a.queue(b"x" * 10)
    chunks = a.data_to_send(1.0)
    assert len(chunks) == 1 and len(chunks[0]) == 10 + 20
    assert received(b, bytes(chunks[0])) == [(b"x" * 10, 0)]
    assert a.last_send == 1.0
    payload = 6 + 4 + len(big) + 5 + 10
    assert a.bytes_sent - sent0 == payload
    by_prio = [x - y for x, y in zip(a.scheduler.sent_bytes, by_prio0, strict=True)]
    assert by_prio[1] == 4 + 20 and by_prio[2] >= payload - 4 + 3 * 20
    assert not a.scheduler.pending_bytes
