"""Two sessions talking through memory: handshake, messages, fragmentation, liveness, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.exceptions import ConnectionNotReady, MessageTooLarge
from objtransport.sansio.events import (
    Closed,
    HandshakeComplete,
    Message,
    PongReceived,
    Received,
    as_message,
)
from objtransport.sansio.framing import (
    MAGIC,
    FrameType,
    GoAwayCode,
    decode_goaway,
    encode_data,
    encode_frame,
    encode_raw,
)
from objtransport.sansio.session import NativeSession, RawSession, Session, SessionState

OPTS = Options(keepalive_interval=10.0, pong_timeout=5.0, hello_timeout=3.0)


def native(conn_id: int = 1, opts: Options = OPTS, now: float = 0.0) -> NativeSession:
    return NativeSession(opts, conn_id, "tcp", ("127.0.0.1", conn_id), now, bytes([conn_id]) * 16)


def msgs(items: list[Received]) -> list[Message]:
    return [as_message(m, 0, "tcp", None) for m in items]


def wire(s: Session, now: float = 0.0) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(now))


def pump(a: Session, b: Session, now: float = 0.0) -> list[bytes]:
    return [m.data for m in msgs(b.receive_data(wire(a, now), now))]


def pair() -> tuple[NativeSession, NativeSession]:
    a, b = native(1), native(2)
    pump(a, b)
    pump(b, a)
    return a, b


def goaway_code(s: Session) -> int:
    """The code of the GOAWAY in what ``s`` sends (after its preface, if any)."""
    out = wire(s)
    off = 4 if out.startswith(MAGIC) else 0
    while off < len(out):
        length = int.from_bytes(out[off:off + 4], "big")
        if out[off + 5] == FrameType.GOAWAY:
            return decode_goaway(out[off + 20:off + 4 + length])[0]
        off += 4 + length
        if out[off:off + 4] == MAGIC:
            off += 4
    raise AssertionError(f"no GOAWAY in {out[:40]!r}")


def test_handshake_opens_both_sides_and_sends_a_ping() -> None:
    a, b = native(1), native(2)
    first = wire(a)
    assert first.startswith(MAGIC)
    assert b.receive_data(first, 0.0) == []
    assert b.state is SessionState.OPEN
    assert isinstance(b.take_events()[0], HandshakeComplete)
    assert a.state is SessionState.HANDSHAKE
    with pytest.raises(ConnectionNotReady):
        a.send_message(b"too early")
    pump(b, a, 0.0)
    assert a.state is SessionState.OPEN
    assert b.pings_sent == 1 and a.pings_sent == 1


def test_messages_in_order_with_metadata() -> None:
    a, b = pair()
    for i in range(100):
        a.send_message(f"m{i}".encode(), stream=i % 3, priority=2)
    got = msgs(b.receive_data(wire(a), 1.0))
    assert [m.data for m in got] == [f"m{i}".encode() for i in range(100)]
    assert got[5].stream == 2 and got[5].priority == "normal" and got[5].conn_id == 2
    assert b.messages_received == 100
    assert b.bytes_received == sum(len(f"m{i}") for i in range(100))
    assert a.messages_sent == 100


def test_large_message_is_fragmented_and_reassembled() -> None:
    a, b = pair()
    big = bytes(range(256)) * 5000  # 1.28 MB > 256 KiB fragments
    a.send_message(big)
    out = wire(a)
    assert out.count(b"\x00\x00\x00\x00\x00\x00\x00\x01") >= 1
    got = msgs(b.receive_data(out, 0.0))
    assert len(got) == 1 and got[0].data == big


def test_high_priority_overtakes_a_large_low_message_within_one_fragment() -> None:
    a, b = pair()
    a.send_message(b"L" * (4 * 256 * 1024), priority=3)
    first = a.data_to_send(0.0, budget=1)  # one fragment of the big message goes out
    a.send_message(b"urgent", priority=1)
    rest = a.data_to_send(0.0)
    got = msgs(b.receive_data(b"".join(bytes(c) for c in first + rest), 0.0))
    assert [m.data for m in got][0] == b"urgent"
    assert len(got[1].data) == 4 * 256 * 1024


def test_text_flag_and_priorities_round_trip() -> None:
    a, b = pair()
    a.send_message(b"t", text=True, priority=0)
    (m,) = msgs(b.receive_data(wire(a), 0.0))
    assert m.text and m.priority == "control"


def test_message_too_large_for_the_peer_is_refused_locally() -> None:
    small = Options(max_message_size=1000)
    a, b = native(1), native(2, small)
    pump(a, b)
    pump(b, a)
    with pytest.raises(MessageTooLarge):
        a.send_message(b"x" * 1001)
    assert a.messages_sent == 0


def test_ping_pong_measures_rtt() -> None:
    a, b = pair()
    pump(a, b, 0.0)  # a's PING reaches b, b answers
    pump(b, a, 0.25)
    rtts = [e.rtt for e in a.take_events() if isinstance(e, PongReceived)]
    assert rtts == [0.25]


def test_keepalive_schedule_and_dead_peer() -> None:
    a, b = pair()
    pump(a, b, 0.0)
    pump(b, a, 0.0)
    a.take_events()
    assert a.next_deadline() == 10.0
    a.handle_timer(10.0)
    assert a.pings_sent == 2
    # nothing comes back: dead after keepalive_interval + pong_timeout of silence
    a.handle_timer(14.9)
    assert a.state is SessionState.OPEN
    a.handle_timer(15.0)
    assert a.state is SessionState.CLOSED
    closed = [e for e in a.take_events() if isinstance(e, Closed)]
    assert closed[0].code == GoAwayCode.IDLE_TIMEOUT and closed[0].error


def test_hello_timeout() -> None:
    a = native(1)
    assert a.next_deadline() == 3.0
    a.handle_timer(2.9)
    assert a.state is SessionState.HANDSHAKE
    a.handle_timer(3.0)
    assert a.state is SessionState.CLOSED
    assert goaway_code(a) == GoAwayCode.HELLO_TIMEOUT


def test_orderly_close_sends_queued_messages_then_goaway() -> None:
    a, b = pair()
    a.send_message(b"last words")
    a.close()
    got = msgs(b.receive_data(wire(a), 0.0))
    assert [m.data for m in got] == [b"last words"]
    closed = [e for e in b.take_events() if isinstance(e, Closed)]
    assert closed == [Closed(0, "closed", True, False)]


@pytest.mark.parametrize("bad, code", [
    (b"GET / HTTP/1.1\r\n\r\n", GoAwayCode.PROTOCOL_ERROR),
    (MAGIC + b"\xff\xff\xff\xff", GoAwayCode.FRAME_TOO_LARGE),
    (MAGIC + b"\x00\x00\x00\x03", GoAwayCode.PROTOCOL_ERROR),
    (MAGIC + encode_data(b"x", 1, 0, 2), GoAwayCode.PROTOCOL_ERROR),  # DATA before HELLO
    (MAGIC + b"\x00\x00\x00\x10\x02" + bytes(15), GoAwayCode.UNSUPPORTED_VERSION),
])
def test_bad_input_closes_with_the_right_goaway(bad: bytes, code: int) -> None:
    b = native(2)
    wire(b)  # its own preface went out already
    assert b.receive_data(bad, 0.0) == []
    assert b.state is SessionState.CLOSED
    assert goaway_code(b) == code
    assert b.receive_data(b"more", 0.0) == []


def test_unknown_frame_type_after_hello() -> None:
    a, b = pair()
    b.receive_data(encode_frame(9, b""), 0.0)
    assert b.state is SessionState.CLOSED
    assert goaway_code(b) == GoAwayCode.PROTOCOL_ERROR


def test_second_hello_is_a_protocol_error() -> None:
    a, b = pair()
    hello_again = native(1).data_to_send(0.0)[0][4:]
    b.receive_data(bytes(hello_again), 0.0)
    assert b.state is SessionState.CLOSED


def test_peer_goaway_is_reported() -> None:
    a, b = pair()
    a.close(GoAwayCode.SHUTDOWN, "bye")
    b.receive_data(wire(a), 0.0)
    (closed,) = [e for e in b.take_events() if isinstance(e, Closed)]
    assert (closed.code, closed.reason, closed.by_peer, closed.error) == (7, "bye", True, False)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=6),
       cuts=st.lists(st.integers(1, 70_000), min_size=1, max_size=40))
def test_any_chunking_delivers_the_same_messages(sizes: list[int], cuts: list[int]) -> None:
    a, b = pair()
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    for p in payloads:
        a.send_message(p)
    data = wire(a)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        i += 1
        got += [m.data for m in msgs(b.receive_data(data[pos:pos + step], 0.0))]
        pos += step
    assert got == payloads


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=5),
       cuts=st.lists(st.integers(1, 100_000), min_size=1, max_size=20))
def test_any_chunking_through_get_buffer(sizes: list[int], cuts: list[int]) -> None:
    """The BufferedProtocol path: the session says where bytes go, possibly a big body."""
    a, b = pair()
    payloads = [bytes([i % 7 + 1]) * n for i, n in enumerate(sizes)]
    for p in payloads:
        a.send_message(p)
    data = wire(a)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        buf = b.get_buffer(-1)
        n = min(len(buf), cuts[i % len(cuts)], len(data) - pos)
        i += 1
        buf[:n] = data[pos:pos + n]
        got += [m.data for m in msgs(b.buffer_updated(n, 0.0))]
        pos += n
    assert got == payloads


def test_raw_session_is_packet_4_with_keepalive_filter() -> None:
    a = RawSession(OPTS, 1, "tcp", None, 0.0)
    b = RawSession(OPTS, 2, "tcp", None, 0.0)
    for p in (b"one", b"\x00", b"", b"x" * 100_000):
        a.send_message(p)
    out = wire(a)
    assert out.startswith(encode_raw(b"one"))
    got = msgs(b.receive_data(out, 0.0))
    assert [len(m.data) for m in got] == [3, 0, 100_000]
    assert b.keepalives_received == 1


def test_raw_keepalive_filter_off_delivers_the_byte() -> None:
    b = RawSession(Options(raw_keepalive_filter=False), 2, "tcp", None, 0.0)
    assert b.receive_data(encode_raw(b"\x00"), 0.0) == [b"\x00"]


def test_raw_oversized_length_refused_before_the_body() -> None:
    b = RawSession(Options(max_message_size=1000), 2, "tcp", None, 0.0)
    b.receive_data(b"\x00\x00\x03\xe9", 0.0)  # 1001
    assert b.state is SessionState.CLOSED
    (closed,) = [e for e in b.take_events() if isinstance(e, Closed)]
    assert closed.code == GoAwayCode.MESSAGE_TOO_LARGE and "1001" in closed.reason
    assert wire(b) == b""  # raw has no GOAWAY frame


def test_raw_sends_keepalive_byte_when_asked() -> None:
    a = RawSession(Options(raw_keepalive_interval=5.0), 1, "tcp", None, 0.0)
    assert a.next_deadline() == 5.0
    a.handle_timer(5.0)
    assert wire(a, 5.0) == encode_raw(b"\x00")


def test_raw_eof_between_messages_is_orderly_and_inside_one_is_an_error() -> None:
    between = RawSession(OPTS, 1, "tcp", None, 0.0)
    between.receive_data(encode_raw(b"whole"), 0.0)
    between.connection_lost("peer closed the connection (EOF)")
    (closed,) = [e for e in between.take_events() if isinstance(e, Closed)]
    assert closed.by_peer and not closed.error

    inside = RawSession(OPTS, 2, "tcp", None, 0.0)
    inside.receive_data(encode_raw(b"whole")[:6], 0.0)  # length and one byte of payload
    inside.connection_lost("peer closed the connection (EOF)")
    (closed,) = [e for e in inside.take_events() if isinstance(e, Closed)]
    assert closed.error


# -- queue() / queue_many(): what send_data and send_many use ------------------------------

def raw_pair() -> tuple[RawSession, RawSession]:
    a, b = RawSession(OPTS, 1, "tcp", None, 0.0), RawSession(OPTS, 2, "tcp", None, 0.0)
    return a, b


batches = st.lists(st.lists(st.binary(max_size=40), max_size=8), min_size=1, max_size=5)


@settings(max_examples=50, deadline=None)
@given(batches, st.sampled_from([(2, 0, False), (1, 0, False), (2, 3, True)]),
       st.booleans())
def test_queue_many_sends_the_same_bytes_as_send_message_one_by_one(
        groups: list[list[bytes]], kind: tuple[int, int, bool], raw: bool) -> None:
    priority, stream, text = kind
    if raw:
        one, many = raw_pair()
        peer, peer2 = raw_pair()
    else:
        one, peer = pair()
        many, peer2 = pair()
    for group in groups:
        for data in group:
            one.send_message(data, stream, priority, text)
        many.queue_many(iter(group), stream, priority, text)
        assert many.scheduler.pending_bytes == one.scheduler.pending_bytes
    assert wire(many) == wire(one)
    assert many.messages_sent == one.messages_sent and many.bytes_sent == one.bytes_sent


def test_queue_many_wakes_once_and_answers_for_the_last_message() -> None:
    a, b = pair()
    wire(a)  # its PONG
    wakes: list[int] = []
    a.on_wake = lambda: wakes.append(a.scheduler.pending_bytes)
    a.send_high = 1000
    assert a.queue_many([b"x" * 10] * 10) is False  # 300 bytes queued
    assert wakes == [300]
    assert a.queue_many([b"x" * 10] * 30) is True  # 1200 > send_high
    assert wakes == [300]  # the queue was not empty: no second wake
    wire(a)
    assert a.queue(b"y") is False and len(wakes) == 2


def test_queue_many_keeps_what_came_before_an_error() -> None:
    """A message refused (too large for the peer) or a bad item ends the batch: the
    messages before it are queued whole, nothing of the rest is."""
    a, b = pair()
    pump(a, b)  # its PONG: the queue is empty
    wakes: list[int] = []
    a.on_wake = lambda: wakes.append(a.scheduler.pending_bytes)
    big = bytes(OPTS.max_message_size + 1)
    with pytest.raises(MessageTooLarge):
        a.queue_many([b"one", b"two", big, b"three"])
    assert wakes == [46]  # the driver is told about what was queued before the error
    with pytest.raises(TypeError):
        a.queue_many([b"four", "not bytes"])  # type: ignore[list-item]
    assert pump(a, b) == [b"one", b"two", b"four"] and len(wakes) == 1
    assert a.messages_sent == 3


def test_queue_many_with_a_large_message_in_the_middle_keeps_the_order() -> None:
    a, b = pair()
    big = bytes(range(256)) * 2000  # 512 KiB: fragmented
    a.queue_many([b"a", big, b"b"])
    got: list[bytes] = []
    for _ in range(10):
        got += pump(a, b)
    assert got == [b"a", big, b"b"]


def test_queue_refuses_before_the_handshake() -> None:
    a = native(1)
    with pytest.raises(ConnectionNotReady):
        a.queue(b"x")
    with pytest.raises(ConnectionNotReady):
        a.queue_many([b"x"])
