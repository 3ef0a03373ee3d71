"""A peer that sends but does not read: stop reading from it, then drop it.

A peer may keep sending frames that want an answer (PINGs want PONGs, DATA wants ACKs) while
it never reads what we write. Our answers then pile up behind a full socket. The
:class:`OverloadGuard` of a stream link notices that what it cannot write is mostly such
answers, stops reading from the peer (reason ``"overload"``), and if the socket still takes
nothing after ``timeout`` s, ends the link with GOAWAY ``OVERLOADED``. If the socket takes our
bytes again, or only our own (e.g. paced) backlog was high, reading resumes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..sansio.core import AnySession
from ..sansio.framing import GoAwayCode

__all__ = ["OverloadGuard"]


class _Guarded(Protocol):
    """What the guard needs from its link."""

    loop: asyncio.AbstractEventLoop
    max_pending: int
    #: the transport asked the link to stop writing (its buffer is full)
    write_paused: bool

    @property
    def session(self) -> AnySession: ...

    @property
    def pending_bytes(self) -> int: ...

    def pause_reading(self, reason: str = "consumer") -> None: ...

    def resume_reading(self, reason: str = "consumer") -> None: ...

    def fail(self, reason: str, code: int) -> None: ...


class OverloadGuard:
    """Watches one link; the link calls :meth:`check` after queuing answers and
    :meth:`relieved` when writing flows again."""

    __slots__ = ("link", "paused", "_timer")

    def __init__(self, link: _Guarded) -> None:
        self.link = link
        self.paused = False  # reading is paused for "overload"
        self._timer: asyncio.TimerHandle | None = None

    def check(self) -> None:
        """What we cannot write is mostly our answers to the peer (PONGs, ACKs): stop
        reading from it; drop it if it is still stuck after ``timeout`` s."""
        link = self.link
        sched = link.session.scheduler
        if (self.paused or not link.write_paused or sched.pending_bytes <= link.max_pending
                or sched.queued_by_priority()[0] <= link.max_pending // 2):
            return
        self.paused = True
        link.pause_reading("overload")
        self._timer = link.loop.call_later(link.session.options.timeout, self._expired)

    def relieved(self) -> None:
        """Writing flows again and the backlog fell to half: read from the peer again."""
        link = self.link
        if (self.paused and not link.write_paused
                and link.session.scheduler.pending_bytes <= link.max_pending // 2):
            self.cancel()
            self.paused = False
            link.resume_reading("overload")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        link = self.link
        if not link.write_paused:
            # the peer did read (the socket takes our bytes): only our own backlog is high,
            # e.g. a sender paced by a bandwidth limit. Not an overload.
            self.paused = False
            link.resume_reading("overload")
            return
        link.fail(f"peer does not read: {link.pending_bytes} bytes pending for "
                  f"{link.session.options.timeout:g} s", GoAwayCode.OVERLOADED)
