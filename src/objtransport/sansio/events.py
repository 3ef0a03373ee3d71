"""What the core hands to the application: messages, and control events for the driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PRIORITY_NAMES",
    "Acked",
    "SessionLost",
    "Received",
    "as_message",
    "Closed",
    "Event",
    "HandshakeComplete",
    "Message",
    "PongReceived",
]

#: index = wire priority value
PRIORITY_NAMES = ("control", "high", "normal", "low")


@dataclass(slots=True, eq=True)
class Message:
    """One application message as received.

    ``data`` is the payload; ``conn_id`` the connection it came on (reply with
    ``send_data(msg.conn_id, ...)``); ``transport`` its name ("tcp", "udp", ...); ``peer`` the
    remote address; ``stream`` and ``priority`` as the sender gave them; ``text`` is true for a
    message that was a text message on a WebSocket.
    """

    data: bytes
    conn_id: int
    transport: str
    peer: Any
    stream: int = 0
    priority: str = "normal"
    text: bool = False


#: What decoders hand out: a plain ``bytes`` payload for the common message (stream 0,
#: priority normal, binary), a full :class:`Message` otherwise. Plain payloads are not tracked
#: by the garbage collector, so thousands of them per read cost no GC passes; the
#: :class:`Message` is built when the message is handed to the application.
Received = bytes | Message


def as_message(item: Received, conn_id: int, transport: str, peer: Any) -> Message:
    """The application's view of one received item."""
    if type(item) is bytes:
        return Message(item, conn_id, transport, peer)
    assert isinstance(item, Message)
    return item


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The peer's HELLO arrived: the session is open. ``resumed``: a session of an earlier
    link goes on (``resent`` messages were sent again)."""

    session_id: bytes
    max_frame_size: int
    max_message_size: int
    resumed: bool = False
    resent: int = 0


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A PONG answered one of our PINGs after ``rtt`` seconds."""

    rtt: float


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended. ``code`` is the GOAWAY code; ``by_peer`` tells who ended it.

    ``error`` is true when it ended because of a fault (protocol error, timeout) rather
    than an orderly GOAWAY NORMAL / SHUTDOWN.
    """

    code: int
    reason: str
    by_peer: bool
    error: bool


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer acknowledged everything up to ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The peer does not know our session any more (it restarted, or the resume came too
    late): the messages in ``unconfirmed`` (seq, payload, stream, priority, text) may or may
    not have been delivered. Numbering starts again."""

    unconfirmed: list[tuple[int, bytes, int, int, bool]]


Event = HandshakeComplete | PongReceived | Closed | Acked | SessionLost
