"""What the core hands to the application: messages, and control events for the driver."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PRIORITY_NAMES",
    "Acked",
    "AuthenticationRequested",
    "SessionLost",
    "Received",
    "as_message",
    "payload_bytes",
    "Closed",
    "Event",
    "HandshakeComplete",
    "Message",
    "PongReceived",
    "RepliesReceived",
]

#: index = wire priority value
PRIORITY_NAMES = ("control", "high", "normal", "low")


class Message:
    """One application message as received.

    ``data`` is the payload; ``conn_id`` the connection it came on (reply with
    ``send_data(msg.conn_id, ...)``); ``transport`` its name ("tcp", "udp", ...); ``peer`` the
    remote address; ``stream`` and ``priority`` as the sender gave them; ``text`` is true for a
    message that was a text message on a WebSocket.

    Native framing only (None / 0 otherwise): ``headers`` as the sender gave them (keys in
    lower case, values as bytes); ``request_id`` is not 0 when the sender waits for an
    answer (``expects_reply``: answer with ``await msg.reply(data)``, or return the bytes
    from the handler); ``deadline`` / ``expires`` are Unix times (0: none). ``flags`` are
    the DATA frame's wire flags.

    Cheap to build (one is built per message handed to a handler): the five fields every
    message has (``identity`` among them) are slots; the others are class-level defaults,
    and only a message that differs from them (another stream or priority, headers, a
    request) gets an instance ``__dict__`` for its own values. Equal messages compare equal
    field by field (not ``responder``, ``replied`` and ``identity``), as the dataclass it
    replaced did.
    """

    __slots__ = ("data", "conn_id", "transport", "peer", "identity", "__dict__")

    data: bytes
    conn_id: int
    transport: str
    peer: Any
    stream: int = 0
    priority: str = "normal"
    text: bool = False
    flags: int = 0
    headers: Mapping[str, bytes] | None = None
    request_id: int = 0
    deadline: float = 0.0
    expires: float = 0.0
    #: sends the answer of a request (set by the session for requests)
    responder: Any = None
    #: an answer was sent (a request is answered once)
    replied: bool = False
    #: who sent it: the connection's identity (``listen(..., authenticate=...)`` or the
    #: client certificate's subject), filled in when the message is handed over
    identity: str | None

    def __init__(self, data: bytes, conn_id: int, transport: str, peer: Any, stream: int = 0,
                 priority: str = "normal", text: bool = False, flags: int = 0,
                 headers: Mapping[str, bytes] | None = None, request_id: int = 0,
                 deadline: float = 0.0, expires: float = 0.0, responder: Any = None,
                 replied: bool = False, identity: str | None = None) -> None:
        self.data = data
        self.conn_id = conn_id
        self.transport = transport
        self.peer = peer
        self.identity = identity
        if stream or flags or text or priority != "normal":
            self.stream, self.priority, self.text, self.flags = stream, priority, text, flags
        if headers is not None or request_id or deadline or expires:
            self.headers, self.request_id = headers, request_id
            self.deadline, self.expires = deadline, expires
        if responder is not None or replied:
            self.responder, self.replied = responder, replied

    def _key(self) -> tuple[Any, ...]:
        return (self.data, self.conn_id, self.transport, self.peer, self.stream,
                self.priority, self.text, self.flags, self.headers, self.request_id,
                self.deadline, self.expires)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Message)
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass (eq, no hash)

    def __repr__(self) -> str:
        names = ("data", "conn_id", "transport", "peer", "stream", "priority", "text",
                 "flags", "headers", "request_id", "deadline", "expires", "identity")
        values = (*self._key(), self.identity)
        return "Message(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, values,
                                                                   strict=True)) + ")"

    @property
    def expects_reply(self) -> bool:
        """The sender waits for an answer (``net.request``)."""
        return self.request_id != 0

    def reply(self, data: bytes | bytearray | memoryview, *,
              headers: Mapping[str, str | bytes] | None = None) -> Awaitable[None]:
        """Answer this request (once): ``await msg.reply(b"...")``. Raises ``ValueError``
        for a message that expects no reply, ``RuntimeError`` for a second answer."""
        if self.responder is None:
            raise ValueError("this message expects no reply (it was not sent by request())")
        result: Awaitable[None] = self.responder.reply(self, data, headers)
        return result

    def reply_nowait(self, data: bytes | bytearray | memoryview, *,
                     headers: Mapping[str, str | bytes] | None = None) -> None:
        """Queue the answer to this request without waiting for backpressure (from a plain
        function: a batch handler's way to answer). Raises as :meth:`reply` does."""
        if self.responder is None:
            raise ValueError("this message expects no reply (it was not sent by request())")
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"a reply must be bytes, not {type(data).__name__}")
        self.responder.send(self, data, 0, headers)  # 0: ReplyStatus.OK

    @property
    def content_type(self) -> str | None:
        """The ``content-type`` header, if any."""
        h = self.headers
        value = h.get("content-type") if h else None
        return value.decode("utf-8", "replace") if value is not None else None

    def json(self) -> Any:
        """The payload decoded as JSON (UTF-8)."""
        return json.loads(self.data)

    def msgpack(self) -> Any:
        """The payload decoded as MessagePack (needs ``objtransport[msgpack]``)."""
        import msgpack

        return msgpack.unpackb(self.data, raw=False)


#: What decoders hand out: a plain ``bytes`` payload for the common message (stream 0,
#: priority normal, binary), a full :class:`Message` otherwise. Plain payloads are not tracked
#: by the garbage collector, so thousands of them per read cost no GC passes; the
#: :class:`Message` is built when the message is handed to the application.
Received = bytes | Message


#: ``new_message(Message)`` and then setting ``data``, ``conn_id``, ``transport``, ``peer`` and
#: ``identity`` builds a complete plain message without a call to ``__init__`` (the
#: per-message path of a handler: about half the cost of the call)
new_message: Callable[[type[Message]], Message] = object.__new__


def as_message(item: Received, conn_id: int, transport: str, peer: Any) -> Message:
    """The application's view of one received item."""
    if type(item) is bytes:
        return Message(item, conn_id, transport, peer)
    assert isinstance(item, Message)
    return item


def payload_bytes(items: list[Received]) -> int:
    """The payload bytes of received items: what the inbox charges for them, and takes off
    as each is taken (``len(msg.data)``)."""
    n = 0
    for m in items:
        n += len(m) if isinstance(m, bytes) else len(m.data)
    return n


@dataclass(frozen=True, slots=True)
class AuthenticationRequested:
    """(listener) The client's HELLO arrived on a listener that authenticates: nothing more
    is accepted until the driver answers with ``session.authenticated(identity, now)``."""

    token: str | None


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


@dataclass(frozen=True, slots=True)
class RepliesReceived:
    """Answers to our requests arrived: ``(request_id, status, payload, headers)`` each."""

    replies: list[tuple[int, int, bytes, dict[str, bytes] | None]]


Event = (HandshakeComplete | PongReceived | Closed | Acked | SessionLost | RepliesReceived
         | AuthenticationRequested)
