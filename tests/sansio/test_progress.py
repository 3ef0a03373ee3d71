"""A frame begun must keep arriving (issue 12, items 5 and 6): virtual time, no sockets."""

from __future__ import annotations

from objtransport.config import Options
from objtransport.sansio.events import Closed
from objtransport.sansio.framing import FRAME_HEADER, MAGIC, GoAwayCode, Hello, encode_hello
from objtransport.sansio.progress import MIN_FRAME_RATE, FrameClock
from objtransport.sansio.raw import RawSession
from objtransport.sansio.session import NativeSession

OPTS = Options(timeout=2.0, keepalive_interval=1000.0, pong_timeout=1000.0,
               idle_timeout=50.0)


def _drip(session: RawSession | NativeSession, data: bytes, start: float, every: float,
          ) -> float | None:
    """Feed ``data`` a byte every ``every`` s, running the timer as a driver would; return
    when the session was closed (None if it never was)."""
    now = start
    for i in range(len(data)):
        due = session.next_deadline()
        while due is not None and due <= now:
            session.handle_timer(due)
            if session.closed:
                return due
            due = session.next_deadline()
        session.receive_data(data[i:i + 1], now)
        now += every
    return None


def _closed(session: RawSession | NativeSession) -> Closed:
    (closed,) = [e for e in session.take_events() if isinstance(e, Closed)]
    return closed


def test_raw_message_dripped_at_1_byte_per_second_is_cut_after_the_grace() -> None:
    s = RawSession(OPTS, 1, "tcp", None, 0.0, role="server")
    cut = _drip(s, (1000).to_bytes(4, "big") + b"x" * 1000, 0.0, 1.0)
    assert cut is not None and 2.0 < cut < 2.1, cut  # grace 2 s + 3 B at 1 KiB/s
    closed = _closed(s)
    assert closed.code == GoAwayCode.IDLE_TIMEOUT and "frame too slow" in closed.reason


def test_native_frame_dripped_after_hello_is_cut() -> None:
    s = NativeSession(OPTS, 2, "tcp", None, 0.0, b"s" * 16)
    s.receive_data(MAGIC + encode_hello(Hello(b"p" * 16, 0, 1 << 20, 1 << 20)), 0.0)
    assert s.is_open
    frame = FRAME_HEADER.pack(16 + 500, 1, 2, 0, 2, 0, 1) + b"d" * 500
    cut = _drip(s, frame, 1.0, 1.0)
    assert cut is not None and 3.0 < cut < 3.1, cut
    assert _closed(s).code == GoAwayCode.IDLE_TIMEOUT


def test_a_slow_but_steady_frame_is_not_cut() -> None:
    """2 KiB/s, above the 1 KiB/s floor: a 64 KiB message takes 32 s and arrives."""
    s = RawSession(OPTS, 1, "tcp", None, 0.0, role="server")
    data = (65536).to_bytes(4, "big") + b"y" * 65536
    now, got = 0.0, []
    for i in range(0, len(data), 2048):
        due = s.next_deadline()
        if due is not None and due <= now:
            s.handle_timer(now)
        got += s.receive_data(data[i:i + 2048], now)
        now += 1.0
    assert not s.closed and got == [b"y" * 65536]


def test_time_while_we_do_not_read_is_not_the_peers() -> None:
    clock = FrameClock(2.0)
    assert clock.update(0, 10.0)  # a frame began at 10 s
    clock.pause(11.0)
    assert clock.deadline(100) is None
    clock.resume(111.0)  # 100 s of our backpressure
    deadline = clock.deadline(100)
    assert deadline is not None and abs(deadline - (112.0 + 100 / MIN_FRAME_RATE)) < 1e-9


def test_bytes_waiting_unread_hold_the_frame_until_the_next_read() -> None:
    """The driver found the rest of a frame waiting in the socket as its deadline came (our
    loop was stalled): no verdict; the read that follows completes it."""
    s = RawSession(OPTS, 1, "tcp", None, 0.0, role="server")
    data = (100).to_bytes(4, "big") + b"z" * 100
    assert s.receive_data(data[:50], 0.0) == []
    due = s.next_deadline()
    assert due is not None and due < 3.0  # the frame's deadline (grace 2 s)
    s.input_waiting(9.0)  # our loop stalled 7 s past it; the rest is in the socket
    s.handle_timer(9.0)
    assert not s.closed and s.last_receive == 9.0
    assert s.receive_data(data[50:], 9.001) == [b"z" * 100]
    assert not s.closed


def test_a_held_frame_that_does_not_go_on_gets_its_deadline_back() -> None:
    """After the read that follows, a frame still incomplete is judged again at once: the
    time the peer had before the hold counts, the hold does not."""
    clock = FrameClock(2.0)
    assert clock.update(0, 10.0)  # a frame began at 10 s
    clock.hold(15.0)  # 3 s past its deadline, bytes waiting: no deadline until the read
    assert clock.deadline(10) is None
    assert clock.update(0, 20.0)  # read at 20 s, the same frame: its deadline is back
    deadline = clock.deadline(20)
    assert deadline is not None and abs(deadline - (17.0 + 20 / MIN_FRAME_RATE)) < 1e-9
    assert clock.expired(20, 20.0)


def test_a_hold_during_backpressure_ends_only_with_the_backpressure() -> None:
    clock = FrameClock(2.0)
    clock.update(0, 10.0)
    clock.hold(11.0)
    clock.pause(11.5)  # we stop reading: only resume() ends this
    assert not clock.update(0, 12.0) and clock.deadline(0) is None
    clock.resume(13.0)
    assert clock.deadline(0) == 14.0


def test_a_quiet_raw_listener_connection_ends_after_idle_timeout() -> None:
    s = RawSession(OPTS, 1, "tcp", None, 0.0, role="server")
    assert s.next_deadline() == 50.0
    s.handle_timer(50.0)
    assert _closed(s).code == GoAwayCode.IDLE_TIMEOUT
    client = RawSession(OPTS, 1, "tcp", None, 0.0)  # a client is not cut for listening
    assert client.next_deadline() is None
