"""The surfaces of a session (re-exported by :mod:`.core`, which implements them):
:class:`SessionState`, :data:`Payload`, and the protocols :class:`AnySession` (every
session: the surface of :class:`~objtransport.drivers.base.Link` and of the connection
layer) and :class:`Session` (a session over a byte stream)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..config import Options
from .decoder import DecoderBase
from .events import Event, Received
from .framing import GoAwayCode
from .reassembly import ReassemblyBudget
from .scheduler import Chunk, PriorityScheduler

__all__ = ["AnySession", "Payload", "Session", "SessionState"]

#: what a sender passes: one message's bytes
Payload = bytes | bytearray | memoryview


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"  # our HELLO is queued, the peer's has not arrived
    OPEN = "open"
    CLOSED = "closed"  # GOAWAY sent or received, or a fault: nothing more is accepted


class AnySession(Protocol):
    """What every session offers its driver and the connection layer."""

    options: Options
    conn_id: int
    transport_name: str
    peer: Any
    state: SessionState
    open: bool
    scheduler: PriorityScheduler
    events: list[Event]
    created: float
    bytes_queued: int
    bytes_sent: int
    messages_received: int
    close_code: int | None
    close_reason: str
    timer_changed: bool
    has_final: bool

    @property
    def closed(self) -> bool: ...

    @property
    def is_open(self) -> bool: ...

    @property
    def pending_bytes(self) -> int: ...

    @property
    def bytes_received(self) -> int:
        """Payload bytes received (meta blocks, replies and compressed sizes included)."""
        ...

    @property
    def delivered_bytes(self) -> int:
        """Payload bytes of the messages handed out (``len(msg.data)`` of each): what a
        connection's inbox charges for them, and takes off as they are taken."""
        ...

    @property
    def messages_sent(self) -> int: ...

    def messages_by_priority(self) -> list[int]: ...

    def set_peer(self, peer: Any) -> None: ...

    def receive_data(self, data: bytes | bytearray | memoryview,
                     now: float) -> list[Received]:
        """One unit of input: any cut of the byte stream (stream sessions), or one whole
        carrier message or datagram (message and datagram sessions). Returns the complete
        messages; events go to ``take_events``."""
        ...

    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int: ...

    def data_to_send(self, now: float, budget: int = 1 << 62,
                     strict: bool = False) -> list[Chunk]: ...

    on_wake: Callable[[], None]
    on_full: Callable[[], None]
    send_high: int

    def queue(self, data: Payload, stream: int = 0, priority: int = 2,
              text: bool = False) -> bool: ...

    def queue_many(self, datas: Iterable[Payload], stream: int = 0, priority: int = 2,
                   text: bool = False) -> bool: ...

    def take_events(self) -> list[Event]: ...

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None: ...

    def fail(self, reason: str, code: int = GoAwayCode.PROTOCOL_ERROR) -> None: ...

    def peer_closed(self, code: int, reason: str, *, error: bool | None = None,
                    keep_queued: bool = False) -> None: ...

    def carrier_closed(self, code: int, reason: str, *, error: bool) -> None: ...

    def connection_lost(self, reason: str) -> None: ...

    def reading_paused(self, now: float) -> None: ...

    def reading_resumed(self, now: float) -> None: ...


class Session(AnySession, Protocol):
    """A session over a byte stream (TCP, TLS, and the native framing over a WebSocket or
    gRPC): bytes in, in any cut."""

    @property
    def decoder(self) -> DecoderBase:
        """The session's decoder, for life (its ``bytes_received`` is the session's
        ``delivered_bytes``)."""
        ...

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where to receive the next bytes (then call :meth:`buffer_updated`)."""
        ...

    def buffer_getter(self) -> Callable[[int], memoryview]:
        """A callable that does what :meth:`get_buffer` does, in one call fewer."""
        ...

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        """``nbytes`` arrived in the buffer from :meth:`get_buffer`; return the messages."""
        ...

    def use_buffer(self, buf: bytearray | memoryview) -> None:
        """Receive small frames through ``buf``, which other sessions of the same thread
        may share (what arrives is copied out within :meth:`buffer_updated`)."""
        ...

    def use_budget(self, budget: ReassemblyBudget) -> None:
        """Charge the memory of incomplete messages to ``budget``, shared by a listener's
        connections (passing it fails the session, OVERLOADED)."""
        ...

    def drop_incomplete(self) -> None:
        """The connection is gone: give back the memory of incomplete messages."""
        ...

    def input_waiting(self, now: float) -> None:
        """The peer's bytes wait unread in the socket as a deadline comes (our loop is
        behind): the peer counts as heard, the frame in progress waits for the read."""
        ...
