"""A stream link's timer (:class:`StreamTimer`, a base of :class:`~.stream.StreamLink`): the
session's ``next_deadline()``, re-armed when it moves. A far deadline (:data:`~.link_wheel.NEAR`
s or more: keepalive, pong and HELLO timeouts) is filed in the loop's wheel, which one loop
timer serves for every link (:mod:`.link_wheel`): an idle link re-arms by writing a number,
not by making a ``TimerHandle``. A near one (an ACK's delay) gets a ``loop.call_at`` of its
own, as precise as the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic

from ..sansio.events import Closed
from ..sansio.timer_wheel import TimerWheel
from .link_wheel import NEAR, Timed
from .sockpeek import unread
from .stream_pauses import ReadPauses

__all__ = ["StreamTimer"]


class StreamTimer(ReadPauses):
    """``_rearm``, ``_on_timer`` and ``deadline_came``; one layer of the chain of slotted
    bases of :class:`~.stream.StreamLink` (``StreamEnding`` -> ``WriteTurns`` ->
    ``ReadPauses`` -> this).

    ``_timer_at`` is the deadline armed for (None: none); ``_timer`` the loop timer when it
    is a near one, else the link is filed in ``_wheel`` for it (or for an earlier time, when
    its bucket files it again). A near deadline leaves the wheel's entry as it is: the wheel
    may then call on the link early, which does nothing while its own timer is armed."""

    __slots__ = ("_wheel",)

    loop: asyncio.AbstractEventLoop
    closed: asyncio.Future[Closed]
    _fd: int
    _timer: asyncio.TimerHandle | None
    _timer_at: float | None
    _wheel: TimerWheel[Timed]
    _process_events: Callable[[], None]

    def _rearm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if deadline is None:
            self._cancel_timer()
            return
        self._timer_at = deadline
        timer = self._timer
        if deadline - monotonic() >= NEAR:
            if timer is not None:
                timer.cancel()
                self._timer = None
            self._wheel.file(self, deadline)
        else:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        super()._cancel_timer()
        self._wheel.drop(self)  # a closed link is not kept by the wheel

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0
        self._timer = None
        self._timer_at = None
        self._timer_due(due)

    def deadline_came(self, now: float) -> None:
        """The wheel's bucket for this link came (``now``, monotonic): its deadline, unless
        a nearer one has the link's own timer."""
        if self._timer is not None:
            return
        self._timer_at = None
        self._timer_due(now)

    def _timer_due(self, due: float) -> None:
        if self.transport is None:
            return
        # uvloop runs a timer up to 1 ms early (its clock has ms steps): what it was armed
        # for is due, not re-armed for the rest (which fired early again, 4 times an ACK)
        now = max(monotonic(), due)
        if not self._read_pauses and unread(self._fd):
            # uvloop runs its timers before it polls the sockets: after a stall of our own
            # the peer's bytes may be waiting here. They are not its silence, nor a frame
            # it is slow to send: the session hears of them, the read follows.
            self.session.input_waiting(now)
        self.session.handle_timer(now)
        self._process_events()
        self._flush()
        if not self.closed.done():
            self._rearm()
