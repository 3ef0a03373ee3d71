"""The UDP session core without sockets: datagrams in any order, duplicates, loss, bounds,
liveness on a virtual clock."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.exceptions import ConnectionNotReady, MessageTooLarge
from objtransport.sansio.datagram import (
    MAX_UDP_PAYLOAD,
    DatagramSession,
    ReassemblyBudget,
    SeqWindow,
    looks_native,
)
from objtransport.sansio.events import Closed, HandshakeComplete, Message, PongReceived
from objtransport.sansio.framing import (
    FRAME_HEADER,
    FrameType,
    encode_data,
    encode_data_fragment_header,
    encode_frame,
)
from objtransport.sansio.reassembly import PARTIAL_OVERHEAD, PIECE_OVERHEAD

OPTS = Options(max_datagram_payload=100, reassembly_timeout=1.0)


def server(options: Options = OPTS, budget: ReassemblyBudget | None = None,
           now: float = 0.0) -> DatagramSession:
    return DatagramSession(options, 1, "udp", ("127.0.0.1", 1), now, role="server",
                           budget=budget)


def client(options: Options = OPTS, native: bool = True) -> DatagramSession:
    return DatagramSession(options, 2, "udp", ("127.0.0.1", 2), 0.0, native=native)


def wire(d: object) -> bytes:
    return b"".join(bytes(c) for c in d) if isinstance(d, tuple) else bytes(d)  # type: ignore


def datagrams(s: DatagramSession, now: float = 0.0) -> list[bytes]:
    return [wire(d) for d in s.datagrams_to_send(now)]


def open_pair() -> tuple[DatagramSession, DatagramSession]:
    c, s = client(), server()
    for d in datagrams(c):  # the PING probe
        s.receive_datagram(d, 0.001)
    for d in datagrams(s):  # its PONG (PACK: the listener takes packed datagrams)
        c.receive_datagram(d, 0.002)
    assert c.is_open and s.is_open and c.peer_packs and not s.peer_packs
    for d in datagrams(c):  # the PING with PACK that tells the listener we take them too
        s.receive_datagram(d, 0.002)
    for d in datagrams(s):
        c.receive_datagram(d, 0.002)
    assert s.peer_packs
    c.take_events()
    s.take_events()
    return c, s


def frag(seq: int, offset: int, total: int, piece: bytes) -> bytes:
    return encode_data_fragment_header(len(piece), seq, 0, 2, offset, total) + piece


# -- the client's probe ------------------------------------------------------------------

def test_client_opens_on_the_first_pong_and_reports_rtt() -> None:
    c = client()
    assert not c.is_open
    with pytest.raises(ConnectionNotReady):
        c.send_message(b"x")
    (ping,) = datagrams(c)
    assert looks_native(ping) and ping[5] == FrameType.PING
    s = server()
    assert isinstance(s.take_events()[0], HandshakeComplete)
    s.receive_datagram(ping, 0.01)
    (pong,) = datagrams(s)
    c.receive_datagram(pong, 0.03)
    events = c.take_events()
    assert isinstance(events[0], HandshakeComplete)
    assert isinstance(events[1], PongReceived) and events[1].rtt == pytest.approx(0.03)
    assert c.rtt_last == pytest.approx(0.03)


def test_probe_is_repeated_then_gives_up_after_hello_timeout() -> None:
    c = client(Options(hello_timeout=1.0))
    datagrams(c)
    now = 0.0
    pings = 1
    while not c.closed:
        deadline = c.next_deadline()
        assert deadline is not None and deadline > now
        now = deadline
        c.handle_timer(now)
        pings += sum(d[5] == FrameType.PING for d in datagrams(c, now))
    assert now == pytest.approx(1.0)
    assert pings == 4  # at 0, 0.25, 0.5, 0.75
    (closed,) = [e for e in c.take_events() if isinstance(e, Closed)]
    assert closed.error and "no answer to PING" in closed.reason


def test_keepalive_and_liveness_deadline() -> None:
    c, s = open_pair()
    o = c.options
    t = c.next_deadline()
    assert t == pytest.approx(0.002 + o.keepalive_interval)
    c.handle_timer(t)
    assert [d[5] for d in datagrams(c, t)] == [FrameType.PING]
    dead = 0.002 + o.keepalive_interval + o.pong_timeout
    c.handle_timer(dead)
    closed = [e for e in c.take_events() if isinstance(e, Closed)]
    assert closed and closed[0].error and closed[0].code == 6


def test_listener_peer_is_forgotten_when_idle_without_error() -> None:
    s = server(Options(idle_timeout=3.0, keepalive_interval=100.0))
    s.take_events()
    s.receive_datagram(encode_data(b"hi", 1, 0, 2), 1.0)
    assert s.next_deadline() == pytest.approx(4.0)
    s.handle_timer(4.0)
    (closed,) = s.take_events()
    assert isinstance(closed, Closed) and not closed.error and s.closed
    assert s.datagrams_to_send(4.0) == []  # no GOAWAY to a peer that may be gone


# -- data ------------------------------------------------------------------------------

def test_small_and_fragmented_messages_round_trip() -> None:
    c, s = open_pair()
    c.peer_packs = False  # one frame per datagram, as to a peer without PACK
    msgs = [b"", b"a", b"x" * 100, b"y" * 101, bytes(range(256)) * 4]
    for m in msgs:
        c.send_message(m)
    c.send_message(b"meta", stream=3, priority=1, text=True)
    out = datagrams(c)
    assert all(len(d) <= 100 + 28 for d in out)
    assert len(out) == 1 + 1 + 1 + 2 + 11 + 1
    got = []
    for d in out:
        got += s.receive_data(d, 0.1)
    assert got[0] == Message(b"meta", 1, "udp", ("127.0.0.1", 1), 3, "high", True)
    assert got[1:] == msgs  # the high message went first
    assert s.messages_received == 6 and s.bytes_received == sum(map(len, msgs)) + 4
    assert s.fragments_received == 13 and s.held == 0 and s.partial_messages == 0
    # every datagram after the high one counts as overtaken (reordered by the sender)
    assert (s.duplicates, s.messages_missing, s.reordered) == (0, 0, 16)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 2**32 - 1), st.integers(0, 4))
def test_any_arrival_order_with_duplicates_delivers_each_once(size: int, seed: int,
                                                              dups: int) -> None:
    c, s = open_pair()
    c.peer_packs = False  # one frame per datagram, as to a peer without PACK
    payloads = [bytes([i]) * (size + i) for i in range(3)]
    for p in payloads:
        c.send_message(p)
    out = datagrams(c)
    rng = random.Random(seed)
    extra = [rng.choice(out) for _ in range(dups)]
    order = out + extra
    rng.shuffle(order)
    got = []
    for d in order:
        got += s.receive_data(d, 0.1)
    assert sorted(got) == sorted(payloads)
    assert s.duplicates == dups and s.held == 0 and s.garbage == 0
    assert s.datagrams_received == len(order) + 2  # and the PINGs


def test_reassembly_gives_up_after_the_timeout() -> None:
    c, s = open_pair()
    c.send_message(b"z" * 350)  # 4 fragments
    out = datagrams(c)
    for d in out[:-1]:
        s.receive_datagram(d, 0.5)
    assert s.partial_messages == 1 and s.held == 300
    assert s.next_deadline() == pytest.approx(1.5)
    s.handle_timer(1.5)
    assert (s.messages_dropped, s.fragments_expired, s.held, s.partial_messages) == (1, 3, 0, 0)
    s.receive_datagram(out[-1], 1.6)  # too late: counted, not a new partial
    assert s.fragments_expired == 4 and s.partial_messages == 0
    assert s.take_messages() == []


def test_missing_messages_are_counted_from_the_gaps() -> None:
    c, s = open_pair()
    c.peer_packs = False  # one frame per datagram, as to a peer without PACK
    for i in range(10):
        c.send_message(bytes([i]))
    out = datagrams(c)
    for i in (0, 1, 4, 2, 9):
        s.receive_datagram(out[i], 0.1)
    assert s.messages_missing == 5  # 3, 5, 6, 7, 8
    assert s.reordered == 1  # 2 after 4


def test_bounds_per_peer_in_count_and_bytes_and_shared() -> None:
    # each 100-byte piece costs 100 + PIECE_OVERHEAD, each partial PARTIAL_OVERHEAD more
    budget = ReassemblyBudget(3_000)
    opts = Options(max_partial_messages=3, max_reassembly_bytes=1_700,
                   max_datagram_payload=100)
    a, b = server(opts, budget), server(opts, budget)
    for seq in range(1, 11):  # ten first fragments: at most 3 partials kept
        a.receive_datagram(frag(seq, 0, 10_000, b"p" * 100), 0.0)
        assert a.partial_messages <= 3
    assert a.held == 300 and a.evicted == 7 and a.messages_dropped == 7
    assert a.reassembly.cost == 3 * (100 + PIECE_OVERHEAD + PARTIAL_OVERHEAD)
    for off in range(0, 1000, 100):  # one message growing past the shared limit
        b.receive_datagram(frag(1, off, 10_000, b"q" * 100), 0.0)
        assert b.reassembly.cost <= 1_700 and budget.used <= budget.limit
    assert b.messages_dropped == 1  # the 6th piece would pass the budget: given up
    assert budget.used == a.reassembly.cost + b.reassembly.cost
    assert budget.peak <= budget.limit
    a.connection_lost("gone")
    b.close()
    assert budget.used == 0 and a.held == 0 and b.held == 0


def test_bad_datagrams_are_counted_and_dropped() -> None:
    s = server()
    bad = [
        b"",
        b"\x00" * 10,  # truncated header
        struct.pack("!IBBBBIQ", 999, 1, 2, 0, 2, 0, 1),  # length lies
        struct.pack("!IBBBBIQ", 16, 9, 2, 0, 2, 0, 1),  # version
        encode_frame(99),  # unknown type
        encode_frame(FrameType.HELLO, b"x" * 36),  # no HELLO over UDP
        encode_data(b"no number", 0, 0, 2),
    ]
    for d in bad:
        s.receive_datagram(d, 0.0)
    assert s.garbage == len(bad)
    s.receive_datagram(frag(1, 0, 0xFFFFFFFF, b"x" * 10), 0.0)  # claims 4 GiB
    assert s.oversized == 1 and s.held == 0 and s.partial_messages == 0
    s.receive_datagram(frag(2, 0, 1000, b"x" * 100), 0.0)
    s.receive_datagram(frag(2, 100, 2000, b"x" * 100), 0.0)  # another total
    s.receive_datagram(frag(2, 50, 1000, b"x" * 100), 0.0)  # overlaps
    s.receive_datagram(frag(2, 900, 1000, b"x" * 200), 0.0)  # overruns
    assert s.inconsistent == 3 and s.held == 100
    assert s.messages_received == 0 and s.is_open


def test_last_fragment_first_then_the_step_is_checked() -> None:
    s = server()
    s.receive_datagram(frag(1, 200, 250, b"c" * 50), 0.0)
    s.receive_datagram(frag(1, 0, 250, b"a" * 100), 0.0)
    assert s.receive_data(frag(1, 100, 250, b"b" * 100), 0.0) == [
        b"a" * 100 + b"b" * 100 + b"c" * 50]
    s.receive_datagram(frag(2, 150, 250, b"c" * 100), 0.0)
    s.receive_datagram(frag(2, 0, 250, b"a" * 100), 0.0)  # 150 is not a multiple of 100
    assert s.inconsistent == 1


def test_window_passes_over_old_gaps_and_detects_a_restart() -> None:
    w = SeqWindow(size=8)
    for seq in [1, 2, 5]:
        assert not w.seen(seq)
        w.mark(seq)
    assert w.missing == 2
    for seq in range(6, 20):
        w.mark(seq)
    assert w.floor == 19 and w.missing == 2 and w.passed == 2
    assert w.seen(18)
    for seq in range(20, 40):
        w.mark(seq)
    assert not w.seen(1) and w.restarts == 1  # small number far below: the peer restarted
    w.mark(1)
    assert w.floor == 1


def test_fresh_window_joins_a_numbering_under_way() -> None:
    s = server()
    s.receive_datagram(encode_data(b"late joiner", 5_000_000, 0, 2), 0.0)
    s.receive_datagram(encode_data(b"next", 5_000_001, 0, 2), 0.0)
    assert s.take_messages() == [b"late joiner", b"next"]
    assert s.messages_missing == 0 and s.garbage == 0


# -- raw -------------------------------------------------------------------------------

def test_raw_one_datagram_per_message_and_the_datagram_limit() -> None:
    c = client(native=False)
    assert c.is_open
    c.send_message(b"abc")
    c.send_message(b"")
    c.send_message(b"d" * MAX_UDP_PAYLOAD)
    assert datagrams(c) == [b"abc", b"", b"d" * MAX_UDP_PAYLOAD]
    with pytest.raises(MessageTooLarge) as info:
        c.send_message(b"e" * (MAX_UDP_PAYLOAD + 1))
    assert info.value.limit == MAX_UDP_PAYLOAD
    assert c.datagrams_to_send(0.0) == [] and c.messages_sent == 3
    r = DatagramSession(OPTS, 3, "udp", None, 0.0, native=False, role="server")
    assert r.receive_data(b"\x00", 0.0) == [] and r.keepalives == 1
    assert r.receive_data(b"OBJT-looking", 0.0) == [b"OBJT-looking"]


def test_pings_are_answered_and_goaway_closes() -> None:
    c, s = open_pair()
    s.receive_datagram(encode_frame(FrameType.PING, b"12345678"), 1.0)
    (pong,) = datagrams(s)
    assert FRAME_HEADER.unpack_from(pong)[2] == FrameType.PONG and pong[20:] == b"12345678"
    c.close()
    (goaway,) = datagrams(c)
    s.receive_datagram(goaway, 2.0)
    (closed,) = s.take_events()
    assert isinstance(closed, Closed) and closed.by_peer and not closed.error


# -- a run of datagrams from one GRO read --------------------------------------------------

SEG = 40  # every datagram of a run below has this size (the last may be shorter)


def _run_datagram(kind: str, seq: int) -> bytes:
    """One datagram of SEG bytes of the given kind (a DATA's number is ``seq``)."""
    if kind == "data":
        return encode_data(bytes([seq % 251]) * 20, seq, 0, 2)
    if kind == "text":
        return encode_data(b"t" * 20, seq, 0, 2, flags=1)
    if kind == "stream":
        return encode_data(b"s" * 20, seq, 3, 1)
    if kind == "frag":  # the first or the second half of a 24-byte message
        return frag(seq, 12 * (seq % 2), 24, b"f" * 12)
    if kind == "garbage":
        return bytes(range(SEG))
    assert kind == "goaway"
    return encode_frame(FrameType.GOAWAY, struct.pack("!H", 0) + b"r" * 18)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["data"] * 6 + ["text", "stream", "frag",
                                                                "garbage", "goaway"]),
                          st.integers(1, 30)), min_size=1, max_size=40),
       st.sampled_from([b"", b"\x00" * 7, encode_data(b"last", 31, 0, 2)]))
def test_receive_run_matches_one_datagram_at_a_time(items: list[tuple[str, int]],
                                                   tail: bytes) -> None:
    """``receive_run`` (a GRO read split at the segment size) leaves the session exactly as
    ``receive_datagram`` on each datagram does: messages, events, every counter, the end."""
    dgrams = [_run_datagram(kind, seq) for kind, seq in items]
    assert all(len(d) == SEG for d in dgrams)
    if tail:
        dgrams.append(tail)
    one, run = server(), server()
    for d in dgrams:
        one.receive_datagram(d, 1.0)
    run.receive_run(memoryview(b"".join(dgrams)), SEG, 1.0)

    def seen(s: DatagramSession) -> tuple[object, ...]:
        msgs = [(m.data, m.stream, m.priority, m.text) if isinstance(m, Message) else bytes(m)
                for m in s.take_messages()]
        return (msgs, [type(e) for e in s.take_events()], s.loss_counters(),
                s.messages_received, s.bytes_received, s.closed, s.last_receive,
                s.partial_messages, datagrams(s, 1.0))

    assert seen(run) == seen(one)
