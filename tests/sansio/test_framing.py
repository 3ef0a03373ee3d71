"""Byte layouts of docs/protocol.md, pinned."""

from __future__ import annotations

import pytest

from objtransport.exceptions import ProtocolError
from objtransport.sansio.framing import (
    FEATURE_WINDOW,
    FLAG_FRAG,
    MAGIC,
    FrameType,
    GoAwayCode,
    Hello,
    decode_goaway,
    decode_hello,
    encode_data,
    encode_data_fragment_header,
    encode_frame,
    encode_goaway,
    encode_hello,
    encode_raw,
)


def test_magic_is_objt_and_too_large_as_a_raw_length() -> None:
    assert MAGIC == b"OBJT"
    assert int.from_bytes(MAGIC, "big") == 1_329_744_468


def test_data_frame_layout() -> None:
    frame = encode_data(b"hi", seq=7, stream=3, priority=1)
    assert frame == (
        (18).to_bytes(4, "big")  # 16-byte header + 2 bytes payload
        + bytes([1, FrameType.DATA, 0, 1])
        + (3).to_bytes(4, "big")
        + (7).to_bytes(8, "big")
        + b"hi"
    )


def test_fragment_header_layout() -> None:
    header = encode_data_fragment_header(100, seq=2, stream=0, priority=3, offset=256, total=1000)
    assert len(header) == 28
    assert header[:4] == (16 + 8 + 100).to_bytes(4, "big")
    assert header[6] == FLAG_FRAG
    assert header[20:24] == (256).to_bytes(4, "big")
    assert header[24:28] == (1000).to_bytes(4, "big")


def test_hello_round_trip_and_extensions_ignored() -> None:
    hello = Hello(b"s" * 16, 3, 1 << 20, 1 << 26, 42)
    frame = encode_hello(hello)
    assert frame[5] == FrameType.HELLO
    payload = frame[20:]
    assert len(payload) == 36
    assert decode_hello(payload) == hello
    assert decode_hello(payload + b"future extension") == hello


def test_hello_too_short_or_unusable() -> None:
    with pytest.raises(ProtocolError):
        decode_hello(b"x" * 10)
    with pytest.raises(ProtocolError):
        decode_hello(encode_hello(Hello(b"s" * 16, 0, 64, 1, 0))[20:].replace(
            (64).to_bytes(4, "big"), (8).to_bytes(4, "big"), 1))


def test_hello_needs_16_byte_session_id() -> None:
    with pytest.raises(ValueError):
        encode_hello(Hello(b"short", 0, 1 << 20, 1 << 20))


def test_goaway_round_trip_and_reason_cut() -> None:
    frame = encode_goaway(GoAwayCode.OVERLOADED, "slow reader")
    assert frame[5] == FrameType.GOAWAY
    assert decode_goaway(frame[20:]) == (8, "slow reader")
    long = encode_goaway(1, "é" * 500)
    code, reason = decode_goaway(long[20:])
    assert code == 1 and len(reason.encode()) <= 256
    with pytest.raises(ProtocolError):
        decode_goaway(b"\x00")


def test_raw_is_packet_4() -> None:
    assert encode_raw(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_raw(b"") == b"\x00\x00\x00\x00"


def test_control_frames_carry_no_seq() -> None:
    frame = encode_frame(FrameType.PING, b"12345678")
    assert frame[12:20] == bytes(8)
    assert frame[8] == 0  # priority control


def test_hello_window_after_the_fixed_fields_and_the_token() -> None:
    """FEATURE_WINDOW: the sender's window (u32) follows the 36 fixed bytes and any token;
    a HELLO without the bit has window 0; a value above u32 is sent capped."""
    plain = encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20, 0, None, 16 << 20))[20:]
    assert int.from_bytes(plain[16:20], "big") & FEATURE_WINDOW
    assert len(plain) == 40 and plain[36:] == (16 << 20).to_bytes(4, "big")
    assert decode_hello(plain).window == 16 << 20
    tok = encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20, 0, "ab", 1 << 40))[20:]
    assert tok[36:40] == b"\x00\x02ab" and tok[40:] == b"\xff\xff\xff\xff"
    got = decode_hello(tok)
    assert got.token == "ab" and got.window == 2**32 - 1
    none = encode_hello(Hello(b"s" * 16, FEATURE_WINDOW, 1 << 20, 1 << 20))[20:]
    assert len(none) == 36 and decode_hello(none).window == 0


@pytest.mark.parametrize("tail", [b"", b"\x00", b"\x00\x00\x01"])
def test_hello_window_cut_short_is_a_protocol_error(tail: bytes) -> None:
    fixed = bytearray(encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20))[20:])
    fixed[18] |= FEATURE_WINDOW >> 8
    with pytest.raises(ProtocolError):
        decode_hello(bytes(fixed) + tail)
