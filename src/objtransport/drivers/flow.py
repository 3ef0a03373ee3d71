"""What every link (TCP, WebSocket, gRPC, UDP) does the same way: backpressure and flush
waiting, and the step after received bytes went to the session (``_delivered``).

A link class derives from :class:`FlowControl` and sets, in its ``__init__``, the attributes
declared below. It calls ``_wake_drain_waiters()`` after it handed bytes to its socket or
carrier and ``_wake_flushed()`` once nothing is queued any more; it may override
``_queued()`` when it holds bytes outside the session's scheduler (UDP's held datagrams).
For ``_delivered`` it provides ``_answer`` (have queued answers sent), ``_process_events``
and ``_rearm`` (the :class:`_Pump` protocol, checked by mypy where ``_delivered`` is called).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from ..exceptions import ConnectionClosed, SendTimeout
from ..sansio.core import AnySession, Payload
from ..sansio.events import Closed, Received
from ..sansio.reliability import ResumeState
from .base import OnMessages
from .wheel_timer import WheelTimer

__all__ = ["FlowControl"]

_HIGH = 1  # Priority.HIGH: control (0) and high send past a bulk transfer's window


class _Pump(Protocol):
    """What a link provides for :meth:`FlowControl._delivered`: where its messages and
    events go, how it re-arms its timer and how it gets queued answers sent."""

    @property
    def session(self) -> AnySession: ...

    on_messages: OnMessages

    def _answer(self) -> None: ...

    def _process_events(self) -> None: ...

    def _rearm(self) -> None: ...


class _Sends(Protocol):
    def send(self, data: Payload, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool: ...


class FlowControl(WheelTimer):
    """``wait_writable`` / ``wait_flushed`` / ``backlog`` and their waiters (the session
    timer: :class:`~.wheel_timer.WheelTimer`)."""

    __slots__ = ("_drain_waiters", "_flushed_waiters", "_slow_write")

    session: AnySession
    on_messages: OnMessages
    loop: asyncio.AbstractEventLoop
    closed: asyncio.Future[Closed]
    max_pending: int
    max_unacked: int = 0
    _rs: ResumeState | None = None
    _drain_waiters: list[tuple[asyncio.Future[None], int]]
    _flushed_waiters: list[asyncio.Future[None]]
    #: a stream link's write must go the general way (``_flush``): set with each waiter
    #: (see :class:`~.stream_turn.WriteTurns`); other links do not read it
    _slow_write: bool

    @property
    def pending_bytes(self) -> int:
        """Bytes queued (the link adds what its socket or carrier buffers, if known)."""
        return self.session.scheduler.pending_bytes

    def _queued(self) -> int:
        """Bytes not handed to the socket or carrier yet."""
        return self.session.scheduler.pending_bytes

    # -- sending side ----------------------------------------------------------------------
    def queue(self: _Sends, data: Payload, stream: int = 0, priority: int = 2,
              text: bool = False) -> bool:
        """Queue one message without its sequence number; True: wait (``wait_writable``)
        before the next. A link may put its session's ``queue`` here instead."""
        return self.send(data, stream, priority, text)

    def queue_many(self: _Sends, datas: Iterable[Payload], stream: int = 0,
                   priority: int = 2, text: bool = False) -> bool:
        """:meth:`queue` for many messages; the answer is for after the last one."""
        wait = False
        for data in datas:
            wait = self.send(data, stream, priority, text)
        return wait

    def _unacked_over(self, divisor: int, priority: int = 3) -> bool:
        """Must a sender of ``priority`` wait for the unacknowledged window? A normal or
        low one when the window is over ``max_unacked / divisor``; a control or high one
        only when its own class's bytes (those that leave before it) are, so that a few
        urgent bytes never wait for a bulk transfer's acknowledgements."""
        rs = self._rs
        if rs is None or not getattr(self.session, "acks", False):
            return False
        limit = self.max_unacked // divisor
        if priority <= _HIGH:
            return self.backlog(priority) > limit
        return rs.unacked_bytes > limit

    def backlog(self, priority: int = 3) -> int:
        """Bytes queued that would leave before a new message of ``priority``."""
        sched = self.session.scheduler
        pending = sched.pending_bytes
        if priority >= 3 or not pending:
            return pending
        return sum(sched.queued_by_priority()[:priority + 1])

    async def wait_writable(self, timeout: float, priority: int = 3) -> None:
        """Wait while more than ``max_pending`` bytes would leave before a message of
        ``priority`` (a high message does not wait for a low backlog), or while more than
        ``max_unacked`` bytes are unacknowledged (for control and high: while their own
        class's bytes are over it), until half drained.

        Raises ``SendTimeout`` after ``timeout`` s and ``ConnectionClosed`` if the link ends.
        """
        if self.backlog(priority) <= self.max_pending and not self._unacked_over(1, priority):
            return
        try:
            async with asyncio.timeout(timeout):
                while (self.backlog(priority) > self.max_pending // 2
                       or self._unacked_over(2, priority)):
                    if self.closed.done():
                        raise self.closed_error()
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._drain_waiters.append((fut, priority))
                    self._slow_write = True
                    await fut
        except TimeoutError:
            raise SendTimeout(
                f"send to {self.session.peer} blocked for {timeout:g} s: the peer does "
                f"not read fast enough ({self.pending_bytes} bytes pending)") from None

    async def wait_flushed(self, timeout: float) -> None:
        """Wait until nothing is queued any more (all handed to the socket or carrier)."""
        if not self._queued():
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._flushed_waiters.append(fut)
        self._slow_write = True
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise SendTimeout(f"flush to {self.session.peer} did not finish within "
                              f"{timeout:g} s ({self.pending_bytes} bytes pending)") from None
        if self.closed.done() and self._queued():
            raise self.closed_error()

    def _wake_flushed(self) -> None:
        waiters, self._flushed_waiters = self._flushed_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _wake_drain_waiters(self, everyone: bool = False) -> None:
        """Wake the senders that may go on: all at the low-water mark (or on close); those
        waiting with a priority above low at every call (they check their own backlog)."""
        if not self._drain_waiters:
            return
        everyone = everyone or (self.session.scheduler.pending_bytes <= self.max_pending // 2
                                or self.closed.done())
        keep = []
        for fut, prio in self._drain_waiters:
            if everyone or prio < 3:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((fut, prio))
        self._drain_waiters = keep

    def closed_error(self) -> ConnectionClosed:
        """What a wait on this link raises once it has closed: ``ConnectionClosed`` naming
        the peer, the close code and the reason its session ended with."""
        s = self.session
        return ConnectionClosed(str(s.peer), s.close_code or 0, s.close_reason)

    # -- receiving -------------------------------------------------------------------------
    def _delivered(self: _Pump, msgs: list[Received]) -> None:
        """Received bytes went to the session: hand over its messages, handle its events,
        re-arm the timer, have what it answered sent (``_answer``)."""
        session = self.session
        if msgs:
            self.on_messages(msgs, session.delivered_bytes)  # its own link's count
        if session.events:
            self._process_events()
        if session.timer_changed:
            session.timer_changed = False
            self._rearm()
        if session.scheduler.pending_bytes or session.has_final:
            self._answer()
