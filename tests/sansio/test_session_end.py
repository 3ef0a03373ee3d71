"""How a session ends through its public verbs: fail, peer_closed, carrier_closed."""

from __future__ import annotations

from objtransport.config import Options
from objtransport.sansio.events import Closed
from objtransport.sansio.framing import MAGIC, FrameType, GoAwayCode, decode_goaway
from objtransport.sansio.session import NativeSession, RawSession, Session, SessionState

OPTS = Options(keepalive_interval=10.0, pong_timeout=5.0, hello_timeout=3.0)


def native(conn_id: int) -> NativeSession:
    return NativeSession(OPTS, conn_id, "tcp", None, 0.0, bytes([conn_id]) * 16)


def wire(s: Session) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(0.0))


def pair() -> tuple[NativeSession, NativeSession]:
    a, b = native(1), native(2)
    b.receive_data(wire(a), 0.0)
    a.receive_data(wire(b), 0.0)
    a.take_events()
    b.take_events()
    wire(a)
    wire(b)
    return a, b


def goaways(out: bytes) -> list[tuple[int, str]]:
    off = 4 if out.startswith(MAGIC) else 0
    found = []
    while off < len(out):
        length = int.from_bytes(out[off:off + 4], "big")
        if out[off + 5] == FrameType.GOAWAY:
            found.append(decode_goaway(out[off + 20:off + 4 + length]))
        off += 4 + length
    return found


def closed(s: Session) -> Closed:
    evs = [e for e in s.take_events() if isinstance(e, Closed)]
    assert len(evs) == 1
    return evs[0]


def test_fail_drops_the_queue_and_sends_goaway_with_the_code() -> None:
    a, _ = pair()
    a.send_message(b"x" * 100)
    a.fail("peer does not read", GoAwayCode.OVERLOADED)
    ev = closed(a)
    assert (ev.code, ev.reason, ev.by_peer, ev.error) == (
        GoAwayCode.OVERLOADED, "peer does not read", False, True)
    out = wire(a)
    assert b"x" * 100 not in out
    assert goaways(out) == [(GoAwayCode.OVERLOADED, "peer does not read")]
    assert a.state is SessionState.CLOSED
    a.fail("again")  # a second end is ignored
    assert a.take_events() == []


def test_peer_closed_answers_nothing_and_derives_the_error_from_the_code() -> None:
    a, b = pair()
    a.peer_closed(GoAwayCode.SHUTDOWN, "stopping")
    assert (closed(a).error, wire(a)) == (False, b"")
    b.peer_closed(GoAwayCode.PROTOCOL_ERROR, "bad")
    ev = closed(b)
    assert (ev.by_peer, ev.error, ev.code) == (True, True, GoAwayCode.PROTOCOL_ERROR)


def test_peer_closed_may_keep_what_is_queued() -> None:
    opts = OPTS
    r = RawSession(opts, 1, "grpc", None, 0.0)
    r.take_events()
    r.send_message(b"reply")
    r.peer_closed(GoAwayCode.NORMAL, "the client ended its stream", keep_queued=True)
    assert closed(r).error is False
    assert wire(r) == b"\x00\x00\x00\x05reply"


def test_carrier_closed_sends_no_goaway() -> None:
    a, _ = pair()
    a.send_message(b"y" * 10)
    a.carrier_closed(1009, "message too big", error=True)
    ev = closed(a)
    assert (ev.code, ev.by_peer, ev.error) == (1009, False, True)
    assert wire(a) == b""
    assert not a.has_final
