"""What the links over message-oriented carriers (WebSocket, gRPC) share.

A carrier that keeps message boundaries itself drives a session the same way whatever the
library under it: a reader hands each carrier message to the session, a writer task sends what
the session queued (coalesced per loop turn in native mode), and the session's deadline is
filed in the loop's wheel when far (keepalive, pong and HELLO timeouts: no timer object per
round) or gets a ``loop.call_at`` of its own when near (:class:`~.wheel_timer.WheelTimer`).
:class:`MessageLink` holds everything of that which does not touch the library: events, the
timer, backpressure (``wait_writable`` / ``wait_flushed`` / ``backlog``), pacing of both
directions, pausing reads and the orderly close. A driver's link subclasses it and adds its
reader, its writer and ``abort``.

The subclass must set ``peer`` (via :meth:`_init_link`) and provide ``pending_bytes`` and
``abort()``; its writer task waits on ``_wake`` and, after each batch, calls
:meth:`_after_write`. Senders queue straight into the session (``queue`` is the session's
``queue``, one call per message); the session calls :meth:`_on_wake` when its queue was
empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic
from typing import Any

from ..sansio.core import AnySession
from ..sansio.events import Acked, Closed, Event, HandshakeComplete
from ..sansio.framing import GoAwayCode
from ..sansio.message import MessageSession
from ..sansio.reliability import ResumeState
from ..sansio.session import NativeSession
from .base import LinkParts, OnMessages
from .flow import FlowControl
from .link_wheel import wheel_for

__all__ = ["MessageLink"]


class MessageLink(FlowControl):
    """The library-independent half of a link over a message carrier."""

    #: the largest carrier message the writer produces (a sender splits above it)
    carrier_max = 1024 * 1024

    def _init_link(self, session: AnySession, parts: LinkParts, peer: Any) -> None:
        self.session = session
        #: who the listener's ``authenticate`` said the peer is (None: not authenticated)
        self.identity: str | None = None
        self.native = isinstance(session, NativeSession)
        self._sched = session.scheduler
        self._rs: ResumeState | None = getattr(session, "rs", None)
        self.max_unacked = session.options.max_unacked_bytes
        self.last_seq = 0
        self.on_messages: OnMessages = parts.on_messages
        self.on_event: Callable[[Any, Event], None] = parts.on_event
        self.max_pending = parts.max_pending
        self.pacer = parts.pacer
        self.receive_bucket = parts.receive_bucket
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[Closed] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.on_made: Callable[[Any], None] | None = None
        self.peer: Any = peer
        session.set_peer(peer)
        self._wake = asyncio.Event()
        self._repaced = asyncio.Event()  # set by repace(): a pacing wait ends early
        self._resume = asyncio.Event()
        self._resume.set()
        self._read_pauses: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_for(self.loop).wheel  # far deadlines (keepalive) go there
        self._drain_waiters: list[tuple[asyncio.Future[None], int]] = []
        self._flushed_waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._aborted = False
        self._msession = session if isinstance(session, MessageSession) else None
        # senders queue straight into the session (one call per message, as on TCP); it
        # calls _on_wake when a message lands in its empty queue
        session.on_wake = self._on_wake
        session.send_high = self.max_pending
        self.queue = session.queue  # type: ignore[method-assign,misc]
        self.queue_many = session.queue_many  # type: ignore[method-assign,misc]

    # -- the writer ------------------------------------------------------------------------
    def _kick(self) -> None:
        """Wake the writer task (it sends what is queued, or closes)."""
        if not self._wake.is_set():
            self._wake.set()

    def _on_wake(self) -> None:
        """A message landed in the session's empty queue: have it sent (the writer task,
        by default)."""
        self._kick()

    def _after_write(self) -> None:
        """After a batch: wake the senders waiting for room or for the queue to empty."""
        if self._drain_waiters:
            self._wake_drain_waiters()
        if self._flushed_waiters and not self.session.scheduler.pending_bytes:
            self._wake_flushed()

    async def _budget(self) -> tuple[int, bool]:
        """How much to take from the scheduler now (waiting for bandwidth tokens)."""
        pacer = self.pacer
        while True:
            if not pacer.buckets:  # also after a wait: set_bandwidth(..., 0) lifts the limit
                return self.carrier_max, False
            now = monotonic()
            allowed = pacer.allowance(now)
            if allowed > 0:
                return min(self.carrier_max, int(allowed)), True
            self._repaced.clear()
            try:
                async with asyncio.timeout(pacer.delay(now)):
                    await self._repaced.wait()
            except TimeoutError:
                pass

    def repace(self) -> None:
        """The limits changed: end a pacing wait and let the writer look again."""
        self._repaced.set()
        self._kick()

    async def _pace_receive(self, nbytes: int, now: float) -> None:
        bucket = self.receive_bucket
        assert bucket is not None
        bucket.consume(nbytes, now)
        if bucket.tokens(now) < 0:
            await asyncio.sleep(bucket.time_until(0, now))

    # -- receiving -------------------------------------------------------------------------
    def _answer(self) -> None:
        """Queued bytes are waiting: have them sent (the writer task, by default)."""
        self._kick()

    # -- events and time -------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.session.take_events()
        for ev in events:
            if isinstance(ev, Acked):
                self._rs = getattr(self.session, "rs", None)
                if self._drain_waiters:
                    self._wake_drain_waiters(everyone=True)
            elif isinstance(ev, Closed):
                self._kick()  # the writer flushes, then ends the carrier
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self.closed_error())
                    self.ready.exception()  # retrieved: the owner reads `closed`
            elif isinstance(ev, HandshakeComplete):
                self._rs = getattr(self.session, "rs", None)
                if not self.ready.done():
                    self.ready.set_result(None)
            self.on_event(self, ev)
        if events and not self.closed.done():
            self._rearm()

    def _rearm(self) -> None:
        if not self.lost.done():  # a lost link is off the wheel and stays off it
            super()._rearm()

    def _timer_due(self, due: float) -> None:
        """The session's deadline came (its own ``call_at``, or the loop's wheel for a far
        one: keepalive, the pong and HELLO timeouts)."""
        if self.lost.done():
            return
        session = self.session
        session.handle_timer(max(monotonic(), due))
        self._process_events()
        if session.closed or getattr(session, "ping_due", False):
            self._kick()  # the writer task closes the carrier, or sends a carrier's ping
        elif session.scheduler.pending_bytes or session.has_final:
            # a native PING: sent as a read's answers are (WebSocket: written at once when
            # the writer is idle), not by waking the writer task, whose next wait made a
            # coroutine, a future and its iterator that lived a keepalive round
            self._answer()
        if not self.closed.done():
            self._rearm()

    def _finish_common(self) -> None:
        """The carrier is gone: close the session if still open, stop the timer, wake
        every waiter and resolve ``lost``. The subclass then releases its carrier."""
        session = self.session
        if not session.closed:
            session.connection_lost("connection closed")
            self._process_events()
        self._cancel_timer()
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_flushed()
        self._wake_drain_waiters(everyone=True)

    # -- closing and flow control ----------------------------------------------------------
    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: queued messages go out, then GOAWAY (native), then the carrier's
        own close."""
        self.session.close(code, reason)
        self._process_events()
        self._kick()

    def pause_reading(self, reason: str = "consumer") -> None:
        if not self._read_pauses:
            self.session.reading_paused(monotonic())
        self._read_pauses.add(reason)
        self._resume.clear()

    def resume_reading(self, reason: str = "consumer") -> None:
        self._read_pauses.discard(reason)
        if not self._read_pauses:
            self._resume.set()
            self.session.reading_resumed(monotonic())
