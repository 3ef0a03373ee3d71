"""A stream link's one timer (:class:`StreamTimer`, a base of :class:`~.stream.StreamLink`):
a ``loop.call_at`` at the session's ``next_deadline()``, re-armed when it moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic

from ..sansio.events import Closed
from .sockpeek import unread
from .stream_pauses import ReadPauses

__all__ = ["StreamTimer"]


class StreamTimer(ReadPauses):
    """``_rearm`` and ``_on_timer``; one layer of the chain of slotted bases of
    :class:`~.stream.StreamLink` (``StreamEnding`` -> ``WriteTurns`` -> ``ReadPauses`` ->
    this)."""

    __slots__ = ()

    loop: asyncio.AbstractEventLoop
    closed: asyncio.Future[Closed]
    _fd: int
    _timer: asyncio.TimerHandle | None
    _timer_at: float | None
    _process_events: Callable[[], None]

    def _rearm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0
        self._timer = None
        self._timer_at = None
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
