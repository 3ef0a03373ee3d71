"""Large messages received in place: a read that completes a body brings the next frame's
header along (one read per fragment, not two), and whatever follows is decoded as before."""

from __future__ import annotations

import pytest

from objtransport.config import Options
from objtransport.sansio.events import Received, as_message
from objtransport.sansio.fragmentation import FragmentJob
from objtransport.sansio.framing import (
    MAGIC,
    FrameType,
    Hello,
    encode_data,
    encode_frame,
    encode_hello,
)
from objtransport.sansio.session import NativeSession

HELLO = MAGIC + encode_hello(Hello(b"p" * 16, 0, 1 << 20, 1 << 20))
PIECE = 256 * 1024


def _open() -> NativeSession:
    s = NativeSession(Options(), 2, "tcp", None, 0.0, b"s" * 16)
    s.receive_data(HELLO, 0.0)
    assert s.is_open
    return s


def _fragmented(data: bytes, seq: int) -> bytes:
    job = FragmentJob(data, seq, 0, 2, 0, PIECE)
    return b"".join(bytes(h) + bytes(p) for h, p in job.fragments())


def _read_all(s: NativeSession, wire: bytes) -> tuple[list[bytes], int]:
    """Feed ``wire`` as a socket with everything waiting would: each read fills the
    buffer ``get_buffer`` gives. Returns the payloads and the number of reads."""
    out: list[Received] = []
    pos = reads = 0
    while pos < len(wire):
        buf = s.get_buffer(-1)
        n = min(len(buf), len(wire) - pos)
        buf[:n] = wire[pos:pos + n]
        pos += n
        reads += 1
        out += s.buffer_updated(n, 0.0)
        assert reads < 1000, "no progress"
    return [bytes(as_message(m, 0, "tcp", None).data) for m in out], reads


def test_one_read_per_fragment_once_a_chunk_is_kept() -> None:
    s = _open()
    big = [bytes([i]) * (1 << 20) for i in range(1, 5)]
    wire = b"".join(_fragmented(b, i + 1) for i, b in enumerate(big))
    got, reads = _read_all(s, wire)
    assert got == big
    # 4 fragments a message: the first message's body grows chunk by chunk and its first
    # header comes alone; then one read per fragment, the next header riding along
    first, rest = 1 + 4 + 4, 3 * 4
    assert reads <= first + rest, reads


@pytest.mark.parametrize(("after", "payload"), [
    (encode_data(b"small", 9, 0, 2), b"small"),  # a whole frame after the body
    (encode_frame(FrameType.PING, b"12345678") + encode_data(b"x" * 40, 9, 0, 2), b"x" * 40),
    (encode_data(b"y" * 100_000, 9, 0, 2), b"y" * 100_000),  # a large one: direct too
])
def test_what_follows_a_body_is_decoded_whatever_it_is(after: bytes, payload: bytes) -> None:
    s = _open()
    big = bytes(range(256)) * 4096
    wire = _fragmented(big, 1) + _fragmented(big, 2) + after
    got, _ = _read_all(s, wire)
    assert got == [big, big, payload]


def test_header_split_between_reads_after_a_body() -> None:
    """Reads cut anywhere (here: 5 bytes past each body) still deliver every message."""
    s = _open()
    big = bytes(range(256)) * 4096
    wire = _fragmented(big, 1) + _fragmented(big, 2) + encode_data(b"end", 3, 0, 2)
    out: list[Received] = []
    pos = 0
    while pos < len(wire):
        buf = s.get_buffer(-1)
        n = min(len(buf), len(wire) - pos, 5 if len(buf) < 64 else len(buf) - 23)
        buf[:n] = wire[pos:pos + n]
        pos += n
        out += s.buffer_updated(n, 0.0)
    assert [bytes(as_message(m, 0, "tcp", None).data) for m in out] == [big, big, b"end"]


@pytest.mark.parametrize(("transport", "solo"), [("tcp", (1 << 20) - 28), ("websocket", 0)])
def test_a_tcp_session_sends_a_lone_1_mib_message_in_two_fragments(transport: str,
                                                                 solo: int) -> None:
    s = NativeSession(Options(), 2, transport, None, 0.0, b"s" * 16)
    s.receive_data(HELLO, 0.0)
    s.data_to_send(0.0)  # our HELLO and first PING
    assert s.scheduler.solo_piece == solo
    s.send_message(b"m" * (1 << 20))
    pieces = []
    while s.scheduler.pending_bytes:
        pieces += [len(c) for c in s.data_to_send(0.0, 1 << 20)[1::2]]
    assert pieces == ([512 * 1024] * 2 if solo else [256 * 1024] * 4)
