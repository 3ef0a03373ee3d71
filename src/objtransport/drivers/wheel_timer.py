"""A link's session timer (:class:`WheelTimer`, a base of every link kind whose deadlines
are its session's ``next_deadline()``): re-armed when the deadline moves. A far deadline
(:data:`~.link_wheel.NEAR` s or more: keepalive, pong and HELLO timeouts, a UDP probe's
backed-off retry) is filed in the loop's wheel, which one loop timer serves for every link
(:mod:`.link_wheel`): an idle link re-arms by writing a number, not by making a
``TimerHandle``. A near one (an ACK's delay, a retransmission) gets a ``loop.call_at`` of its
own, as precise as the loop (docs/design.md, "Keepalive without garbage").

The link kind says what its deadline does (:meth:`WheelTimer._timer_due`) and sets, in its
``__init__``, ``_timer = None``, ``_timer_at = None`` and ``_wheel = wheel_for(loop).wheel``
(the wheel of its loop, :func:`~.link_wheel.wheel_for`).
"""

from __future__ import annotations

import asyncio
from time import monotonic

from ..sansio.core import AnySession
from ..sansio.timer_wheel import TimerWheel
from .link_wheel import NEAR, Timed

__all__ = ["WheelTimer"]


class WheelTimer:
    """``_rearm``, ``_cancel_timer``, ``_on_timer`` and ``deadline_came``; the root of every
    link's slotted bases (:class:`~.flow.FlowControl` derives from it).

    ``_timer_at`` is the deadline armed for (None: none); ``_timer`` the loop timer when it
    is a near one, else the link is filed in ``_wheel`` for it (or for an earlier time, when
    its bucket files it again). A near deadline leaves the wheel's entry as it is: the wheel
    may then call on the link early, which does nothing while its own timer is armed."""

    __slots__ = ("_timer", "_timer_at", "_wheel")

    loop: asyncio.AbstractEventLoop
    session: AnySession
    _timer: asyncio.TimerHandle | None
    _timer_at: float | None
    _wheel: TimerWheel[Timed]

    @property
    def timer_armed(self) -> bool:
        """Has the link a loop timer of its own for its session's next deadline? (A link
        whose deadlines a loop's wheel keeps has none.)"""
        return self._timer is not None

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
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
        self._wheel.drop(self)  # a closed link is not kept by the wheel

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0  # due even if the loop ran it early (uvloop: 1 ms steps)
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
        """The deadline armed for came (``due``: that deadline, or the wheel's time): the
        session hears of it, the link re-arms."""
        raise NotImplementedError
