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


class SharedDeadlines:
    """One timer for the deadlines of futures on one loop."""

    __slots__ = ("_entries", "_handle", "_at", "_kept")

    def __init__(self) -> None:
        self._entries: list[tuple[float, asyncio.Future[Any]]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0  # when the timer fires
        self._kept = 0  # waits live at the last sweep

    def add(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any],
            deadline: float) -> None:
        """``fut`` fails with ``TimeoutError`` at ``deadline`` (loop time) unless it is
        done by then."""
        entries = self._entries
        entries.append((deadline, fut))
        if len(entries) > 2 * self._kept + _SLACK:
            self._entries = entries = [e for e in entries if not e[1].done()]
            self._kept = len(entries)
        if self._handle is None or deadline < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = deadline
            self._handle = loop.call_at(deadline, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        due = max(self._at, loop.time())  # the loop runs a timer up to its resolution early
        keep: list[tuple[float, asyncio.Future[Any]]] = []
        for deadline, fut in self._entries:
            if fut.done():
                continue
            if deadline <= due:
                fut.set_exception(TimeoutError())
            else:
                keep.append((deadline, fut))
        self._entries = keep
        self._kept = len(keep)
        if keep:
            self._at = min(d for d, _ in keep)
            self._handle = loop.call_at(self._at, self._fire, loop)

    def __len__(self) -> int:
        """Waits on record (some may have ended since the last sweep)."""
        return len(self._entries)

    def close(self) -> None:
        """Drop the timer and every record (the waiters are woken by their owner)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._entries = []
        self._kept = 0
