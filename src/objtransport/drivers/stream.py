"""The asyncio driver for stream sockets (TCP and TLS): one :class:`StreamLink` per socket.

It pumps bytes between an asyncio transport and a sans-I/O session and does nothing else:

* receiving uses ``BufferedProtocol``: the session says where the bytes go (its reusable
  buffer, or the body of a large message directly);
* sending: the first message of a loop turn is written at once (latency), the rest of the
  turn's messages are coalesced into one write at the end of the turn (throughput), and
  what a read's messages answer leaves in one write at the end of the read (when:
  :mod:`.stream_turn`); the scheduler is only asked for more while the transport's buffer
  is below its high-water mark, so priorities still decide what goes next;
* one timer, re-armed to the session's ``next_deadline()``: a far deadline is filed in the
  loop's wheel of link deadlines (one loop timer for every link), a near one gets its own
  ``loop.call_at`` (:mod:`.stream_timer`).

The owner passes callbacks for messages and events and learns about the end through
``closed`` (a future) and ``on_lost``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from time import monotonic
from typing import Any, cast

from ..auth import certificate_subject
from ..sansio.decoder import RECV_BUFFER_SIZE
from ..sansio.events import (
    Acked,
    AuthenticationRequested,
    Closed,
    Event,
    HandshakeComplete,
)
from ..sansio.framing import GoAwayCode
from ..sansio.reassembly import ReassemblyBudget
from ..sansio.reliability import ResumeState
from ..sansio.session import NativeSession, Session, detect_native
from ..sansio.throttle import TokenBucket
from .authgate import AuthGate
from .base import LinkParts, OnMessages
from .link_wheel import wheel_for
from .overload import OverloadGuard
from .pacing import Pacer, ReadThrottle
from .stream_timer import StreamTimer
from .stream_turn import FREE, READING, WRITE_HIGH

__all__ = ["StreamLink", "WRITE_HIGH", "WRITE_LOW"]

log = logging.getLogger("objtransport.stream")

WRITE_LOW = 64 * 1024

OnEvent = Callable[["StreamLink", Event], None]


class StreamLink(StreamTimer, asyncio.BufferedProtocol):
    """One stream socket bound to one session (when it writes: :class:`~.stream_turn.WriteTurns`;
    its ending: :class:`~.stream_end.StreamEnding`; its read pauses:
    :class:`~.stream_pauses.ReadPauses`; its timer: :class:`~.stream_timer.StreamTimer`)."""

    __slots__ = ("session", "budget", "_sched", "_rs", "max_unacked", "last_seq", "on_messages",
                 "on_event", "max_pending", "loop", "transport", "ready", "closed", "lost",
                 "write_paused", "_overload", "peer", "pacer",
                 "receive_bucket", "_read_throttle", "on_made", "identity", "auth", "_fd",
                 # the session's own queue() / queue_many() and its decoder's get_buffer,
                 # bound per link (see _bind); get_buffer is the protocol's own: the event
                 # loop calls the decoder's straight (uvloop binds it when the link is set)
                 "queue", "queue_many", "_get_buffer", "get_buffer", "__weakref__")

    session: Session

    @classmethod
    def from_parts(cls, parts: LinkParts, budget: ReassemblyBudget | None = None,
                   ) -> StreamLink:
        """The link for a new socket, as the connection layer describes it; ``budget`` is
        the listener's memory for incomplete messages, shared by its connections."""
        native = parts.native
        if native is None:
            link: StreamLink = DetectingStreamLink(parts.make_session(None), parts.on_messages,
                                                   parts.on_event, parts.max_pending,
                                                   parts.make_session, budget)
        else:
            link = cls(parts.make_session(native), parts.on_messages, parts.on_event,
                       parts.max_pending, budget)
        link.pacer = parts.pacer
        link.receive_bucket = parts.receive_bucket
        if parts.on_link is not None:
            parts.on_link(link)
        return link

    def __init__(self, session: Session, on_messages: OnMessages, on_event: OnEvent,
                 max_pending_bytes: int, budget: ReassemblyBudget | None = None) -> None:
        self.session = session
        self.budget = budget
        _share_receive_buffer(session, budget)
        self._sched = session.scheduler
        self._rs: ResumeState | None = getattr(session, "rs", None)
        self.max_unacked = session.options.max_unacked_bytes
        self.last_seq = 0
        self.on_messages = on_messages
        self.on_event = on_event
        self.max_pending = max_pending_bytes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()  # handshake done
        self.closed: asyncio.Future[Closed] = self.loop.create_future()  # session ended
        self.lost: asyncio.Future[None] = self.loop.create_future()  # socket closed
        self.write_paused = False  # the transport asked us to stop writing
        self._flush_handle: asyncio.Handle | None = None
        self._turn = FREE
        self._wrote_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_for(self.loop).wheel  # far deadlines (keepalive) go there
        self._drain_waiters: list[tuple[asyncio.Future[None], int]] = []
        #: reasons reading is paused for (a tuple: at most three, and () costs nothing)
        self._read_pauses: tuple[str, ...] = ()
        self._overload = OverloadGuard(self)
        self.peer: Any = None
        self.close_error: BaseException | None = None
        self._closing = False
        self._slow_write = True  # no transport yet (WriteTurns._wake)
        self._flushed_waiters: list[asyncio.Future[None]] = []
        self.pacer = Pacer()
        self.receive_bucket: TokenBucket | None = None
        self._pace_handle: asyncio.TimerHandle | None = None
        self._read_throttle = ReadThrottle(self)
        self.on_made: Callable[[Any], None] | None = None
        #: the subject of the peer's certificate (mutual TLS), or what the listener's
        #: ``authenticate`` returned; else None
        self.identity: str | None = None
        #: the listener's authentications (None: it does not authenticate)
        self.auth: AuthGate | None = None
        self._fd = -1  # the socket's descriptor (bytes waiting unread, see _on_timer)
        self._bind(session)

    def _bind(self, session: Session) -> None:
        """Senders queue straight into the session (one call per message, or per batch);
        it wakes the link when its queue was empty."""
        session.on_wake = self._wake
        session.on_full = self._chunk_full
        session.send_high = self.max_pending
        self.queue = session.queue  # type: ignore[method-assign]
        self.queue_many = session.queue_many  # type: ignore[method-assign]
        self._get_buffer = getter = session.buffer_getter()
        self.get_buffer = getter  # type: ignore[method-assign,assignment]

    def use_auth(self, gate: AuthGate) -> None:
        """(listener) The client's HELLO token must pass ``gate`` before the session opens."""
        self.auth = gate
        if isinstance(self.session, NativeSession):
            self.session.require_authentication()

    def authenticated(self, identity: str | None) -> None:
        """The gate's answer: the session opens (``identity``) or is refused (None)."""
        session = self.session
        if self.closed.done() or self.transport is None or not isinstance(session,
                                                                          NativeSession):
            return
        if identity is not None:
            self.identity = identity
        session.authenticated(identity, monotonic())
        self._process_events()
        self._flush()

    # -- asyncio protocol callbacks ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # any loop's stream transport: uvloop's are no asyncio.Transport subclass
        transport = cast(asyncio.Transport, transport)
        if self.lost.done():  # given up before the socket got here (a TLS handshake deadline)
            transport.abort()
            return
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.session.set_peer(self.peer)
        # mutual TLS: the client certificate's subject is the peer's identity
        self.identity = certificate_subject(transport.get_extra_info("peercert"))
        if self.on_made is not None:
            self.on_made(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - platform dependent
                pass
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self._process_events()
        self._flush()
        self._rearm()

    def buffer_updated(self, nbytes: int) -> None:
        self._turn = READING  # what the messages answer goes out at the end, in one write
        session = self.session
        now = monotonic()
        try:
            msgs = session.buffer_updated(nbytes, now)
            if self.receive_bucket is not None:
                self._read_throttle.charge(self.receive_bucket, nbytes)
            # _delivered inline; what the session answered (_answer) is _read_end's
            if msgs:  # with the byte count: no call back for it (Connection.on_messages)
                self.on_messages(msgs, session.decoder.bytes_received)
            if session.events:
                self._process_events()
            if session.timer_changed:
                session.timer_changed = False
                self._rearm()
        finally:
            self._turn = FREE  # a new turn (_read_end's first step)
            if session.scheduler.pending_bytes or session.has_final:
                if self.write_paused or self._flush_handle is not None:
                    self._read_end()
                else:  # the common case: what the read answered goes out from _wake
                    self._wake(now)  # at once (one chunk: inline, without _flush)

    def eof_received(self) -> bool | None:
        self._lost("peer closed the connection (EOF)")
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._flush()
        self._wake_drain_waiters()
        self._overload.relieved()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message; return True when the caller should wait (``wait_writable``).

        Raises ``ConnectionNotReady`` / ``MessageTooLarge`` (nothing queued then).
        """
        self.last_seq = self.session.send_message(data, stream, priority, text)
        self._wake()
        rs = self._rs
        return self._sched.pending_bytes > self.max_pending or (
            rs is not None and rs.unacked_bytes > self.max_unacked)

    def repace(self) -> None:
        """The limits changed: drop a pending pacing wait and flush under the new ones."""
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
        self._flush()
        self._read_throttle.reset(self.receive_bucket)

    # -- events and time -------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.session.take_events()
        if not events:
            return
        for ev in events:
            if isinstance(ev, Acked):
                self._rs = getattr(self.session, "rs", None)  # the server may have swapped it
                if self._drain_waiters:
                    self._wake_drain_waiters(everyone=True)
            elif isinstance(ev, Closed):
                self._flush()
                self._close_transport()
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self.closed_error())
                    self.ready.exception()  # mark retrieved; the owner reads `closed`
            elif isinstance(ev, AuthenticationRequested):
                if self.auth is not None:
                    self.auth.start(self, ev.token)
            elif isinstance(ev, HandshakeComplete):
                self._rs = getattr(self.session, "rs", None)  # a resumed server session
                if not self.ready.done():
                    self.ready.set_result(None)
            self.on_event(self, ev)
        if self.transport is not None and not self.closed.done():
            self._rearm()  # a state change moves the deadline (HELLO timeout -> keepalive)


class DetectingStreamLink(StreamLink):
    """A listener's link in ``framing="auto"``: the first 4 bytes decide native or raw
    (docs/protocol.md section 3); until then the session is a native placeholder that
    sends nothing."""

    __slots__ = ("_detect", "_head", "_head_len")

    def __init__(self, session: Session, on_messages: OnMessages, on_event: OnEvent,
                 max_pending_bytes: int, detect: Callable[[bool], Session],
                 budget: ReassemblyBudget | None = None) -> None:
        super().__init__(session, on_messages, on_event, max_pending_bytes, budget)
        self._detect: Callable[[bool], Session] | None = detect
        self._head = bytearray(4)
        self._head_len = 0
        self.get_buffer = self._detect_buffer  # type: ignore[method-assign]

    # The framing is decided in these two methods, which go on working after it: an event
    # loop may keep the methods it found when the link was set (uvloop does; the default
    # loop looks get_buffer up per read, and finds the new session's after _bind).
    def _detect_buffer(self, sizehint: int) -> memoryview:
        """``get_buffer`` until the framing is decided (and, kept by uvloop, after it)."""
        if self._detect is not None:
            return memoryview(self._head)[self._head_len:]
        return self._get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self._detect is None:
            StreamLink.buffer_updated(self, nbytes)
            return
        self._head_len += nbytes
        if self._head_len >= 4:
            self._decided(self._detect)

    def _decided(self, detect: Callable[[bool], Session]) -> None:
        """The first 4 bytes are in: swap the placeholder for the session they call for
        and hand it those bytes."""
        self._detect = None
        old = self.session
        native = detect_native(bytes(self._head))
        self.session = detect(native)
        self._bind(self.session)
        _share_receive_buffer(self.session, self.budget)
        self._sched = self.session.scheduler
        self._rs = getattr(self.session, "rs", None)
        self.session.set_peer(self.peer)
        self.session.created = old.created
        if self.auth is not None:
            if not native:  # a raw peer has no HELLO to carry a token
                self.fail("this listener authenticates: a raw {packet, 4} peer cannot "
                          "present a token", GoAwayCode.UNAUTHENTICATED)
                return
            self.use_auth(self.auth)
        msgs = self.session.receive_data(bytes(self._head), monotonic())
        if msgs:
            self.on_messages(msgs, self.session.delivered_bytes)
        self._process_events()
        self._flush()
        self._rearm()


_local = threading.local()


def _share_receive_buffer(session: Session, budget: ReassemblyBudget | None) -> None:
    """Give the session this thread's shared receive buffer (see use_buffer) and the
    listener's reassembly budget, if any."""
    view = getattr(_local, "view", None)
    if view is None:  # one view of one buffer for every session of the thread
        view = _local.view = memoryview(bytearray(RECV_BUFFER_SIZE))
    session.use_buffer(view)
    if budget is not None:
        session.use_budget(budget)
