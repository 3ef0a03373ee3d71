"""One loop timer for the far deadlines of every link on an event loop
(:class:`LoopWheel`, around a :class:`~..sansio.timer_wheel.TimerWheel`).

A link (stream, UDP, WebSocket, gRPC, QUIC: :class:`~.wheel_timer.WheelTimer`; and QUIC's
:class:`~.quic_conn.QuicPump` for aioquic's timer) whose next deadline is at least
:data:`NEAR` s away (keepalive PING, pong and HELLO timeouts, a frame's
deadline) files it in its loop's wheel: re-arming is then writing a number, not making a
``TimerHandle`` (docs/design.md, "Keepalive without garbage"). Nearer
deadlines (an ACK's 5 ms delay, a window's 20 ms wait, any deadline in a test with a short
keepalive) keep the link's own ``loop.call_at``: they need more than the wheel's 1/64 s.

The wheel belongs to its loop (:func:`wheel_for`, a weak mapping to a weak reference: the
links that hold the wheel and its armed timer keep it, neither the registry nor the wheel
keeps the loop, so a loop that ends with links still filed is freed with them); a link takes
its loop's wheel when it is made and drops its entry when it stops (``_cancel_timer``), so a
closed link is not kept by it. Nothing in the library closes a wheel (it ends with its last
link); :meth:`LoopWheel.close` refuses while links are filed rather than strand them. A
``BaseException`` out of one item's ``deadline_came`` (KeyboardInterrupt, SystemExit,
CancelledError) goes on up once the items after it in its bucket are filed again.
"""

from __future__ import annotations

import asyncio
import weakref
from time import monotonic
from typing import Protocol

from ..sansio.timer_wheel import RESOLUTION, TimerWheel

__all__ = ["NEAR", "LoopWheel", "Timed", "wheel_for"]

#: deadlines nearer than this (s) keep a loop timer of their own
NEAR = 0.25
_NEVER = float("inf")


class Timed(Protocol):
    """What the wheel calls when an item's deadline came (``now``: the wheel's time, at or
    after that deadline)."""

    def deadline_came(self, now: float) -> None: ...


class LoopWheel:
    """A :class:`TimerWheel` of :class:`Timed` items and the one loop timer serving it."""

    __slots__ = ("wheel", "_loop", "_handle", "armed_at", "_firing", "_fire_cb", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = RESOLUTION) -> None:
        self._loop = weakref.ref(loop)
        #: the items' deadlines; a link files and drops itself here directly
        self.wheel: TimerWheel[Timed] = TimerWheel(resolution, self._earlier)
        self._handle: asyncio.TimerHandle | None = None
        #: when the loop timer fires (infinity: none armed)
        self.armed_at = _NEVER
        self._firing = False
        self._fire_cb = self._fire  # one bound method for every arming

    def _earlier(self, at: float) -> None:
        """A bucket before every other one was made: the timer comes no later than it."""
        if not self._firing and at < self.armed_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_at = at
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            self._handle = loop.call_at(at, self._fire_cb)

    def _fire(self) -> None:
        # the loop may run a timer early by its clock's resolution (uvloop: 1 ms): what it
        # was armed for is due; the links' deadlines are on the monotonic clock
        now = max(monotonic(), self.armed_at)
        self._handle = None
        self.armed_at = _NEVER
        self._firing = True
        due: list[Timed] = []
        served = 0  # items of ``due`` whose deadline_came was called
        try:
            due = self.wheel.pop_due(now)
            for item in due:
                served += 1
                try:
                    item.deadline_came(now)
                except Exception as exc:  # one link's fault stops no other link's timer
                    loop = self._loop()
                    if loop is not None:
                        loop.call_exception_handler({
                            "message": "exception in a link's timer", "exception": exc})
        except BaseException:
            # KeyboardInterrupt, SystemExit or CancelledError out of one item: it goes on
            # up, but the items after it are still due, and popped: filed again (due now,
            # so served at the next bucket) unless one filed itself meanwhile
            wheel = self.wheel
            for item in due[served:]:
                if item not in wheel:
                    wheel.file(item, now)
            raise
        finally:
            self._firing = False
            at = self.wheel.next_at()
            if at is not None:
                self._arm(at)

    def close(self) -> None:
        """Drop the loop timer of an empty wheel. Refused (``RuntimeError``, nothing
        changed) while items are filed: their deadlines would never come, a silent peer
        never be cut; a link leaves the wheel when it stops (``_cancel_timer``)."""
        if len(self.wheel):
            raise RuntimeError(f"the wheel still has {len(self.wheel)} items filed (live "
                               "links): stop them first, their deadlines must come")
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_at = _NEVER


# loop -> its wheel, both weakly: a wheel holds its links and a link its loop, so a strong
# value would keep its own key (and every link filed) alive for ever once the loop ended
# with links on the wheel. The links hold the wheel (``_wheel``), its armed timer the loop.
_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[LoopWheel]] = (
    weakref.WeakKeyDictionary())


def wheel_for(loop: asyncio.AbstractEventLoop) -> LoopWheel:
    """The wheel of ``loop`` (made by its first link; a new one once no link nor timer
    holds the last)."""
    ref = _wheels.get(loop)
    wheel = ref() if ref is not None else None
    if wheel is None:
        wheel = LoopWheel(loop)
        _wheels[loop] = weakref.ref(wheel)
    return wheel
