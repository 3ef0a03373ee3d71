"""A UDP listener's stateless return-path check (docs/protocol.md, section 6.1).

A datagram's source address costs nothing to forge, so a native UDP listener creates no state
for an unknown address until the address has shown that it receives what is sent to it, as
QUIC's Retry and DTLS's HelloVerifyRequest do:

1. a PING from an unknown address (28 bytes) is answered with a PONG that echoes its token
   and carries an 8-byte cookie (36 bytes): a MAC of the address and a time bucket under a
   per-listener secret. Nothing is kept;
2. the client sends its PING again with the cookie after the token (36 bytes);
3. a PING whose cookie is valid for its source address (this bucket or the one before)
   admits the address. A PING with a stale or wrong cookie gets a fresh cookie; a DATA frame
   (a peer the listener forgot while it was idle) gets a cookie PONG with token zero, so the
   peer comes back at once; anything else is dropped.

The answer is 36 bytes for a 28-byte PING (21 or more for DATA): an attacker who forges a
victim's address gains a factor of 1.7 at most, and no state.

A client with a token (``connect(..., token=...)``) puts it after the cookie of the PINGs it
sends with one: ``token_length`` (u16, 1 to 4096) then the UTF-8 token
(:func:`encode_credential`, :func:`credential_of_ping`); a listener with ``authenticate``
reads it once the cookie proved the address (docs/protocol.md section 9).
"""

from __future__ import annotations

import hmac
import struct
from enum import Enum
from typing import Any

from ..exceptions import ProtocolError
from .framing import (
    FLAG_PACK,
    FRAME_HEADER,
    MAX_TOKEN,
    TOKEN_LENGTH,
    FrameType,
    GoAwayCode,
    encode_frame,
)
from .throttle import TokenBucket

__all__ = ["COOKIE_SIZE", "EVICT_MIN", "EVICT_PERIOD", "MAX_PING", "Admission",
           "EvictionBudget", "ReturnCheck", "cookie_of_pong", "credential_of_ping",
           "encode_credential"]

#: bytes of cookie after the 8-byte token of a PING or PONG
COOKIE_SIZE = 8
#: a cookie is valid in the bucket it was made in and the next one (10 to 20 s)
BUCKET = 10.0

_PING = int(FrameType.PING)
_DATA = int(FrameType.DATA)
_PING_SIZE = 28
_COOKIE_FRAME = _PING_SIZE + COOKIE_SIZE
#: the longest PING: cookie, then a credential with the longest token
MAX_PING = _COOKIE_FRAME + 2 + MAX_TOKEN
_unpack = FRAME_HEADER.unpack_from
_BUCKET = struct.Struct("!Q")

#: a full listener forgets proven peers for new ones at most fast enough to turn its whole
#: table over once in this many seconds ...
EVICT_PERIOD = 60.0
#: ... and at least this many per second (bursts of as many)
EVICT_MIN = 4.0


class Admission(Enum):
    """What a listener does with a datagram from an unknown address."""

    ADMIT = "admit"  # a PING with a valid cookie: the address answered
    ANSWER = "answer"  # a PING without (or with a stale) cookie: send the cookie PONG
    DROP = "drop"  # anything else: counted and dropped


class ReturnCheck:
    """Cookies for one listener; ``secret`` is random bytes chosen by the driver."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def cookie(self, addr: Any, now: float, back: int = 0) -> bytes:
        bucket = int(now // BUCKET) - back
        msg = _BUCKET.pack(bucket & 0xFFFF_FFFF_FFFF_FFFF) + repr(addr).encode()
        return hmac.digest(self._secret, msg, "sha256")[:COOKIE_SIZE]

    def valid(self, addr: Any, cookie: bytes | bytearray | memoryview, now: float) -> bool:
        c = bytes(cookie)
        return any(hmac.compare_digest(c, self.cookie(addr, now, back)) for back in (0, 1))

    def screen(self, data: bytes | bytearray | memoryview, addr: Any,
               now: float) -> Admission:
        """Classify a native-looking datagram from an address without a link."""
        n = len(data)
        if n < 20:
            return Admission.DROP
        length, ver, typ, flags, _prio, _stream, seq = _unpack(data, 0)
        if not 16 <= length <= n - 4 or ver != 1:
            return Admission.DROP
        if typ == _DATA and seq:
            return Admission.ANSWER  # a peer this listener forgot (idle) sends on (packed too)
        if (typ != _PING or flags & ~FLAG_PACK or length != n - 4  # a PING comes alone
                or not (n == _PING_SIZE or _COOKIE_FRAME <= n <= MAX_PING)):
            return Admission.DROP
        if n >= _COOKIE_FRAME and self.valid(addr, data[_PING_SIZE:_COOKIE_FRAME], now):
            return Admission.ADMIT
        return Admission.ANSWER

    def answer(self, ping: bytes | bytearray | memoryview, addr: Any, now: float) -> bytes:
        """The PONG for a datagram screened ``ANSWER``: a PING's token (zero for DATA),
        then a fresh cookie."""
        token = bytes(ping[20:_PING_SIZE]) if ping[5] == _PING else bytes(8)
        return encode_frame(FrameType.PONG, token + self.cookie(addr, now))


def cookie_of_pong(payload: bytes | bytearray | memoryview) -> bytes | None:
    """The cookie of a PONG payload (token then cookie), or None for a plain PONG."""
    if len(payload) == 8 + COOKIE_SIZE:
        return bytes(payload[8:])
    return None


def encode_credential(token: str | None) -> bytes:
    """What a client's PINGs carry after the cookie: ``token_length`` (u16) and the token;
    empty without a token."""
    if token is None:
        return b""
    raw = token.encode("utf-8")
    if not raw or len(raw) > MAX_TOKEN:
        raise ValueError(f"a token is 1 to {MAX_TOKEN} bytes of UTF-8, not {len(raw)}")
    return TOKEN_LENGTH.pack(len(raw)) + raw


def credential_of_ping(ping: bytes | bytearray | memoryview) -> str | None:
    """The token after the cookie of a PING screened ``ADMIT`` (None: it has none). Raises
    ``ProtocolError`` for a length that is not the rest of the datagram, or not UTF-8."""
    rest = len(ping) - _COOKIE_FRAME
    if rest <= 0:
        return None
    (size,) = TOKEN_LENGTH.unpack_from(ping, _COOKIE_FRAME) if rest >= 2 else (-1,)
    if size != rest - 2 or not 0 < size <= MAX_TOKEN:
        raise ProtocolError("malformed token after the cookie", GoAwayCode.PROTOCOL_ERROR)
    try:
        return bytes(ping[_COOKIE_FRAME + 2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("token is not UTF-8", GoAwayCode.PROTOCOL_ERROR) from None


class EvictionBudget:
    """How fast a full UDP listener may forget a proven peer (native, so it passed the
    cookie; or raw and answered by the application) to admit a new one: a token bucket of
    ``max(EVICT_MIN, max_connections / EVICT_PERIOD)`` per second, as large a burst. Past
    it a new peer is refused (the peers in place stay): addresses that pass the cookie check
    cannot churn a listener's peers out faster than that. Forgetting a peer nobody answered
    (a raw one-shot source, maybe forged) is free."""

    __slots__ = ("bucket", "refused")

    def __init__(self, max_connections: int, now: float) -> None:
        rate = max(EVICT_MIN, max_connections / EVICT_PERIOD)
        self.bucket = TokenBucket(rate, rate, now)
        #: new peers refused because the budget was spent
        self.refused = 0

    def allow(self, proven: bool, now: float) -> bool:
        """May a peer (``proven`` or not) be forgotten now for a new one?"""
        if not proven or self.bucket.try_acquire(1, now):
            return True
        self.refused += 1
        return False
