"""PING/PONG bookkeeping shared by the native stream and datagram sessions.

A :class:`Pinger` numbers the PINGs, remembers when the outstanding one went and when the
next is due, and turns a PONG into a round-trip time. The session decides when to ping
(its ``handle_timer``) and queues the frame :meth:`Pinger.ping` returns.
"""

from __future__ import annotations

import struct

from .framing import FrameType, encode_frame

__all__ = ["Pinger"]

_TOKEN = struct.Struct("!Q")


class Pinger:
    """Tokens, the outstanding PING, the next one due, the last round-trip time."""

    __slots__ = ("token", "sent_at", "next_at", "rtt_last", "sent")

    def __init__(self, now: float) -> None:
        self.token = 0  # the number of the last PING sent
        self.sent_at: float | None = None  # when the unanswered PING went
        self.next_at = now  # when the next PING is due
        self.rtt_last: float | None = None
        self.sent = 0

    def ping(self, now: float) -> bytes:
        """A new PING frame to queue now (the session sets ``next_at``)."""
        self.token += 1
        self.sent_at = now
        self.sent += 1
        return encode_frame(FrameType.PING, _TOKEN.pack(self.token))

    def known(self, payload: bytes) -> bool:
        """Does this PONG payload answer some PING we sent (not only the last one)?"""
        if len(payload) != 8:
            return False
        token: int = _TOKEN.unpack(payload)[0]
        return 1 <= token <= self.token

    def pong(self, payload: bytes, now: float) -> float | None:
        """The round-trip time if ``payload`` answers the outstanding PING, else None."""
        if len(payload) != 8 or self.sent_at is None:
            return None
        (token,) = _TOKEN.unpack(payload)
        if token != self.token:
            return None
        rtt = max(0.0, now - self.sent_at)
        self.sent_at = None
        self.rtt_last = rtt
        return rtt
