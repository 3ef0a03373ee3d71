"""Messages that expire, without sockets: a message past its deadline leaves the send queue
and a SKIP takes its number; one written but not acknowledged is skipped, not resent, after
a resume; a peer without SKIP gets every message as before. Time is an argument here."""

from __future__ import annotations

from objtransport.config import Options
from objtransport.sansio.framing import (
    FEATURE_SKIP,
    FLAG_META,
    SKIP_FORMAT,
    FrameType,
    encode_data,
    encode_frame,
)
from objtransport.sansio.headers import encode_meta
from objtransport.sansio.reliability import ResumeState, data_frames
from objtransport.sansio.scheduler import PriorityScheduler
from objtransport.sansio.session import NativeSession

from .test_reliability import Server, client, connect, deliver, settle, wire

OPTS = Options()


def ttl_message(c: NativeSession, payload: bytes, deadline: float, priority: int = 2,
                stream: int = 0) -> int:
    """What the facade does for ``send_data(..., ttl=)``: a meta block with EXPIRES, then
    the deadline on the session's clock."""
    meta = encode_meta(None, expires_ms=1)
    seq = c.send_message(meta + payload, stream, priority, FLAG_META)  # type: ignore[arg-type]
    c.expires(seq, deadline)
    return seq


def payloads(c: NativeSession, s: NativeSession, now: float = 0.0) -> list[bytes]:
    got = []
    for m in s.receive_data(wire(c, now), now):
        got.append(m if isinstance(m, bytes) else m.data)
    return got


def test_a_queued_message_past_its_deadline_is_not_sent_and_its_number_is_skipped() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"before")
    stale = ttl_message(c, b"stale", deadline=10.0)
    ttl_message(c, b"fresh", deadline=100.0)
    c.send_message(b"after")
    assert rs.next_expiry() == 10.0
    assert c.expire(9.999) == []  # not yet
    lost = c.expire(10.0)
    assert [(seq, p.endswith(b"stale")) for seq, p, *_ in lost] == [(stale, True)]
    assert payloads(c, s, 10.0) == [b"before", b"fresh", b"after"]
    assert rs.skipped == {stale} and s.rs.skips_received == 1
    s.handle_timer(10.01)  # the delayed ACK covers the skipped number: no gap
    deliver(s, c, now=10.01)
    assert rs.acked == rs.next_seq and not rs.skipped and not rs.expiring
    assert c.expire(1000.0) == []  # nothing left to give up


def test_a_written_message_past_its_deadline_is_skipped_on_resume_not_resent() -> None:
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    ttl_message(c, b"stale", deadline=10.0)
    c.send_message(b"kept")
    wire(c)  # written, lost with the connection: nothing arrived, nothing acknowledged
    lost = c.expire(10.0)  # the ttl passes while the link is dead
    assert [p[-5:] for _, p, *_ in lost] == [b"stale"]
    assert c.scheduler.pending_bytes == 0  # nothing queued: its SKIP waits for a resume
    c2, s2 = client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)
    assert c2.is_open and s2.is_open
    frames = wire(c2)
    assert b"stale" not in frames and b"kept" in frames  # the stale payload is not resent
    got = [m if isinstance(m, bytes) else m.data for m in s2.receive_data(frames, 0.0)]
    assert got == [b"kept"]
    settle(c2, s2)
    assert rs.acked == rs.next_seq and not rs.unacked()


def test_a_large_message_not_begun_leaves_the_queue_one_begun_finishes() -> None:
    opts = Options(max_fragment_size=1024)
    rs = ResumeState(b"c" * 16)
    server = Server()
    c = NativeSession(opts, 1, "tcp", None, 0.0, rs.session_id, resume=rs, role="client")
    s = NativeSession(opts, 2, "tcp", None, 0.0, b"s" * 16, role="server",
                      resume_lookup=server.lookup)
    deliver(c, s)
    deliver(s, c)
    deliver(c, s)  # the PONG: only DATA is queued below
    begun = ttl_message(c, bytes(4096), deadline=5.0)
    waiting = ttl_message(c, bytes(4096), deadline=5.0, stream=1)
    first = c.data_to_send(0.0, budget=1, strict=True)  # one fragment of "begun" leaves
    assert first
    lost = c.expire(5.0)
    assert {seq for seq, *_ in lost} == {begun, waiting}
    rest = b"".join(bytes(x) for x in first) + wire(c, 5.0)
    got = s.receive_data(rest, 5.0)
    assert len(got) == 1  # the begun one completes (its receiver drops it by EXPIRES)
    assert s.rs.skips_received == 1


def test_without_skip_from_the_peer_nothing_is_given_up() -> None:
    rs = ResumeState(b"c" * 16)
    server = Server()
    c = client(rs)
    s = server.session()
    s.extensions &= ~FEATURE_SKIP  # an older peer
    deliver(c, s)
    deliver(s, c)
    assert not rs.can_skip
    ttl_message(c, b"stale", deadline=1.0)
    assert not rs.expiring and c.expire(2.0) == []
    assert len(payloads(c, s, 2.0)) == 1  # sent as before: its receiver drops it by EXPIRES


def test_skip_frames_are_checked() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    for bad in (b"\x00" * 7, SKIP_FORMAT.pack(0)):
        c2, s2 = connect(ResumeState(b"d" * 16), Server())
        s2.receive_data(encode_frame(FrameType.SKIP, bad), 0.0)
        assert s2.closed and "SKIP" in s2.close_reason
    # a SKIP of a number already delivered changes nothing
    c.send_message(b"one")
    deliver(c, s)
    s.receive_data(encode_frame(FrameType.SKIP, SKIP_FORMAT.pack(1)), 0.0)
    assert s.rs.floor == 1 and s.rs.skips_received == 0 and not s.closed


def test_drop_data_takes_frames_out_of_buffers_and_stream_queues_in_order() -> None:
    sched = PriorityScheduler()
    sched.push_frame(2, encode_data(b"a", 1, 0, 2))
    sched.push_frame(2, encode_data(b"b", 2, 0, 2))
    sched.push(2, (encode_data(b"big", 3, 7, 2),), 7)  # a stream with a pending item
    sched.push_frame(2, encode_data(b"c", 4, 7, 2), 7)  # queued behind it
    sched.push_frame(2, encode_data(b"d", 5, 7, 2), 7)
    before = sched.pending_bytes
    assert sched.drop_data({2, 3, 5, 9}) == {2, 3, 5}
    assert sched.pending_bytes == before - 21 - 23 - 21
    out = sched.pop(1 << 20)
    assert [f.seq for f in data_frames(out)] == [1, 4]
    assert sched.pending_bytes == 0 and sched.only_small and not sched.blocked
