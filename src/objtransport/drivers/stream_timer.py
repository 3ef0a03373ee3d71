"""A stream link's timer (:class:`StreamTimer`, a base of :class:`~.stream.StreamLink`): the
session's ``next_deadline()``, re-armed when it moves, far deadlines on the loop's wheel and
near ones on a ``loop.call_at`` of their own (:class:`~.wheel_timer.WheelTimer`, which every
link kind shares); what a deadline does on a stream socket (``_timer_due``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic

from ..sansio.events import Closed
from .sockpeek import unread
from .stream_pauses import ReadPauses

__all__ = ["StreamTimer"]


class StreamTimer(ReadPauses):
    """``_timer_due``; one layer of the chain of slotted
    bases of :class:`~.stream.StreamLink` (``StreamEnding`` -> ``WriteTurns`` ->
    ``ReadPauses`` -> this)."""

    __slots__ = ()

    loop: asyncio.AbstractEventLoop
    closed: asyncio.Future[Closed]
    _fd: int
    _process_events: Callable[[], None]

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
