"""Many waiters' deadlines on one loop timer (:class:`SharedDeadlines`).

``receive(timeout=...)`` used to arm a loop timer per wait (``asyncio.timeout``) and cancel
it when the message came: on uvloop a timer armed and cancelled costs several µs, paid on
every round trip of a request/response exchange. Here a wait only records its deadline; one
timer is armed for the earliest one and, when it fires, fails the waiters whose deadline
passed with ``TimeoutError`` and is armed again for the next. Waits that ended before are
dropped then (or when the record has doubled since, so it stays bounded by the live waits).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["SharedDeadlines"]

#: dropped records are swept once the record holds this many more than were live last time
_SLACK = 64
_NEVER = float("inf")


class SharedDeadlines:
    """One timer for the deadlines of futures on one loop.

    A caller on a hot path may record a wait itself, without :meth:`add`'s call, when the
    timer is armed no later than its deadline and the record has room::

        if deadline >= d.armed_at and d.room:
            d.room -= 1
            d.entries.append((deadline, fut))
        else:
            d.add(loop, fut, deadline)
    """

    __slots__ = ("entries", "_handle", "armed_at", "room", "_kept")

    def __init__(self) -> None:
        self.entries: list[tuple[float, asyncio.Future[Any]]] = []
        self._handle: asyncio.TimerHandle | None = None
        #: when the timer fires (infinity while none is armed: every deadline arms it)
        self.armed_at = _NEVER
        #: records that may still be added before the ended waits are swept
        self.room = _SLACK
        self._kept = 0  # waits live at the last sweep

    def add(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any],
            deadline: float) -> None:
        """``fut`` fails with ``TimeoutError`` at ``deadline`` (loop time) unless it is
        done by then."""
        entries = self.entries
        entries.append((deadline, fut))
        if len(entries) > 2 * self._kept + _SLACK:
            self.entries = entries = [e for e in entries if not e[1].done()]
            self._kept = len(entries)
        self.room = max(0, 2 * self._kept + _SLACK - len(entries))
        if deadline < self.armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self.armed_at = deadline
            self._handle = loop.call_at(deadline, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        due = max(self.armed_at, loop.time())  # the loop runs a timer up to its resolution
        self.armed_at = _NEVER  # early
        keep: list[tuple[float, asyncio.Future[Any]]] = []
        for deadline, fut in self.entries:
            if fut.done():
                continue
            if deadline <= due:
                fut.set_exception(TimeoutError())
            else:
                keep.append((deadline, fut))
        self.entries = keep
        self._kept = len(keep)
        self.room = self._kept + _SLACK
        if keep:
            self.armed_at = min(d for d, _ in keep)
            self._handle = loop.call_at(self.armed_at, self._fire, loop)

    def __len__(self) -> int:
        """Waits on record (some may have ended since the last sweep)."""
        return len(self.entries)

    def close(self) -> None:
        """Drop the timer and every record (the waiters are woken by their owner)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_at = _NEVER
        self.entries = []
        self._kept = 0
        self.room = _SLACK
