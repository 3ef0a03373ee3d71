"""Typed traffic totals: what a link carried, what a connection's ended links carried, and what
the service's forgotten connections carried.

Live figures are read from the sessions when asked (nothing is added on the per-message
path); a link's figures are folded into its connection's :class:`LinkTotals` when the link
ends, and a connection's into the service's :class:`ServiceTotals` when it is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import add

from .sansio.core import AnySession as Session

__all__ = ["LinkTotals", "ServiceTotals", "Traffic", "add_counts"]

_PRIORITIES = 4  # control, high, normal, low


@dataclass(slots=True)
class Traffic:
    """Payload bytes and messages, each way."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    #: payload bytes queued by the application (bytes_sent: handed to the socket)
    bytes_queued: int = 0

    @classmethod
    def of(cls, session: Session) -> Traffic:
        """What one session carried so far."""
        return cls(session.bytes_sent, session.bytes_received, session.messages_sent,
                   session.messages_received, session.bytes_queued)

    def add(self, other: Traffic) -> None:
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.messages_sent += other.messages_sent
        self.messages_received += other.messages_received
        self.bytes_queued += other.bytes_queued

    def copy(self) -> Traffic:
        return Traffic(self.bytes_sent, self.bytes_received, self.messages_sent,
                       self.messages_received, self.bytes_queued)


#: per-priority figures are tuples of ints: the garbage collector stops tracking them
_ZEROS = (0,) * _PRIORITIES


@dataclass(slots=True)
class LinkTotals:
    """What the ended links of one connection carried (survives reconnections)."""

    traffic: Traffic = field(default_factory=Traffic)
    #: bytes and messages sent per priority (index = priority value)
    priority_bytes: tuple[int, ...] = _ZEROS
    priority_messages: tuple[int, ...] = _ZEROS
    #: UDP loss counters (empty for stream transports)
    datagram: dict[str, int] = field(default_factory=dict)

    def fold(self, session: Session) -> None:
        """Add a session that ended (call once per link)."""
        self.priority_bytes = tuple(map(add, self.priority_bytes, session.scheduler.sent_bytes))
        self.priority_messages = tuple(map(add, self.priority_messages,
                                           session.messages_by_priority()))
        self.traffic.add(Traffic.of(session))
        counters = getattr(session, "loss_counters", None)
        if counters is not None:
            add_counts(self.datagram, counters())

    def with_live(self, session: Session | None) -> Traffic:
        """The totals including the live session, if any."""
        out = self.traffic.copy()
        if session is not None:
            out.add(Traffic.of(session))
        return out

    def datagram_with_live(self, session: Session | None) -> dict[str, int]:
        out = dict(self.datagram)
        counters = getattr(session, "loss_counters", None) if session is not None else None
        if counters is not None:
            add_counts(out, counters())
        return out


@dataclass(slots=True)
class ServiceTotals:
    """Service-wide counts: what forgotten connections carried, and events counted once."""

    traffic: Traffic = field(default_factory=Traffic)
    datagram: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    #: connections that reached CONNECTED at least once
    connections: int = 0
    errors: int = 0
    handler_errors: int = 0

    def fold(self, traffic: Traffic, reconnects: int, datagram: dict[str, int]) -> None:
        """Add a connection that is being forgotten."""
        self.traffic.add(traffic)
        self.reconnects += reconnects
        add_counts(self.datagram, datagram)


def add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    """Add named counts into ``into``."""
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n
