"""A read that is one whole PING or ACK takes the session's short path (``read_control``:
the PONG queued, the ACK taken, without the control list and the walk; the PONG popped
alone by the scheduler); any other read goes the general way. Whatever the reads, the
session answers the same PONGs, in the same order with the same messages, and ends in the
same state (a bad ACK ends it the same way) as when the bytes come in one piece."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.framing import ACK_FORMAT, FrameType, encode_data, encode_frame
from objtransport.sansio.native_reads import CONTROL_FRAME
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.scheduler import PriorityScheduler
from objtransport.sansio.session import NativeSession

from .test_lone_read import cut_into
from .test_reliability import Server, client, deliver
from .test_session import msgs, pair, wire

#: a frame: a PING (canonical, high priority, longer token), a DATA message, a PONG, an ACK
#: (of a message sent; of one never sent: a protocol error with ACKs agreed)
kinds = st.sampled_from(["ping", "ping", "ping-high", "ping-long", "data", "pong", "ack",
                         "ack", "ack-bad"])


def _frame(kind: str, i: int, seq: int) -> bytes:
    token = b"tok%05d" % i
    if kind == "ping":
        return encode_frame(FrameType.PING, token)
    if kind == "ping-high":
        return encode_frame(FrameType.PING, token, priority=1)
    if kind == "ping-long":
        return encode_frame(FrameType.PING, token * 2)
    if kind == "pong":
        return encode_frame(FrameType.PONG, token)
    if kind.startswith("ack"):
        return encode_frame(FrameType.ACK, ACK_FORMAT.pack(99 if kind == "ack-bad" else 2))
    return encode_data(b"msg %d" % i, seq, 0, 2)


def _open(acks: bool = False) -> NativeSession:
    """An open session that has sent 3 messages (its peer got them: an ACK of 2 is good, of
    99 a protocol error when ACKs were agreed), with nothing left to write."""
    if acks:
        b, peer = client(ResumeState(b"c" * 16)), Server().session()
        deliver(b, peer)
        deliver(peer, b)
        assert b.acks
    else:
        _, b = pair()
    for i in range(3):
        b.send_message(b"sent %d" % i)
    wire(b)
    return b


def _through_reads(s: NativeSession, chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """Each chunk written into ``s``'s receive buffer as one read (cut further when the
    buffer is smaller); the messages and what ``s`` answered after each read."""
    got: list[bytes] = []
    out = b""
    for chunk in chunks:
        while chunk:
            buf = s.get_buffer(-1)
            n = min(len(buf), len(chunk))
            buf[:n] = chunk[:n]
            chunk = chunk[n:]
            got += [m.data for m in msgs(s.buffer_updated(n, 0.0))]
            out += wire(s)
    return got, out


@settings(max_examples=80, deadline=None)
@given(st.lists(kinds, min_size=1, max_size=12),
       st.lists(st.integers(1, 60), min_size=1, max_size=6), st.booleans(), st.booleans())
def test_any_reads_answer_what_one_piece_answers(frames: list[str], cuts: list[int],
                                                 by_frame: bool, acks: bool) -> None:
    if "ack-bad" in frames:  # it ends the session: nothing after it (a DATA frame after
        # it in the same read is acknowledged by the general path, not when cut apart)
        frames = frames[:frames.index("ack-bad") + 1]
    seq = 0
    encoded = []
    for i, kind in enumerate(frames):
        seq += kind == "data"
        encoded.append(_frame(kind, i, seq))
    data = b"".join(encoded)
    ref = _open(acks)
    expected = [m.data for m in msgs(ref.receive_data(data, 0.0))]
    expected_out = wire(ref)
    chunks = encoded if by_frame else cut_into(data, cuts)
    s = _open(acks)
    got, out = _through_reads(s, chunks)
    assert got == expected
    assert out == expected_out
    assert s.decoder.fed == ref.decoder.fed
    assert s.decoder.bytes_received == ref.decoder.bytes_received
    assert s.messages_received == ref.messages_received
    assert s.state == ref.state and s.close_code == ref.close_code
    assert s.rs.acked == ref.rs.acked and s.rs.floor == ref.rs.floor
    assert [type(e).__name__ for e in s.take_events()] == [
        type(e).__name__ for e in ref.take_events()]


def test_a_lone_ping_is_read_by_the_short_path() -> None:
    """``read_control`` takes one canonical PING or ACK in the receive buffer (its type and
    payload; the read counted) and nothing else: not a PING of another priority, nor one
    behind a partial frame. Through the session the PONG then leaves as one chunk."""
    s = _open()
    dec = s.decoder
    ping = encode_frame(FrameType.PING, b"12345678")
    assert len(ping) == CONTROL_FRAME
    fed = dec.fed
    dec.get_buffer(-1)[:CONTROL_FRAME] = ping
    assert dec.read_control() == (FrameType.PING, b"12345678")
    assert dec.fed == fed + CONTROL_FRAME
    dec.get_buffer(-1)[:CONTROL_FRAME] = encode_frame(FrameType.ACK, ACK_FORMAT.pack(0))
    assert dec.read_control() == (FrameType.ACK, bytes(8))
    dec.get_buffer(-1)[:CONTROL_FRAME] = encode_frame(FrameType.PING, b"12345678", priority=1)
    assert dec.read_control() is None and dec.fed == fed + 2 * CONTROL_FRAME
    dec.get_buffer(-1)[:5] = ping[:5]
    dec.buffer_updated(5)  # a partial frame pending
    dec.get_buffer(-1)[:CONTROL_FRAME] = ping[5:] + ping[:5]  # 28 bytes, not one PING
    assert dec.read_control() is None
    dec.buffer_updated(CONTROL_FRAME)  # the general path: the rest of that frame, and more
    assert [c[0] for c in dec.control] == [FrameType.PING]

    s = _open()
    s.get_buffer(-1)[:CONTROL_FRAME] = ping
    assert s.buffer_updated(CONTROL_FRAME, 0.0) == []
    assert not s.decoder.control
    out = s.data_to_send(0.0)
    assert [bytes(c) for c in out] == [encode_frame(FrameType.PONG, b"12345678")]
    assert s.scheduler.pending_bytes == 0


def test_pop_takes_control_frames_alone_in_one_chunk_and_behind_nothing() -> None:
    """Only control frames queued: one chunk, the counts right. With a normal frame
    queued too the general way keeps the classes' order."""
    s = PriorityScheduler()
    s.push_frame(0, b"pong1")
    s.push_frame(0, b"pong2")
    out = s.pop(1 << 20)
    assert [bytes(c) for c in out] == [b"pong1pong2"]
    assert s.pending_bytes == 0 and s.sent_bytes[0] == 10 and not s
    s.push_frame(2, b"data")
    s.push_frame(0, b"pong3")
    assert b"".join(bytes(c) for c in s.pop(1 << 20)) == b"pong3data"
    pong = encode_frame(FrameType.PONG, b"12345678")
    s.push_frame(0, pong)
    s.push_frame(0, pong)
    assert [bytes(c) for c in s.pop(3, strict=True)] == [pong]  # one frame at least
    assert [bytes(c) for c in s.pop(len(pong), strict=True)] == [pong]
    assert s.pending_bytes == 0


def test_taking_events_keeps_the_sessions_list() -> None:
    """A PONG's event (what an idle link hears each keepalive interval): ``take_events``
    hands over a list of its own and keeps the session's list, emptied (a new list per
    event would outlive the read and count towards the next full collection)."""
    a, b = pair()
    a.take_events()
    held = a.events
    b.receive_data(wire(a, 0.0), 0.0)  # a's PING
    a.receive_data(wire(b, 0.0), 0.25)  # b's PONG
    out = a.take_events()
    assert [type(e).__name__ for e in out] == ["PongReceived"]
    assert a.events is held and not held
    assert a.take_events() == []
