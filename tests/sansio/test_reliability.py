"""Resumable sessions without sockets: ACKs, resend after a break, duplicates dropped,
a lost session reported."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.sansio.events import Acked, SessionLost, as_message
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.session import ACK_BYTES, ACK_EVERY, NativeSession

OPTS = Options()


class Server:
    """A listener's side: sessions it keeps, found again by the client's session id."""

    def __init__(self) -> None:
        self.kept: dict[bytes, ResumeState] = {}

    def lookup(self, sid: bytes) -> tuple[ResumeState, bool]:
        if sid in self.kept:
            return self.kept[sid], True
        self.kept[sid] = ResumeState(sid)
        return self.kept[sid], False

    def session(self) -> NativeSession:
        return NativeSession(OPTS, 2, "tcp", None, 0.0, b"s" * 16, role="server",
                             resume_lookup=self.lookup)


def client(rs: ResumeState) -> NativeSession:
    return NativeSession(OPTS, 1, "tcp", None, 0.0, rs.session_id, resume=rs, role="client")


def wire(s: NativeSession, now: float = 0.0) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(now))


def deliver(a: NativeSession, b: NativeSession, data: bytes | None = None,
            now: float = 0.0) -> list[bytes]:
    raw = wire(a, now) if data is None else data
    return [as_message(m, 0, "tcp", None).data for m in b.receive_data(raw, now)]


def connect(rs: ResumeState, server: Server) -> tuple[NativeSession, NativeSession]:
    c, s = client(rs), server.session()
    deliver(c, s)
    deliver(s, c)
    assert c.is_open and s.is_open and c.acks and s.acks
    return c, s


def test_acks_free_the_sender() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    n = ACK_EVERY + 10
    for i in range(n):
        c.send_message(b"%d" % i)
    assert rs.unacked_bytes > 0
    got = deliver(c, s)
    assert len(got) == n
    deliver(s, c)  # n >= ACK_EVERY: acknowledged at once
    assert rs.unacked_bytes == 0 and not rs.unacked()
    assert any(isinstance(e, Acked) for e in c.take_events())


def test_a_megabyte_of_payload_is_acknowledged_at_once() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    for _ in range(ACK_BYTES // (64 * 1024)):
        c.send_message(bytes(64 * 1024))
    deliver(c, s)
    deliver(s, c)  # ACK_BYTES of payload: acknowledged without waiting for the delay
    assert rs.unacked_bytes == 0


def test_delayed_ack_for_a_few_messages() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"one")
    deliver(c, s)
    assert s.next_deadline() is not None and s.next_deadline() <= 0.005 + 1e-9
    s.handle_timer(0.005)
    deliver(s, c)
    assert not rs.unacked()


def test_resume_resends_exactly_what_was_lost_and_drops_duplicates() -> None:
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    for i in range(10):
        c.send_message(b"m%d" % i)
    first = wire(c)
    # the connection breaks after 5 whole messages made it
    cut = first.index(b"m5") - 20
    got = deliver(c, s, first[:cut])
    assert got == [b"m%d" % i for i in range(5)]
    # reconnect: same client state, a new socket, the server finds the session
    c2, s2 = client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)
    got2 = deliver(c2, s2)
    assert got2 == [b"m%d" % i for i in range(5, 10)]
    assert rs.resent == 5
    c2.send_message(b"after")
    assert deliver(c2, s2) == [b"after"]


def test_duplicates_from_a_stale_resend_are_dropped() -> None:
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    for i in range(3):
        c.send_message(b"x%d" % i)
    data = wire(c)
    assert len(deliver(c, s, data)) == 3
    assert deliver(c, s, data) == []  # the same frames again
    assert s.rs.duplicates == 3


def test_server_that_lost_the_session_is_reported() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"maybe delivered")
    wire(c)  # sent, never acknowledged
    c2, s2 = client(rs), Server().session()  # a restarted server knows nothing
    deliver(c2, s2)
    deliver(s2, c2)
    lost = [e for e in c2.take_events() if isinstance(e, SessionLost)]
    assert len(lost) == 1 and lost[0].unconfirmed[0][1] == b"maybe delivered"
    assert rs.unacked_bytes == 0 and rs.next_seq == 0
    c2.send_message(b"fresh")
    assert deliver(c2, s2) == [b"fresh"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 40_000), min_size=1, max_size=4))
def test_any_break_points_lose_nothing_and_duplicate_nothing(seed: int,
                                                             sizes: list[int]) -> None:
    rnd = random.Random(seed)
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    expected = []
    got: list[bytes] = []
    for round_ in range(4):
        for i, n in enumerate(sizes):
            payload = bytes([round_, i]) + bytes(n)
            c.send_message(payload, priority=rnd.choice([1, 2, 3]), stream=rnd.randint(0, 2))
            expected.append(payload)
        data = wire(c)
        cut = rnd.randint(0, len(data))
        got += deliver(c, s, data[:cut])
        if s.is_open:
            deliver(s, c, wire(s))  # the server's ACKs may or may not come back
        c, s = client(rs), server.session()
        deliver(c, s)
        deliver(s, c)
    got += deliver(c, s)
    assert sorted(got) == sorted(expected)
    assert len(got) == len(set(got)) == len(expected)
