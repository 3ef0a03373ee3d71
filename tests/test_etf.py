"""The Erlang External Term Format codec: byte layouts as :erlang.term_to_binary/1 writes
them (OTP 26), round trips, bounds; and terms over raw {packet, 4} framing on loopback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport import NetworkTransport
from objtransport.etf import Atom, decode, encode

# term_to_binary(T) on OTP 26 for each T
KNOWN = [
    (1, bytes([131, 97, 1])),
    (-1, bytes([131, 98, 255, 255, 255, 255])),
    (1 << 40, bytes([131, 110, 6, 0, 0, 0, 0, 0, 0, 1])),
    (-(1 << 40), bytes([131, 110, 6, 1, 0, 0, 0, 0, 0, 1])),
    (3.14, bytes([131, 70, 64, 9, 30, 184, 81, 235, 133, 31])),
    (Atom("ok"), bytes([131, 119, 2]) + b"ok"),
    (True, bytes([131, 119, 4]) + b"true"),
    (None, bytes([131, 119, 3]) + b"nil"),
    ([], bytes([131, 106])),
    (b"hi", bytes([131, 109, 0, 0, 0, 2]) + b"hi"),
    ((Atom("ok"), b"hi"), bytes([131, 104, 2, 119, 2]) + b"ok" + bytes([109, 0, 0, 0, 2])
     + b"hi"),
    ([Atom("a"), 300], bytes([131, 108, 0, 0, 0, 2, 119, 1]) + b"a"
     + bytes([98, 0, 0, 1, 44, 106])),
    ({Atom("a"): 1}, bytes([131, 116, 0, 0, 0, 1, 119, 1]) + b"a" + bytes([97, 1])),
]


@pytest.mark.parametrize(("term", "wire"), KNOWN)
def test_encodes_and_decodes_as_erlang_does(term: object, wire: bytes) -> None:
    assert encode(term) == wire
    assert decode(wire) == term


def test_decodes_what_older_nodes_and_elixir_send() -> None:
    assert decode(bytes([131, 100, 0, 2]) + b"ok") == Atom("ok")  # ATOM_EXT (latin-1)
    assert decode(bytes([131, 107, 0, 3, 1, 2, 3])) == [1, 2, 3]  # STRING_EXT: [1, 2, 3]
    assert decode(bytes([131, 119, 5]) + b"false") is False
    assert encode("héllo") == encode("héllo".encode())  # an Elixir string is a binary


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.binary()
    | st.text(max_size=10).filter(lambda s: s not in ("true", "false", "nil")).map(Atom),
    lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids)
    | st.dictionaries(st.integers() | st.binary(max_size=4), kids, max_size=3),
    max_leaves=20))
@settings(max_examples=60, deadline=None)
def test_round_trips(term: object) -> None:
    assert decode(encode(term)) == term


def test_lengths_are_checked_before_allocation_and_depth_is_bounded() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode(bytes([131, 109, 0xFF, 0xFF, 0xFF, 0xFF]) + b"x")  # a 4 GiB binary claimed
    with pytest.raises(ValueError, match="truncated"):
        decode(bytes([131, 108, 0x7F, 0xFF, 0xFF, 0xFF, 106]))  # 2 billion elements claimed
    with pytest.raises(ValueError, match="nested"):
        decode(bytes([131]) + bytes([104, 1]) * 1000 + bytes([106]))
    with pytest.raises(ValueError, match="improper"):
        decode(bytes([131, 108, 0, 0, 0, 1, 97, 1, 97, 2]))
    with pytest.raises(ValueError, match="unsupported term tag"):
        decode(bytes([131, 88, 0]))  # a pid
    with pytest.raises(ValueError, match="after the term"):
        decode(bytes([131, 106, 106]))


async def test_terms_over_raw_packet_4_framing() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, framing="raw")
        conn = await client.connect("127.0.0.1", listener.port, framing="raw")
        term = (Atom("event"), {b"id": 7, Atom("tags"): [b"a", b"b"]}, 2.5, -(1 << 70))
        await client.send_data(conn, encode(term))
        msg = await server.receive(timeout=5.0)
        assert msg.data[:1] == b"\x83" and decode(msg.data) == term
