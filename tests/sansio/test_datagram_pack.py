"""Packed UDP datagrams (several whole frames in one, docs/protocol.md section 6): announced
by PACK on PING / PONG, never towards a peer that did not announce it, each frame handled as
if it had come alone."""

from __future__ import annotations

from objtransport.config import Options
from objtransport.sansio.admission import Admission, ReturnCheck
from objtransport.sansio.datagram import DatagramSession, looks_native
from objtransport.sansio.framing import (
    FLAG_PACK,
    FrameType,
    encode_data,
    encode_frame,
)

OPTS = Options(max_datagram_payload=100)
ADDR = ("127.0.0.1", 9)


def _session(role: str) -> DatagramSession:
    return DatagramSession(OPTS, 1, "udp", ADDR, 0.0, role=role)


def _wire(s: DatagramSession, now: float = 0.0) -> list[bytes]:
    return [b"".join(bytes(c) for c in d) if isinstance(d, tuple) else bytes(d)
            for d in s.datagrams_to_send(now)]


def _exchange(c: DatagramSession, s: DatagramSession) -> None:
    for _ in range(4):  # PING, PONG, the PING with PACK, its PONG
        for d in _wire(c):
            s.receive_datagram(d, 0.001)
        for d in _wire(s):
            c.receive_datagram(d, 0.002)


def test_both_sides_announce_and_small_messages_go_packed() -> None:
    c, s = _session("client"), _session("server")
    _exchange(c, s)
    assert c.is_open and c.peer_packs and s.peer_packs
    msgs = [bytes([i]) * (i % 7) for i in range(40)]
    for m in msgs:
        c.send_message(m)
    out = _wire(c)
    assert all(len(d) <= 100 + 28 for d in out)
    assert len(out) == -(-sum(20 + len(m) for m in msgs) // 128)  # every datagram full
    before = s.datagrams_received
    got: list[object] = []
    for d in out:
        got += s.receive_data(d, 0.1)
    assert got == msgs
    assert s.datagrams_received - before == len(out)
    assert s.messages_received == len(msgs) and s.garbage == 0


def test_a_peer_without_pack_gets_one_frame_per_datagram() -> None:
    c = _session("client")
    (ping,) = _wire(c)
    assert ping[6] == 0  # the probe does not say PACK: an older listener must admit it
    old_pong = encode_frame(FrameType.PONG, ping[20:28])  # an older listener's PONG
    c.receive_datagram(old_pong, 0.01)
    assert c.is_open and not c.peer_packs
    assert _wire(c) == []  # no PING with PACK either
    for i in range(5):
        c.send_message(b"m%d" % i)
    assert len(_wire(c)) == 5


def test_pongs_say_pack_and_a_ping_with_it_is_screened_and_admitted() -> None:
    s = _session("server")
    s.receive_datagram(encode_frame(FrameType.PING, b"12345678", flags=FLAG_PACK), 0.0)
    assert s.peer_packs
    (pong,) = _wire(s)
    assert pong[5] == FrameType.PONG and pong[6] == FLAG_PACK
    check = ReturnCheck(b"k" * 16)
    ping = encode_frame(FrameType.PING, b"12345678", flags=FLAG_PACK)
    assert looks_native(ping) and check.screen(ping, ADDR, 0.0) is Admission.ANSWER
    good = encode_frame(FrameType.PING, b"12345678" + check.cookie(ADDR, 0.0), flags=FLAG_PACK)
    assert check.screen(good, ADDR, 0.0) is Admission.ADMIT
    # a PING comes alone; packed DATA from a forgotten peer is answered by its first frame
    assert not looks_native(ping + ping) and check.screen(good + ping, ADDR, 0.0) is \
        Admission.DROP
    data = encode_data(b"a", 7, 0, 2) + encode_data(b"b", 8, 0, 2)
    assert looks_native(data) and check.screen(data, ADDR, 0.0) is Admission.ANSWER


def test_a_frame_cut_by_the_end_of_the_datagram_is_garbage_the_ones_before_count() -> None:
    s = _session("server")
    s.take_events()
    whole = encode_data(b"one", 1, 0, 2) + encode_data(b"two", 2, 3, 1)
    s.receive_datagram(whole + encode_data(b"three", 3, 0, 2)[:-2], 0.0)
    got = s.take_messages()
    assert [getattr(m, "data", m) for m in got] == [b"one", b"two"]
    assert s.garbage == 1 and s.datagrams_received == 1
    s.receive_datagram(encode_data(b"x", 4, 0, 2) + b"\x00" * 5, 0.0)  # a tail too short
    assert s.take_messages() == [b"x"] and s.garbage == 2


def test_a_goaway_among_packed_frames_ends_the_session_there() -> None:
    s = _session("server")
    s.take_events()
    goaway = encode_frame(FrameType.GOAWAY, b"\x00\x00bye")
    s.receive_datagram(encode_data(b"a", 1, 0, 2) + goaway + encode_data(b"b", 2, 0, 2), 0.0)
    assert s.closed and s.take_messages() == [b"a"]
