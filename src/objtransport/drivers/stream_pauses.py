"""Why a stream link stopped reading (:class:`ReadPauses`, a base of
:class:`~.stream.StreamLink`): the consumer, the receive throttle, the overload guard, ...
Reading stops at the first reason and resumes once none is left; the session is told
both times (its idle and frame deadlines wait while we, not the peer, hold the bytes)."""

from __future__ import annotations

import asyncio
from time import monotonic

from ..sansio.session import Session
from .stream_turn import WriteTurns

__all__ = ["ReadPauses"]


class ReadPauses(WriteTurns):
    """``pause_reading(reason)`` / ``resume_reading(reason)``; the reasons are a tuple (an
    idle link holds the shared empty one). One layer of the chain of slotted bases of
    :class:`~.stream.StreamLink` (``StreamEnding`` -> ``WriteTurns`` -> this)."""

    __slots__ = ("_read_pauses",)

    session: Session
    transport: asyncio.Transport | None
    _read_pauses: tuple[str, ...]

    def pause_reading(self, reason: str = "consumer") -> None:
        """Stop reading for ``reason`` (reading resumes once no reason is left)."""
        first = not self._read_pauses
        self._slow_write = True  # the overload guard's pause: writes go through _flush
        if reason not in self._read_pauses:
            self._read_pauses += (reason,)
        t = self.transport
        if first and t is not None and not t.is_closing():
            t.pause_reading()
            self.session.reading_paused(monotonic())

    def resume_reading(self, reason: str = "consumer") -> None:
        if reason not in self._read_pauses:
            return
        self._read_pauses = tuple(r for r in self._read_pauses if r != reason)
        t = self.transport
        if not self._read_pauses and t is not None and not t.is_closing():
            t.resume_reading()
            self.session.reading_resumed(monotonic())
