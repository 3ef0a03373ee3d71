"""A read of one whole plain frame takes the decoder's lone path (``read_lone``); any
other read is left untouched for ``buffer_updated``. A driver that tries the lone path
first gets what the general decoder gives: every sequence number once, in arrival order,
the same counts, wherever the reads are cut."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.exceptions import ProtocolError
from objtransport.sansio.events import Received, as_message
from objtransport.sansio.fragmentation import Reassembler
from objtransport.sansio.framing import encode_data
from objtransport.sansio.native_decoder import NativeDecoder
from objtransport.sansio.reliability import ResumeState


def cut_into(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in reads of the sizes ``cuts`` gives, round and round."""
    chunks: list[bytes] = []
    pos = i = 0
    while pos < len(data):
        chunks.append(data[pos:pos + cuts[i % len(cuts)]])
        pos += cuts[i % len(cuts)]
        i += 1
    return chunks



def _decoder(acks: bool, max_frame: int = 1 << 20) -> NativeDecoder:
    rx = ResumeState(os.urandom(16)) if acks else None
    dec = NativeDecoder(7, "tcp", ("::1", 1), max_frame, Reassembler(1 << 26, 8, 1 << 27), rx)
    dec.accept_data = True
    return dec


def _read(dec: NativeDecoder, chunk: bytes) -> tuple[list[Received], bool]:
    """``chunk`` through the receive buffer (in as many reads as the decoder's buffers
    ask), each read the lone path first, as the session does; the messages and whether
    the lone path took every read."""
    out: list[Received] = []
    lone = True
    while chunk:
        buf = dec.get_buffer()
        n = min(len(buf), len(chunk))
        buf[:n] = chunk[:n]
        chunk = chunk[n:]
        payload = dec.read_lone(n)
        if payload is not None:
            out.append(payload)
            continue
        lone = False
        dec.buffer_updated(n)
        out += dec.take_messages()
    return out, lone


frames = st.lists(st.tuples(st.integers(1, 8), st.sampled_from([2, 2, 2, 1]),
                            st.binary(max_size=40)), max_size=24)


@settings(max_examples=80, deadline=None)
@given(frames, st.lists(st.integers(1, 90), min_size=1, max_size=5), st.booleans(),
       st.booleans())
def test_the_lone_path_gives_what_the_decoder_gives(seqs: list[tuple[int, int, bytes]],
                                                    cuts: list[int], acks: bool,
                                                    by_frame: bool) -> None:
    encoded = [encode_data(payload, seq, 0, prio) for seq, prio, payload in seqs]
    data = b"".join(encoded)
    chunks = encoded if by_frame else cut_into(data, cuts)
    ref = _decoder(acks)
    ref.feed(data)
    expected = [(m.priority, bytes(m.data)) for m in
                (as_message(r, 7, "tcp", None) for r in ref.take_messages())]
    dec = _decoder(acks)
    got = []
    for chunk in chunks:
        for r in _read(dec, chunk)[0]:
            m = as_message(r, 7, "tcp", None)
            got.append((m.priority, bytes(m.data)))
    assert got == expected
    assert dec.bytes_received == ref.bytes_received
    assert dec.fed == ref.fed == len(data)
    assert (dec.rx.floor if dec.rx else 0) == (ref.rx.floor if ref.rx else 0)


def test_one_plain_frame_per_read_takes_the_lone_path() -> None:
    dec = _decoder(acks=True)
    for seq in (1, 2, 3):
        msgs, lone = _read(dec, encode_data(b"ping %d" % seq, seq, 0, 2))
        assert msgs == [b"ping %d" % seq] and lone
    assert dec.rx is not None and dec.rx.floor == 3
    assert dec.bytes_received == 18 and dec.fed == 3 * 26


@pytest.mark.parametrize("chunk", [
    encode_data(b"x", 1, 0, 2),  # a duplicate of what was delivered
    encode_data(b"x", 3, 0, 2),  # out of order (2 is missing)
    encode_data(b"x", 2, 5, 2),  # stream 5
    encode_data(b"x", 2, 0, 1),  # priority high
    encode_data(b"x", 2, 0, 2) + encode_data(b"y", 3, 0, 2),  # two frames
    encode_data(b"x", 2, 0, 2)[:-1],  # not whole
], ids=["duplicate", "out-of-order", "stream", "priority", "two", "partial"])
def test_any_other_read_is_left_to_the_decoder(chunk: bytes) -> None:
    dec = _decoder(acks=True)
    assert _read(dec, encode_data(b"a", 1, 0, 2)) == ([b"a"], True)
    before = (dec.fed, dec.bytes_received)
    dec.get_buffer()[:len(chunk)] = chunk
    assert dec.read_lone(len(chunk)) is None
    assert (dec.fed, dec.bytes_received) == before and dec.rx is not None
    assert dec.rx.floor == 1


def test_a_frame_over_max_frame_size_is_refused_by_the_decoder() -> None:
    dec = _decoder(acks=False, max_frame=64)
    chunk = encode_data(b"z" * 100, 1, 0, 2)
    dec.get_buffer()[:len(chunk)] = chunk
    assert dec.read_lone(len(chunk)) is None
    with pytest.raises(ProtocolError, match="exceeds max_frame_size"):
        dec.buffer_updated(len(chunk))


def test_the_rest_of_a_frame_left_incomplete_is_not_a_lone_read() -> None:
    dec = _decoder(acks=True)
    frame = encode_data(b"half and half", 1, 0, 2)
    assert _read(dec, frame[:10]) == ([], False)
    assert _read(dec, frame[10:]) == ([b"half and half"], False)
    assert _read(dec, encode_data(b"next", 2, 0, 2)) == ([b"next"], True)


def test_a_session_of_lone_reads_acknowledges_as_the_general_path_does() -> None:
    """The session's lone path (native_receive.py) calls the ACK scheduler only when it
    has something to do: the first message arms the delayed ACK, the ACK_EVERY-th goes at
    once, and the delivered messages are counted."""
    from objtransport.config import Options
    from objtransport.sansio.handshake import ACK_EVERY
    from objtransport.sansio.session import NativeSession

    kept: dict[bytes, ResumeState] = {}

    def lookup(sid: bytes) -> tuple[ResumeState, bool]:
        return kept.setdefault(sid, ResumeState(sid)), False

    rs = ResumeState(os.urandom(16))
    c = NativeSession(Options(), 1, "tcp", None, 0.0, rs.session_id, resume=rs,
                      role="client")
    s = NativeSession(Options(), 2, "tcp", None, 0.0, os.urandom(16), role="server",
                      resume_lookup=lookup)
    for a, b in ((c, s), (s, c)):  # the handshake
        b.receive_data(b"".join(bytes(x) for x in a.data_to_send(0.0)), 0.0)
    assert c.is_open and s.is_open and s.acks
    get_buffer = s.buffer_getter()

    def one_read(data: bytes) -> list[bytes]:
        c.queue(data)
        frame = b"".join(bytes(x) for x in c.data_to_send(0.0))
        get_buffer(len(frame))[:len(frame)] = frame
        return [as_message(m, 0, "tcp", None).data for m in s.buffer_updated(len(frame), 0.0)]

    got = one_read(b"0")  # with the client's first PING: the general path
    s.data_to_send(0.0)  # its PONG; the delayed ACK is armed
    assert s.next_deadline() is not None and not s.scheduler.pending_bytes
    for i in range(1, ACK_EVERY):  # one plain frame per read: the lone path
        got += one_read(b"%d" % i)
        if i < ACK_EVERY - 1:
            assert not s.scheduler.pending_bytes  # the delayed ACK stays as it was armed
    assert got == [b"%d" % i for i in range(ACK_EVERY)]
    assert s.messages_received == ACK_EVERY
    assert s.scheduler.pending_bytes  # the ACK_EVERY-th: an ACK at once ...
    c.receive_data(b"".join(bytes(x) for x in s.data_to_send(0.0)), 0.0)
    assert rs.unacked_count == 0  # ... of everything


def test_an_empty_receive_buffer_is_refused_and_none_given_means_an_own_one() -> None:
    """``get_buffer`` takes the empty view for "no buffer yet" (one identity test per
    read): ``use_buffer`` refuses an empty one instead of handing it to the event loop."""
    dec = _decoder(acks=False)
    with pytest.raises(ValueError, match="must not be empty"):
        dec.use_buffer(bytearray())
    assert len(dec.get_buffer()) > 0  # its own, allocated on first use
    shared = memoryview(bytearray(64))
    dec.use_buffer(shared)
    assert dec.get_buffer() is shared
