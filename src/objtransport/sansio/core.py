"""What every session shares, and the surfaces the drivers rely on.

* :class:`SessionCore` is the implementation every session kind derives from: the state and
  its one transition table, the counters, the scheduler, the event list and the ways a
  session ends (``close``, ``fail``, ``peer_closed``, ``carrier_closed``,
  ``connection_lost``). It declares nothing a subclass must fill in.
* The protocols (in :mod:`.session_surface`, re-exported here) say what a driver may
  call, per kind of carrier:

  - :class:`AnySession`: every session (stream, datagram, message), the surface of
    :class:`~objtransport.drivers.base.Link` and of the connection layer;
  - :class:`Session`: a session over a byte stream (``NativeSession``, ``RawSession``):
    also ``get_buffer`` / ``buffer_updated`` / ``receive_data``. The connection layer builds
    these; datagram and message sessions are built from one (their ``like``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..config import Options
from ..exceptions import ConnectionNotReady, MessageTooLarge, ProtocolError
from .events import Closed, Event
from .framing import GoAwayCode
from .scheduler import Chunk, PriorityScheduler
from .session_surface import AnySession, Payload, Session, SessionState

__all__ = ["ERROR_FREE", "AnySession", "Payload", "Session", "SessionCore", "SessionState"]

#: GOAWAY codes that end a connection in order: no error, no breaker failure
ERROR_FREE = (GoAwayCode.NORMAL, GoAwayCode.SHUTDOWN)


_TRANSITIONS = {
    SessionState.HANDSHAKE: (SessionState.OPEN, SessionState.CLOSED),
    SessionState.OPEN: (SessionState.CLOSED,),
    SessionState.CLOSED: (),
}


class _Counted(Protocol):
    other_priority_messages: list[int]

    @property
    def messages_sent(self) -> int: ...


def _nothing() -> None:
    pass


class _Sender(Protocol):
    scheduler: PriorityScheduler
    send_high: int
    on_wake: Callable[[], None]
    on_full: Callable[[], None]

    def send_message(self, data: Payload, stream: int = 0, priority: int = 2,
                     text: bool = False) -> int: ...

    def _unacked_over(self) -> bool: ...

    def _send_all(self, datas: Iterable[Payload], stream: int, priority: int,
                  text: bool) -> None: ...


class SessionCore:
    """State, counters, the scheduler and the event list; how a session ends."""

    __slots__ = ("options", "conn_id", "transport_name", "peer", "state", "open", "scheduler",
                 "events", "created", "last_receive", "last_send", "bytes_queued", "bytes_sent",
                 "_dropped", "other_priority_messages", "messages_received", "close_code",
                 "close_reason", "_peer_max_message", "_send_limit", "_final", "has_final",
                 "timer_changed",
                 "on_wake", "send_high", "on_full")

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float) -> None:
        self.options = options
        self.conn_id = conn_id
        self.transport_name = transport
        self.peer = peer
        self.state = SessionState.HANDSHAKE
        self.open = False  # mirror of `state is OPEN`, read on the hot path
        self.scheduler = PriorityScheduler(options.qos_weights)
        self.events: list[Event] = []
        self.created = now
        self.last_receive = now
        self.last_send = now
        #: payload bytes of the messages the application queued
        self.bytes_queued = 0
        #: payload bytes handed to the socket (or carrier): what is still queued, or was
        #: dropped, is not counted (see data_to_send)
        self.bytes_sent = 0
        self._dropped = 0  # bytes dropped from the queue, never sent
        #: messages sent per priority, except normal (derived: see messages_by_priority)
        self.other_priority_messages = [0, 0, 0, 0]
        self.messages_received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer_max_message = options.max_message_size
        self._final: tuple[Chunk, ...] = ()  # what goes after everything queued (GOAWAY)
        #: True while a GOAWAY waits to be written after the queue (an attribute: drivers
        #: test it after every write)
        self.has_final = False
        #: set when next_deadline() moved earlier outside handle_timer (driver re-arms)
        self.timer_changed = False
        #: called by queue()/queue_many() when a message lands in an empty queue (the
        #: driver writes it at once or schedules a write)
        self.on_wake: Callable[[], None] = _nothing
        #: called by queue() when the queued bytes pass ``scheduler.full_at``: a write
        #: chunk (``WRITE_CHUNK``) more than the last write left (write them now)
        self.on_full: Callable[[], None] = _nothing
        #: queue()/queue_many() answer "wait" above this many queued bytes
        self.send_high = options.max_pending_bytes

    # -- state -----------------------------------------------------------------------------
    def _set_state(self, new: SessionState) -> None:
        """The one place the state changes; an illegal move is a bug and raises."""
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal session transition {self.state.value} -> {new.value}")
        self.state = new
        self.open = new is SessionState.OPEN
        self._send_limit = self._peer_max_message if self.open else -1

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.open

    @property
    def peer_max_message(self) -> int:
        """The largest message the peer accepts (its HELLO says, else our own limit)."""
        return self._peer_max_message

    @peer_max_message.setter
    def peer_max_message(self, value: int) -> None:
        self._peer_max_message = value
        # one comparison on the send path: -1 unless open, so any size takes the slow check
        self._send_limit = value if self.open else -1

    def set_peer(self, peer: Any) -> None:
        """The remote address, once the socket knows it (stamped on every message)."""
        self.peer = peer

    # -- figures ---------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet returned by :meth:`data_to_send`."""
        return self.scheduler.pending_bytes + sum(len(c) for c in self._final)

    def messages_by_priority(self: _Counted) -> list[int]:
        """Messages queued for sending per priority (control, high, normal, low)."""
        out = list(self.other_priority_messages)
        out[2] = self.messages_sent - sum(out)
        return out

    # -- output ----------------------------------------------------------------------------
    def take_events(self) -> list[Event]:
        # a copy for the caller, the session's list emptied in place: a new list here
        # would outlive the call (until the next event: a keepalive interval on an idle
        # link) and count towards the next full collection (slices: no call)
        events = self.events
        out = events[:]
        del events[:]
        return out

    def data_to_send(self, now: float, budget: int = 1 << 62,
                     strict: bool = False) -> list[Chunk]:
        """Chunks to write now, in order; about ``budget`` bytes of them (at most, and at
        least one frame, when ``strict``: throttled links)."""
        out = self.scheduler.pop(budget, strict) if self.scheduler.pending_bytes else []
        if self._final and not self.scheduler.pending_bytes:
            out.extend(self._final)
            self._final = ()
            self.has_final = False
        if out:
            self.last_send = now
            # the queue held headers (and control frames) too: while a backlog waits this
            # lags by their size, and is exact once the queue is empty
            sent = self.bytes_queued - self._dropped - self.scheduler.pending_bytes
            if sent > self.bytes_sent:
                self.bytes_sent = sent
        return out

    def drop_queued(self, keep_control: bool = False) -> None:
        """Discard what is queued (it is never sent, nor counted as sent)."""
        sched = self.scheduler
        before = sched.pending_bytes
        sched.clear(keep_control=keep_control)
        self._dropped += before - sched.pending_bytes

    def queue(self: _Sender, data: Payload, stream: int = 0, priority: int = 2,
              text: bool = False) -> bool:
        """:meth:`send_message` for a sender that needs no sequence number. Returns True
        when the sender should wait before the next one: more than ``send_high`` bytes are
        queued, or (native, with ACKs) more than ``max_unacked_bytes`` are unacknowledged.
        Calls ``on_wake`` when the queue was empty."""
        sched = self.scheduler
        was = sched.pending_bytes
        self.send_message(data, stream, priority, text)
        if not was:
            self.on_wake()
        elif sched.pending_bytes > sched.full_at >= was:
            self.on_full()
        return sched.pending_bytes > self.send_high or self._unacked_over()

    def queue_many(self: _Sender, datas: Iterable[Payload], stream: int = 0,
                   priority: int = 2, text: bool = False) -> bool:
        """:meth:`queue` for many messages at once (same stream, priority and kind): all
        are queued, whatever the limits; the answer is for after the last one. Raises
        like :meth:`send_message` at the first message refused; those before it stay
        queued."""
        sched = self.scheduler
        was = sched.pending_bytes
        try:
            self._send_all(datas, stream, priority, text)
        finally:
            if not was and sched.pending_bytes:
                self.on_wake()
        return sched.pending_bytes > self.send_high or self._unacked_over()

    def _send_all(self: _Sender, datas: Iterable[Payload], stream: int, priority: int,
                  text: bool) -> None:
        send = self.send_message
        for data in datas:
            send(data, stream, priority, text)

    def _unacked_over(self) -> bool:
        return False

    def _check_send(self, size: int) -> None:
        if self.state is not SessionState.OPEN:
            raise ConnectionNotReady(self.conn_id, self.state.value)
        if size > self.peer_max_message:
            raise MessageTooLarge(size, self.peer_max_message)

    # -- how a session ends (the drivers call these) ---------------------------------------
    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: what is queued still goes out, then GOAWAY (native)."""
        self._close(code, reason, by_peer=False, drop_queued=False,
                    error=code not in ERROR_FREE)

    def fail(self, reason: str, code: int = GoAwayCode.PROTOCOL_ERROR) -> None:
        """This side found a fault (the peer broke the protocol, or does not read): drop
        what is queued, queue GOAWAY ``code`` (native), close with an error. The driver
        writes what :meth:`data_to_send` still returns, then closes the socket."""
        self._close(code, reason, by_peer=False, drop_queued=True, error=True)

    def peer_closed(self, code: int, reason: str, *, error: bool | None = None,
                    keep_queued: bool = False) -> None:
        """The peer ended the conversation through its carrier (a WebSocket close, the end
        of a gRPC stream or call): nothing is answered. ``error`` defaults to "``code`` is
        not NORMAL or SHUTDOWN"; ``keep_queued`` lets what is queued still go (a peer that
        only stopped sending)."""
        if error is None:
            error = code not in ERROR_FREE
        self._close(code, reason, by_peer=True, drop_queued=not keep_queued, error=error)

    def carrier_closed(self, code: int, reason: str, *, error: bool) -> None:
        """The carrier was closed from this side by the library under it (e.g. a WebSocket
        close frame it sent): drop what is queued; no GOAWAY, nothing more can go out."""
        if self.state is SessionState.CLOSED:
            return
        self.drop_queued(keep_control=True)
        self._final = ()
        self.has_final = False
        self._ended(code, reason, by_peer=False, error=error)

    def connection_lost(self, reason: str) -> None:
        """The transport went away under us."""
        if self.state is not SessionState.CLOSED:
            self._ended(-1, reason, by_peer=True, error=True)

    def reading_paused(self, now: float) -> None:
        """The driver stopped reading (our backpressure): a frame's progress deadline
        stops until :meth:`reading_resumed` (sessions that have one override both)."""

    def reading_resumed(self, now: float) -> None:
        """The driver reads again."""

    def _fail(self, exc: ProtocolError) -> None:
        self._close(exc.code, str(exc), by_peer=False, drop_queued=True, error=True)

    def _close(self, code: int, reason: str, *, by_peer: bool, drop_queued: bool,
               error: bool) -> None:
        if self.state is SessionState.CLOSED:
            return
        if drop_queued:  # control frames (our HELLO, PONGs) still go, before the GOAWAY
            self.drop_queued(keep_control=True)
        if not by_peer:
            self._queue_goaway(code, reason)
        self._ended(code, reason, by_peer=by_peer, error=error)

    def _ended(self, code: int, reason: str, *, by_peer: bool, error: bool) -> None:
        """Record the end and report it (once): the state, the code, a Closed event."""
        self._set_state(SessionState.CLOSED)
        self.close_code = code
        self.close_reason = reason
        self.events.append(Closed(code, reason, by_peer, error))

    def _queue_goaway(self, code: int, reason: str) -> None:
        """Put the goodbye on the wire after the queue: only the native framings have one
        (they override this); raw framing ends without a word."""
