"""A session handles what arrives in stream order, however the reads are cut (found by
tests/test_fuzz.py): messages before the frame that ends the session are delivered, none
after it; control frames before a decoder error are handled first."""

from __future__ import annotations

from objtransport.config import Options
from objtransport.sansio.events import Closed, Received, as_message
from objtransport.sansio.framing import (
    MAGIC,
    FrameType,
    GoAwayCode,
    Hello,
    encode_data,
    encode_frame,
    encode_hello,
)
from objtransport.sansio.session import NativeSession

HELLO = MAGIC + encode_hello(Hello(b"p" * 16, 0, 1 << 20, 1 << 20))


def _open() -> NativeSession:
    s = NativeSession(Options(), 2, "tcp", None, 0.0, b"s" * 16)
    s.receive_data(HELLO, 0.0)
    assert s.is_open
    return s


def _data(out: list[Received]) -> list[bytes]:
    return [bytes(as_message(m, 0, "tcp", None).data) for m in out]


def _feed(s: NativeSession, data: bytes, step: int) -> list[bytes]:
    out: list[Received] = []
    for i in range(0, len(data), step):
        out += s.receive_data(data[i:i + step], 0.0)
    return _data(out)


def _code(s: NativeSession) -> int:
    (closed,) = [e for e in s.take_events() if isinstance(e, Closed)]
    return closed.code


def test_messages_before_a_bad_control_frame_are_delivered_in_any_cut() -> None:
    bad_ack = encode_frame(FrameType.ACK, b"")  # an ACK carries 8 bytes
    data = encode_data(b"m1", 1, 0, 2) + bad_ack + encode_data(b"m2", 2, 0, 2)
    for step in (len(data), 1, 7):
        s = _open()
        assert _feed(s, data, step) == [b"m1"], step
        assert _code(s) == GoAwayCode.PROTOCOL_ERROR


def test_a_control_frame_before_a_bad_length_decides_the_close_code() -> None:
    data = encode_frame(FrameType.ACK, b"") + b"\x01\x01\x01\x01"  # then 16 MiB claimed
    for step in (len(data), 1):
        s = _open()
        _feed(s, data, step)
        assert _code(s) == GoAwayCode.PROTOCOL_ERROR, step  # the ACK came first


def test_after_our_orderly_close_the_peers_messages_in_flight_still_arrive() -> None:
    s = _open()
    s.close(GoAwayCode.NORMAL, "bye")
    data = (encode_data(b"m1", 1, 0, 2) + encode_frame(FrameType.PING, b"12345678")
            + encode_data(b"m2", 2, 0, 2))
    buf = s.get_buffer(-1)
    buf[:len(data)] = data
    assert _data(s.buffer_updated(len(data), 0.0)) == [b"m1", b"m2"]


def test_a_message_with_a_malformed_meta_block_ends_the_session_where_it_stands() -> None:
    """Messages before it are delivered, none after it, in any cut (flag 4: a meta block,
    here missing)."""
    data = (encode_data(b"m1", 1, 0, 2) + encode_data(b"", 2, 0, 2, flags=4)
            + encode_data(b"m3", 3, 0, 2) + b"\x01\x01\x01\x01")  # then a bad length
    for step in (len(data), 1, 5):
        s = _open()
        assert _feed(s, data, step) == [b"m1"], step
        assert _code(s) == GoAwayCode.PROTOCOL_ERROR, step
