"""After a resume a session writes a window at a time (issue 12, item 10): a link that
breaks again soon loses about a window of written data, not the whole backlog. No event
loop; the clock is walked by hand."""

from __future__ import annotations

from objtransport.sansio.handshake import RESUME_WINDOW, WINDOW_WAIT
from objtransport.sansio.reliability import ResumeState, data_frames
from objtransport.sansio.session import NativeSession

from .test_reliability import Server, client, deliver, wire

PAYLOAD = b"." * 100
N = 5_000  # 600 KB of frames, ~10 windows of 64 KiB


def _resumed() -> tuple[ResumeState, NativeSession, NativeSession, int]:
    """A client that queued N messages, wrote them all, the link broke before any byte
    arrived; then a new link resumed the session."""
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = client(rs), server.session()
    deliver(c, s)
    deliver(s, c)
    for _ in range(N):
        c.send_message(PAYLOAD)
    first = wire(c)  # handed to a socket that broke: nothing arrived
    c2, s2 = client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)
    return rs, c2, s2, len(first)


def _drain(c: NativeSession, now: float = 0.0) -> bytes:
    """What the session writes now, asked until it says nothing more (as a driver does)."""
    out = b""
    while chunk := wire(c, now):
        out += chunk
    return out


def _seqs(data: bytes) -> list[int]:
    return [f.seq for f in data_frames([data])]


def test_a_resumed_link_writes_one_window_until_the_peer_acknowledges() -> None:
    rs, c2, s2, first = _resumed()
    assert first > 8 * RESUME_WINDOW  # the unwindowed first link wrote everything
    assert rs.resent == N  # every one was written before: each is sent again, once
    out = _drain(c2)  # a window (the last frame may pass its edge), then nothing
    assert RESUME_WINDOW - 200 <= len(out) <= RESUME_WINDOW + 200
    got = deliver(c2, s2, out)
    s2.handle_timer(1.0)  # the delayed ACK
    deliver(s2, c2)
    second = _drain(c2, 1.0)
    assert 2 * RESUME_WINDOW - 200 <= len(second) <= 2 * RESUME_WINDOW + 200  # doubled
    got += deliver(c2, s2, second)
    assert [int(m == PAYLOAD) for m in got] == [1] * len(got)
    assert _seqs(out + second) == list(range(1, len(got) + 1))


def test_a_full_window_opens_anyway_when_no_ack_comes_and_control_frames_pass() -> None:
    _rs, c2, _s2, _ = _resumed()
    out = _drain(c2)
    assert len(out) <= RESUME_WINDOW + 200
    deadline = c2.next_deadline()
    assert deadline is not None and deadline <= WINDOW_WAIT
    c2.send_message(b"urgent", priority=0)
    assert _seqs(_drain(c2)) == [N + 1]  # the control class passes a full window
    c2.handle_timer(WINDOW_WAIT / 2)
    assert _drain(c2, WINDOW_WAIT / 2) == b""
    c2.handle_timer(WINDOW_WAIT)
    assert len(_drain(c2, WINDOW_WAIT)) > RESUME_WINDOW  # the window opened (doubled)
