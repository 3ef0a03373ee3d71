"""Messages sent with a ttl on one connection: when their deadline passes they are given up
(:class:`Expiry`), counted and reported, never dropped silently.

The decision is the sans-I/O core's (``ResumeState.expire(now)``, ``NativeSession.expire``):
a message still queued and not begun leaves the queue and a SKIP frame takes its number; one
written but not acknowledged gets a SKIP instead of its resend after a resume
(docs/protocol.md 1.11). Here is only *when* it is asked, on the service's clock
(``NetworkTransport(clock=...)``, Unix time by default, the clock the EXPIRES entries use):

* when the earliest deadline passes (one ``loop.call_at`` per connection, re-armed);
* before each message sent with a ttl (``check``: one comparison while nothing is due);
* before a session is resumed, on both sides (a client's new session, a listener's lookup),
  so that nothing past its ttl is sent again whatever the timer's lateness.

What is given up is counted by priority (``messaging["expired_sent_<priority>"]``), kept
for ``unconfirmed(conn_id)`` and published as ``SessionLost(reason="expired")``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .events import SessionLost as SessionLostEvent
from .lifecycle import emit
from .sansio.reliability import ResumeState, Unacked
from .sansio.session import NativeSession

if TYPE_CHECKING:
    import asyncio

    from .connection import Connection

__all__ = ["Expiry"]


class Expiry:
    """The expiring messages of one connection: when to ask the core, and the report."""

    __slots__ = ("conn", "_at", "_timer")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._at = math.inf  # the earliest deadline known (inf: none)
        self._timer: asyncio.TimerHandle | None = None

    def _state(self) -> tuple[ResumeState, NativeSession | None]:
        """The resume state in use, and the open native session using it (if any)."""
        link = self.conn.link
        session = link.session if link is not None else None
        if isinstance(session, NativeSession) and session.open:
            return session.rs, session
        return self.conn.resume_state, None

    def track(self, seq: int, deadline: float) -> None:
        """Message ``seq`` of the current link is worthless after ``deadline`` (the
        service's clock)."""
        rs, _ = self._state()
        rs.expires(seq, deadline)
        expiring = rs.expiring
        if expiring and seq in expiring and deadline < self._at:
            self._arm(deadline)

    def check(self) -> None:
        """Give up what is past its deadline now (cheap while nothing is due)."""
        now = self.conn.hooks.clock()
        if now < self._at:
            return
        rs, session = self._state()
        lost = session.expire(now) if session is not None else rs.expire(now)[0]
        if lost:
            self.report(lost)
        nxt = rs.next_expiry()
        self._at = math.inf
        if nxt is not None:
            self._arm(nxt)

    def report(self, lost: list[Unacked]) -> None:
        """``lost`` were given up because their ttl passed: count, keep, publish."""
        conn = self.conn
        conn.hooks.on_expired(lost)
        conn.confirmations.add(lost, expired=True)
        emit(conn, SessionLostEvent, unconfirmed=len(lost), reason="expired")

    def _arm(self, deadline: float) -> None:
        self._at = deadline
        if self._timer is not None:
            self._timer.cancel()
        loop = self.conn.loop
        delay = max(0.0, deadline - self.conn.hooks.clock())
        self._timer = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.conn.hooks.clock() < self._at:  # the loop's clock ran ahead of ours
            self._arm(self._at)
            return
        self.check()

    def close(self) -> None:
        """The connection ended: no more checks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._at = math.inf
