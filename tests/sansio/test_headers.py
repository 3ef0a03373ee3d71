"""The meta block (protocol.md 1.9): byte layouts, round trips, limits checked while walking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.exceptions import ProtocolError
from objtransport.sansio.framing import GoAwayCode
from objtransport.sansio.headers import MetaLimits, decode_meta, encode_meta

LIMITS = MetaLimits()


def test_the_common_blocks_have_the_documented_bytes() -> None:
    req = encode_meta(request_id=5, deadline_ms=1000)
    assert req == bytes([0, 19, 2, 0, 16]) + (5).to_bytes(8, "big") + (1000).to_bytes(8, "big")
    rep = encode_meta(reply_to=5, status=1)
    assert rep == bytes([0, 12, 3, 0, 9]) + (5).to_bytes(8, "big") + bytes([1])
    hdr = encode_meta({"K": "v"})
    assert hdr == bytes([0, 6, 1, 0, 3, 1]) + b"kv"
    meta, off = decode_meta(req + b"payload", LIMITS)
    assert (meta.request_id, meta.deadline_ms, off) == (5, 1000, 21)
    meta, off = decode_meta(rep, LIMITS)
    assert (meta.reply_to, meta.status, off) == (5, 1, 14)


@given(headers=st.dictionaries(st.text(min_size=1, max_size=20).filter(
           lambda k: k == k.lower() and len(k.encode()) < 256),
           st.binary(max_size=50), max_size=10),
       rid=st.integers(0, 2**64 - 1), deadline=st.integers(0, 2**64 - 1),
       expires=st.integers(0, 2**64 - 1), payload=st.binary(max_size=20))
@settings(max_examples=100, deadline=None)
def test_round_trips(headers: dict[str, bytes], rid: int, deadline: int, expires: int,
                     payload: bytes) -> None:
    block = encode_meta(headers, request_id=rid, deadline_ms=deadline, expires_ms=expires)
    meta, off = decode_meta(block + payload, LIMITS)
    assert block + payload == (block + payload)[:off] + payload
    assert (meta.headers or {}) == headers
    assert (meta.request_id, meta.expires_ms) == (rid, expires)
    if rid:
        assert meta.deadline_ms == deadline


def test_limits_are_checked_while_walking_before_copying() -> None:
    block = encode_meta({f"k{i}": "v" for i in range(10)})
    with pytest.raises(ProtocolError, match="beyond the limits") as exc:
        decode_meta(block, MetaLimits(max_headers=9))
    assert exc.value.code == GoAwayCode.MESSAGE_TOO_LARGE
    with pytest.raises(ProtocolError, match="beyond the limits"):
        decode_meta(encode_meta({"k": "v" * 100}), MetaLimits(max_header_bytes=50))


@pytest.mark.parametrize("bad", [
    b"", b"\x00", b"\x00\x05\x01",  # shorter than declared
    bytes([0, 3, 1, 0, 9]),  # an entry running past the block
    bytes([0, 4, 1, 0, 1, 5]),  # a key longer than its entry
    bytes([0, 5, 2, 0, 2, 0, 0]),  # a REQUEST entry of 2 bytes
    bytes([0, 4, 1, 0, 1, 0]),  # a key of 0 bytes
])
def test_malformed_blocks_are_protocol_errors(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_meta(bad, LIMITS)


def test_unknown_tags_are_skipped() -> None:
    block = bytes([0, 8, 99, 0, 5]) + b"hello"
    meta, off = decode_meta(block + b"x", LIMITS)
    assert off == 10 and meta.headers is None and not meta.request_id
