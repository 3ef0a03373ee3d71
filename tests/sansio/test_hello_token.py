"""The token in the native HELLO (docs/protocol.md sections 1.3 and 9), without sockets:
the byte layout, the limits, and a listener session that holds the HELLO until the driver
answers ``authenticated``."""

from __future__ import annotations

import pytest

from objtransport.config import Options
from objtransport.exceptions import ProtocolError
from objtransport.sansio.events import AuthenticationRequested, Closed, HandshakeComplete
from objtransport.sansio.framing import (
    FEATURE_TOKEN,
    MAGIC,
    MAX_TOKEN,
    GoAwayCode,
    Hello,
    decode_goaway,
    decode_hello,
    encode_data,
    encode_hello,
)
from objtransport.sansio.session import NativeSession


def test_token_layout_after_the_fixed_fields() -> None:
    frame = encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20, 0, "tök"))
    payload = frame[20:]
    assert int.from_bytes(payload[16:20], "big") & FEATURE_TOKEN
    assert payload[36:38] == (4).to_bytes(2, "big") and payload[38:] == "tök".encode()
    assert decode_hello(payload).token == "tök"
    assert decode_hello(encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20))[20:]).token is None


@pytest.mark.parametrize("tail", [b"", b"\x00", b"\x00\x00", b"\x10\x01" + b"x" * 5000,
                                  b"\x00\x05abc", b"\x00\x02\xff\xfe"])
def test_bad_tokens_are_protocol_errors(tail: bytes) -> None:
    fixed = bytearray(encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20))[20:])
    fixed[19] |= FEATURE_TOKEN
    with pytest.raises(ProtocolError):
        decode_hello(bytes(fixed) + tail)


def test_a_token_above_the_limit_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20, 0, "x" * (MAX_TOKEN + 1)))


def _listener() -> NativeSession:
    s = NativeSession(Options(), 1, "tcp", None, 0.0, b"l" * 16, send_preface=False,
                      role="server")
    s.require_authentication()
    return s


def _goaway(s: NativeSession) -> tuple[int, str]:
    out = b"".join(bytes(c) for c in s.data_to_send(1.0))
    assert out.startswith(MAGIC)
    return decode_goaway(out[24:])


def test_the_hello_is_held_until_authenticated() -> None:
    s = _listener()
    assert s.receive_data(MAGIC + encode_hello(Hello(b"c" * 16, 0, 1 << 20, 1 << 20, 0,
                                                     "t")), 0.0) == []
    assert s.take_events() == [AuthenticationRequested("t")]
    assert s.data_to_send(0.0) == [] and not s.is_open  # nothing answered yet
    s.authenticated("alice", 0.5)
    assert s.is_open and isinstance(s.take_events()[0], HandshakeComplete)
    assert s.receive_data(encode_data(b"hi", 1, 0, 2), 0.6) == [b"hi"]


def test_a_refusal_and_data_before_the_answer() -> None:
    s = _listener()
    s.receive_data(MAGIC + encode_hello(Hello(b"c" * 16, 0, 1 << 20, 1 << 20)), 0.0)
    s.authenticated(None, 0.1)
    assert _goaway(s) == (GoAwayCode.UNAUTHENTICATED, "authentication refused")
    s2 = _listener()
    s2.receive_data(MAGIC + encode_hello(Hello(b"c" * 16, 0, 1 << 20, 1 << 20, 0, "t")), 0.0)
    assert s2.receive_data(encode_data(b"early", 1, 0, 2), 0.1) == []
    assert s2.closed and _goaway(s2)[0] == GoAwayCode.PROTOCOL_ERROR
    s2.authenticated("alice", 0.2)  # too late: nothing opens
    assert not s2.is_open


def test_a_slow_authentication_ends_at_the_hello_deadline() -> None:
    s = _listener()
    s.receive_data(MAGIC + encode_hello(Hello(b"c" * 16, 0, 1 << 20, 1 << 20, 0, "t")), 0.0)
    deadline = s.next_deadline()
    assert deadline == Options().hello_timeout
    s.handle_timer(deadline)
    ended = [e for e in s.take_events() if isinstance(e, Closed)]
    assert ended and ended[0].code == GoAwayCode.HELLO_TIMEOUT
    assert "authentication" in ended[0].reason
