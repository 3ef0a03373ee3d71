"""The decoder's fast path for plain DATA frames (stream 0, normal, no flags, in sequence)
gives what the general path gives: every sequence number once, in arrival order, whatever
frames are mixed in and wherever the reads are cut."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.exceptions import ProtocolError
from objtransport.sansio.events import Message, as_message
from objtransport.sansio.fragmentation import Reassembler
from objtransport.sansio.framing import FRAME_HEADER, FrameType, GoAwayCode, encode_data
from objtransport.sansio.native_decoder import NativeDecoder
from objtransport.sansio.reliability import ResumeState


def _decoder(acks: bool) -> NativeDecoder:
    rx = ResumeState(os.urandom(16)) if acks else None
    dec = NativeDecoder(7, "tcp", ("::1", 1), 1 << 20, Reassembler(1 << 26, 8, 1 << 27), rx)
    dec.accept_data = True
    return dec


def _feed(dec: NativeDecoder, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """Feed ``data`` in reads of the sizes in ``cuts`` (cycled); (priority, payload) out."""
    out = []
    pos = i = 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        dec.feed(data[pos:pos + n])
        pos += n
        i += 1
        for m in dec.take_messages():
            msg = as_message(m, 7, "tcp", None)
            out.append((msg.priority, bytes(msg.data)))
    return out


# (sequence number, priority) of each frame; priorities other than 2 take the general path
frames = st.lists(st.tuples(st.integers(1, 12), st.sampled_from([2, 2, 2, 1, 3])),
                  max_size=40)


@settings(max_examples=80, deadline=None)
@given(frames, st.lists(st.integers(1, 200), min_size=1, max_size=6))
def test_each_sequence_number_once_in_arrival_order(seqs: list[tuple[int, int]],
                                                    cuts: list[int]) -> None:
    data = b"".join(encode_data(b"m%d" % seq, seq, 0, prio) for seq, prio in seqs)
    names = {1: "high", 2: "normal", 3: "low"}
    expected, seen = [], set()
    for seq, prio in seqs:
        if seq not in seen:
            seen.add(seq)
            expected.append((names[prio], b"m%d" % seq))
    dec = _decoder(acks=True)
    assert _feed(dec, data, cuts) == expected
    assert dec.duplicates == len(seqs) - len(expected)
    assert dec.bytes_received == sum(len(p) for _, p in expected)


def test_a_run_stops_at_a_duplicate_and_at_another_frame_then_goes_on() -> None:
    dec = _decoder(acks=True)
    data = b"".join([encode_data(b"a", 1, 0, 2), encode_data(b"b", 2, 0, 2),
                     encode_data(b"b", 2, 0, 2),  # resent after a resume: dropped
                     encode_data(b"c", 3, 5, 2),  # stream 5: a Message
                     encode_data(b"d", 4, 0, 2)])
    dec.feed(data)
    msgs = dec.take_messages()
    assert msgs[:2] == [b"a", b"b"] and msgs[3] == b"d"
    assert isinstance(msgs[2], Message) and msgs[2].stream == 5
    assert dec.rx is not None and dec.rx.floor == 4 and dec.duplicates == 1


def test_without_acks_plain_frames_are_not_numbered() -> None:
    dec = _decoder(acks=False)
    dec.feed(encode_data(b"x", 9, 0, 2) + encode_data(b"y", 9, 0, 2) + encode_data(b"z", 1, 0, 2))
    assert dec.take_messages() == [b"x", b"y", b"z"]
    assert dec.bytes_received == 3


@pytest.mark.parametrize("length", [0, 4, 15])
def test_a_plain_header_with_a_length_below_the_header_is_an_error(length: int) -> None:
    dec = _decoder(acks=True)
    frame = FRAME_HEADER.pack(length, 1, int(FrameType.DATA), 0, 2, 0, 1) + b"\0" * 8
    with pytest.raises(ProtocolError) as err:
        dec.feed(encode_data(b"ok", 1, 0, 2) + frame)
    assert err.value.code == GoAwayCode.PROTOCOL_ERROR
    assert dec.take_messages() == [b"ok"]


def test_a_plain_frame_over_max_frame_size_is_refused_before_its_body() -> None:
    dec = _decoder(acks=True)
    head = struct.pack("!IBBBBIQ", (1 << 20) + 1, 1, int(FrameType.DATA), 0, 2, 0, 1)
    with pytest.raises(ProtocolError) as err:
        dec.feed(head)
    assert err.value.code == GoAwayCode.FRAME_TOO_LARGE
