"""Resumable sessions without sockets: ACKs, resend after a break, duplicates dropped,
a lost session reported."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.sansio.events import Acked, SessionLost, as_message
from objtransport.sansio.framing import MAGIC, FrameType, decode_hello, encode_hello
from objtransport.sansio.handshake import ACK_BYTES_MAX, ack_step
from objtransport.sansio.reliability import ResumeState, data_frames
from objtransport.sansio.session import ACK_BYTES, ACK_EVERY, ACK_PIGGYBACK, NativeSession

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


def client(rs: ResumeState, opts: Options = OPTS) -> NativeSession:
    return NativeSession(opts, 1, "tcp", None, 0.0, rs.session_id, resume=rs, role="client")


def wire(s: NativeSession, now: float = 0.0) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(now))


def deliver(a: NativeSession, b: NativeSession, data: bytes | None = None,
            now: float = 0.0) -> list[bytes]:
    raw = wire(a, now) if data is None else data
    return [as_message(m, 0, "tcp", None).data for m in b.receive_data(raw, now)]


def settle(c: NativeSession, s: NativeSession, now: float = 0.0) -> list[bytes]:
    """Pump both ways, the receiver's delayed ACKs included, until nothing is queued: after
    a resume the sender writes a window at a time and waits for ACKs to open it."""
    got: list[bytes] = []
    for _ in range(1000):
        got += deliver(c, s, now=now)
        now += 0.01
        s.handle_timer(now)
        c.handle_timer(now)
        deliver(s, c, now=now)
        if not c.scheduler.pending_bytes:
            return got + deliver(c, s, now=now)
    raise AssertionError("the sender never drained")


def connect(rs: ResumeState, server: Server, opts: Options = OPTS,
            ) -> tuple[NativeSession, NativeSession]:
    c, s = client(rs, opts), server.session()
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


@pytest.mark.parametrize(("window", "step"), [
    (16 * 1024 * 1024, ACK_BYTES_MAX),  # the default window: a quarter of it
    (8 * 1024 * 1024, 2 * 1024 * 1024),
    (2 * 1024 * 1024, ACK_BYTES),  # a small window: every MiB, as before
])
def test_a_quarter_of_the_senders_window_is_acknowledged_at_once(window: int,
                                                                 step: int) -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server(), Options(max_unacked_bytes=window))
    piece = 64 * 1024
    for _ in range(step // piece - 1):
        c.send_message(bytes(piece))
    deliver(c, s)
    deliver(s, c)  # a piece short of the step: the ACK waits for its delay
    assert rs.unacked_bytes == step - piece
    c.send_message(bytes(piece))
    deliver(c, s)
    deliver(s, c)  # the step reached: acknowledged without waiting for the delay
    assert rs.unacked_bytes == 0


def test_a_peer_that_announces_no_window_is_acknowledged_every_mib() -> None:
    """An older client (its HELLO without FEATURE_WINDOW) gets an ACK every ACK_BYTES."""
    rs = ResumeState(b"c" * 16)
    c, s = client(rs), Server().session()
    raw = wire(c)
    assert raw.startswith(MAGIC)
    end = 8 + int.from_bytes(raw[4:8], "big")  # the magic, the length, what it counts
    hello = decode_hello(raw[24:end])
    assert hello.window == OPTS.max_unacked_bytes
    deliver(c, s, MAGIC + encode_hello(replace(hello, window=0)) + raw[end:])
    deliver(s, c)
    assert c.is_open and s.is_open and c.acks and s.acks
    piece = 64 * 1024
    for _ in range(ACK_BYTES // piece):
        c.send_message(bytes(piece))
    deliver(c, s)
    deliver(s, c)  # ACK_BYTES of payload: acknowledged without waiting for the delay
    assert rs.unacked_bytes == 0


def test_ack_step_of_an_announced_window() -> None:
    assert ack_step(0) == ACK_BYTES  # a peer that announced none (an older one)
    assert ack_step(1) == ACK_BYTES
    assert ack_step(6 * 1024 * 1024) == 1536 * 1024
    assert ack_step(2**32 - 1) == ACK_BYTES_MAX  # a peer's claim is capped


def test_delayed_ack_for_a_few_messages() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"one")
    deliver(c, s)
    assert s.next_deadline() is not None and s.next_deadline() <= 0.005 + 1e-9
    s.handle_timer(0.005)
    deliver(s, c)
    assert not rs.unacked()


def _frame_types(data: bytes) -> list[int]:
    """The types of the frames in ``data``, but PINGs and PONGs (the handshake's)."""
    off, out = 0, []
    while off < len(data):
        if data[off + 5] not in (FrameType.PING, FrameType.PONG):
            out.append(data[off + 5])
        off += 4 + int.from_bytes(data[off:off + 4], "big")
    return out


def test_a_delayed_ack_rides_with_a_write_close_to_its_time() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"ping")
    assert deliver(c, s) == [b"ping"]  # the ACK is due at 0.005
    s.send_message(b"early")
    # more than ACK_PIGGYBACK before the ACK is due: the answer goes alone
    early = wire(s, 0.005 - ACK_PIGGYBACK - 0.0005)
    assert _frame_types(early) == [FrameType.DATA]
    assert rs.unacked()
    s.send_message(b"pong")
    # within ACK_PIGGYBACK of it: the ACK goes first, in the same write
    late = wire(s, 0.005 - ACK_PIGGYBACK / 2)
    assert _frame_types(late) == [FrameType.ACK, FrameType.DATA]
    assert deliver(s, c, late, 0.0045) == [b"pong"]
    assert not rs.unacked()
    # nothing left for the timer: it finds no ACK due, and none goes alone
    s.handle_timer(0.005)
    assert wire(s, 0.005) == b""


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
    got += settle(c, s)
    assert sorted(got) == sorted(expected)
    assert len(got) == len(set(got)) == len(expected)


# -- the resend store keeps written batches, not messages ------------------------------------

SMALL_FRAGMENTS = Options(max_fragment_size=1000)


def small_client(rs: ResumeState) -> NativeSession:
    return NativeSession(SMALL_FRAGMENTS, 1, "tcp", None, 0.0, rs.session_id, resume=rs,
                         role="client")


def frame_ends(data: bytes) -> list[int]:
    """Offsets just after each whole frame of a native byte stream (after the magic)."""
    pos = 4 if data[:4] == b"OBJT" else 0
    ends = []
    while pos + 4 <= len(data):
        pos += 4 + int.from_bytes(data[pos:pos + 4], "big")
        if pos <= len(data):
            ends.append(pos)
    return ends


messages = st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 3), st.integers(0, 2)),
                    min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(messages, st.integers(0, 10_000), st.integers(1, 3))
def test_what_is_unacked_is_exactly_what_the_peer_lacks(msgs: list[tuple[int, int, int]],
                                                        seed: int, batches: int) -> None:
    """Messages written in several batches (fragments of large ones interleaved), the peer's
    ACK at any frame boundary (inside a batch too): ``unacked()`` lists exactly the
    messages above the ACK, whole, and the bytes count at least their payload."""
    rnd = random.Random(seed)
    rs = ResumeState(b"c" * 16)
    server = Server()
    c = small_client(rs)
    s = server.session()
    deliver(c, s)
    deliver(s, c)
    sent: dict[int, bytes] = {}
    wired = b""
    for i, (n, prio, stream) in enumerate(msgs):
        payload = bytes([i]) * n
        sent[c.send_message(payload, stream, prio)] = payload
        if rnd.randrange(batches) == 0:
            wired += wire(c)
    wired += wire(c)
    ends = [0, *frame_ends(wired)]
    got = deliver(c, s, wired[:rnd.choice(ends)])  # the peer received whole frames only
    s.handle_timer(1.0)  # its delayed ACK goes
    deliver(s, c)
    acked = rs.acked
    assert acked == s.rs.floor and set(got) >= {sent[q] for q in sent if q <= acked}
    lacking = [(q, sent[q]) for q in sorted(sent) if q > acked]
    assert [(u[0], u[1]) for u in rs.unacked()] == lacking
    assert rs.unacked_count == len(lacking)
    assert rs.unacked_bytes >= sum(len(p) for _, p in lacking)
    if not lacking:
        assert rs.unacked_bytes == 0 and not rs.sent


@settings(max_examples=60, deadline=None)
@given(messages, st.integers(0, 10_000))
def test_resume_inside_a_batch_resends_exactly_the_rest(msgs: list[tuple[int, int, int]],
                                                        seed: int) -> None:
    """The socket breaks at any byte of one written batch, with part of the queue not
    written at all (a large message half fragmented): the resumed session delivers every
    message once, per stream and priority in order, and counts each resend once."""
    rnd = random.Random(seed)
    rs = ResumeState(b"c" * 16)
    server = Server()
    c = small_client(rs)
    s = server.session()
    deliver(c, s)
    deliver(s, c)
    order: dict[tuple[int, int], list[bytes]] = {}
    for i, (n, prio, stream) in enumerate(msgs):
        payload = bytes([i]) * n + b"%d" % i
        c.send_message(payload, stream, prio)
        order.setdefault((prio, stream), []).append(payload)
    first = b"".join(bytes(x) for x in c.data_to_send(0.0, 2000, strict=True))  # part only
    got = deliver(c, s, first[:rnd.randint(0, len(first))])
    floor = s.rs.floor  # the server has everything up to here
    c2, s2 = small_client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)
    got += deliver(c2, s2)
    assert sorted(got) == sorted(p for ps in order.values() for p in ps)
    # what was written and the server lacks is resent (what came out of order too, then
    # dropped); what was only queued goes out for the first time
    written = {f.seq for f in data_frames([first]) if f.seq > floor}
    assert rs.resent == len(written)
    for ps in order.values():
        assert [p for p in got if p in ps] == ps
    s2.handle_timer(1.0)
    deliver(s2, c2)
    assert rs.unacked_count == 0 and rs.unacked_bytes == 0 and not rs.sent


def test_a_lost_session_reports_a_half_sent_large_message_whole() -> None:
    rs = ResumeState(b"c" * 16)
    big = bytes(range(256)) * 40  # 10 KiB: fragments of 1000 B with SMALL_FRAGMENTS
    c = small_client(rs)
    s = Server().session()
    deliver(c, s)
    deliver(s, c)
    c.send_message(b"small", priority=1)
    c.send_message(big, stream=1)
    wire_part = b"".join(bytes(x) for x in c.data_to_send(0.0, 3000, strict=True))
    assert wire_part  # the small one and a few fragments went, the rest is queued
    lost = rs.take_unconfirmed()
    assert [(m[0], m[1], m[2], m[3]) for m in lost] == [(1, b"small", 0, 1), (2, big, 1, 2)]
    assert rs.unacked_bytes == 0 and rs.unacked_count == 0
    assert c.scheduler.queued_by_priority()[1:] == [0, 0, 0]


def test_a_resent_message_delivered_out_of_order_before_is_dropped() -> None:
    """The receiver had 2 (out of order) but not 1; both come again in one read: 1 is
    delivered, 2 is a duplicate even though it now follows the floor directly."""
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"one", priority=3)
    c.send_message(b"two", priority=1)
    data = wire(c)  # high first: "two" (2), then "one" (1)
    two_end = data.index(b"two") + 3
    assert deliver(c, s, data[:two_end]) == [b"two"]
    two = data[two_end - 23:two_end]
    assert deliver(c, s, data[two_end:] + two) == [b"one"]
    assert s.rs.floor == 2 and not s.rs.above and s.rs.duplicates == 1


def test_a_server_without_acks_reports_what_was_in_doubt() -> None:
    """The client's last session had ACKs; the listener it reaches now does not (restarted
    with reliable=False): what was not acknowledged is reported lost at once, and nothing
    is kept for a resend any more."""
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    c.send_message(b"in doubt")
    wire(c)
    plain = NativeSession(Options(reliable=False), 2, "tcp", None, 0.0, b"s" * 16,
                          role="server", resume_lookup=Server().lookup)
    c2 = client(rs)
    deliver(c2, plain)
    deliver(plain, c2)
    lost = [e for e in c2.take_events() if isinstance(e, SessionLost)]
    assert len(lost) == 1 and [m[1] for m in lost[0].unconfirmed] == [b"in doubt"]
    assert rs.unacked_count == 0 and not c2.acks
    c2.send_message(b"fresh")
    assert deliver(c2, plain) == [b"fresh"] and rs.unacked_count == 0
