"""Reads straight out of the receive buffer (``get_buffer`` / ``buffer_updated``) give what
``feed`` of the same bytes gives: runs of one length (one ``struct`` call per frame), lengths
that change, frames cut by reads, frames that are not plain, duplicates, large bodies; and
:func:`~objtransport.sansio.plain_run.plain_run` on its own."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.exceptions import ProtocolError
from objtransport.sansio import plain_run as pr
from objtransport.sansio.events import Message, as_message
from objtransport.sansio.fragmentation import Reassembler
from objtransport.sansio.framing import GoAwayCode, encode_data
from objtransport.sansio.native_decoder import NativeDecoder
from objtransport.sansio.reliability import ResumeState


def _decoder(acks: bool) -> NativeDecoder:
    rx = ResumeState(os.urandom(16)) if acks else None
    dec = NativeDecoder(7, "tcp", ("::1", 1), 1 << 20, Reassembler(1 << 26, 8, 1 << 27), rx)
    dec.accept_data = True
    return dec


def _view(r: object) -> tuple[str, bytes]:
    msg = as_message(r, 7, "tcp", None)  # type: ignore[arg-type]
    return msg.priority, bytes(msg.data)


def _read_all(dec: NativeDecoder, data: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    """Write ``data`` into the decoder's buffers as reads of at most ``cuts`` bytes."""
    out = []
    pos = i = 0
    while pos < len(data):
        buf = dec.get_buffer()
        n = min(len(buf), cuts[i % len(cuts)], len(data) - pos)
        buf[:n] = data[pos:pos + n]
        dec.buffer_updated(n)
        pos += n
        i += 1
        out += [_view(m) for m in dec.take_messages()]
    return out


# (sequence number, priority, payload size) of each frame; runs of one size are likely
frame = st.tuples(st.integers(1, 30), st.sampled_from([2, 2, 2, 2, 2, 1, 3]),
                  st.sampled_from([0, 1, 64, 64, 64, 1000, 70_000]))


@settings(max_examples=120, deadline=None)
@given(st.lists(frame, max_size=40), st.lists(st.integers(1, 9000), min_size=1, max_size=5),
       st.booleans())
def test_reads_from_the_buffer_give_what_feed_gives(frames: list[tuple[int, int, int]],
                                                    cuts: list[int], acks: bool) -> None:
    data = b"".join(encode_data(bytes([seq]) * size, seq, 0, prio)
                    for seq, prio, size in frames)
    whole = _decoder(acks)
    whole.feed(data)
    expected = [_view(m) for m in whole.take_messages()]
    dec = _decoder(acks)
    assert _read_all(dec, data, cuts) == expected
    assert dec.bytes_received == whole.bytes_received
    assert dec.fed == len(data) and dec.buffered == 0 and dec.held == 0
    assert dec.duplicates == whole.duplicates


def test_a_run_of_one_length_comes_out_of_the_buffer_as_bytes() -> None:
    dec = _decoder(acks=True)
    data = b"".join(encode_data(b"%063d" % i, i, 0, 2) for i in range(1, 3001))
    got = _read_all(dec, data, [100_000])
    assert got == [("normal", b"%063d" % i) for i in range(1, 3001)]
    assert dec.rx is not None and dec.rx.floor == 3000


def test_a_bad_frame_after_a_run_is_refused_and_the_run_kept() -> None:
    dec = _decoder(acks=True)
    data = b"".join(encode_data(b"x" * 64, i, 0, 2) for i in range(1, 5))
    bad = bytearray(encode_data(b"y", 5, 0, 2))
    bad[4] = 9  # version 9
    buf = dec.get_buffer()
    buf[:len(data) + len(bad)] = data + bad
    with pytest.raises(ProtocolError) as err:
        dec.buffer_updated(len(data) + len(bad))
    assert err.value.code == GoAwayCode.UNSUPPORTED_VERSION
    assert dec.take_messages() == [b"x" * 64] * 4


# -- plain_run on its own -------------------------------------------------------------------

def test_plain_run_takes_lengths_that_do_not_repeat_from_bytes_and_views() -> None:
    data = encode_data(b"a", 1, 0, 2) + encode_data(b"bb", 2, 0, 2) + encode_data(b"cc", 3, 0, 2)
    out: list[bytes | Message] = []
    assert pr.plain_run(data, 0, len(data), 0, 1 << 20, out) == (len(data), 3)
    assert out == [b"a", b"bb", b"cc"]
    for buf in (memoryview(data), bytearray(data)):
        # the lone "a" is copied out of the view as bytes (a lone frame: one copy, no
        # second pass of the read), then the run of "bb", "cc"
        out = []
        assert pr.plain_run(buf, 0, len(data), 0, 1 << 20, out) == (len(data), 3)
        assert out == [b"a", b"bb", b"cc"] and all(type(p) is bytes for p in out)
    # a lone frame alone in the read (a ping-pong's one message)
    one = encode_data(b"q" * 64, 7, 0, 2)
    out = []
    assert pr.plain_run(memoryview(one), 0, len(one), 6, 1 << 20, out) == (len(one), 7)
    assert out == [b"q" * 64] and type(out[0]) is bytes


def test_plain_run_stops_before_an_incomplete_or_out_of_order_frame() -> None:
    frames = [encode_data(b"p" * 10, i, 0, 2) for i in (1, 2, 4)]
    data = b"".join(frames)
    out: list[bytes | Message] = []
    assert pr.plain_run(data, 0, len(data), 0, 1 << 20, out) == (2 * len(frames[0]), 2)
    out = []
    # no acks: numbers are not checked (nor is a floor returned); the third is incomplete
    assert pr.plain_run(data, 0, len(data) - 1, None, 1 << 20, out)[0] == 2 * len(frames[0])
    assert len(out) == 2


def test_the_struct_cache_is_bounded() -> None:
    for size in range(pr.CACHE_SIZE + 10):
        data = encode_data(b"z" * size, 1, 0, 2) + encode_data(b"z" * size, 2, 0, 2)
        out: list[bytes | Message] = []
        assert pr.plain_run(memoryview(data), 0, len(data), 0, 1 << 20, out)[1] == 2
    assert 0 < pr.cached_lengths() <= pr.CACHE_SIZE
