"""Listener-side sessions kept for the client to resume (:class:`SessionKeeper`).

Every native connection a listener accepts is registered under the client's session id.
When its socket breaks, the connection is *detached*: it keeps its id, counters and
unacknowledged messages for ``session_resume_timeout`` seconds. A client that comes back
with the same session id on a new socket resumes it: the socket moves to the kept
connection (:meth:`~.connection.Connection.take_over`) and the fresh connection that carried
the HELLO disappears unseen. A session not resumed in time expires: its unacknowledged
messages are reported as unconfirmed and the connection ends.

At most ``budget`` detached sessions wait at once; past that the one that has waited longest
expires at once (memory stays bounded whatever clients do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .connection import Connection
from .sansio.reliability import ResumeState

__all__ = ["DEFAULT_BUDGET", "SessionKeeper"]

log = logging.getLogger("objtransport")

#: detached sessions waiting to be resumed, at most (per service)
DEFAULT_BUDGET = 10_000


class SessionKeeper:
    """Resume lookup, expiry and takeover of kept listener-side sessions."""

    def __init__(self, is_live: Callable[[int], bool], budget: int = DEFAULT_BUDGET) -> None:
        if budget < 1:
            raise ValueError(f"budget must be at least 1, not {budget}")
        self._is_live = is_live
        self.budget = budget
        self._kept: dict[bytes, Connection] = {}
        #: detached connections (by id, oldest first) and their expiry timers
        self._expiry: dict[int, tuple[Connection, asyncio.TimerHandle]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        """Detached sessions waiting to be resumed."""
        return len(self._expiry)

    def lookup(self, fresh: Connection, sid: bytes) -> tuple[ResumeState, bool]:
        """A client's HELLO asks to resume session ``sid`` on the socket ``fresh`` holds.

        If we kept that session, the socket moves to the kept connection (same id, same
        counters, its unacknowledged messages resent); the caller then drops ``fresh``
        unseen. Returns the resume state to use and whether it is a resume.
        """
        kept = self._kept.get(sid)
        link = fresh.link
        if kept is not None and kept is not fresh and self._is_live(kept.id) \
                and link is not None:
            self._cancel(kept.id)
            fresh.link = None
            kept.take_over(link)
            return kept.resume_state, True
        fresh.resume_state = ResumeState(sid)
        self._kept[sid] = fresh
        return fresh.resume_state, False

    def detached(self, conn: Connection) -> None:
        """A listener-side session lost its socket: keep it for the client to resume."""
        self._cancel(conn.id)
        while len(self._expiry) >= self.budget:
            oldest = next(iter(self._expiry))
            old, _handle = self._expiry[oldest]
            self.evicted += 1
            log.warning("more than %d sessions wait to be resumed: connection %s expires "
                        "early", self.budget, oldest)
            self._expire(old)
        handle = asyncio.get_running_loop().call_later(
            conn.options.session_resume_timeout, self._expire, conn)
        self._expiry[conn.id] = (conn, handle)

    def forget(self, conn: Connection) -> None:
        """The connection is gone: its session can no longer be resumed."""
        sid = conn.resume_state.session_id
        if self._kept.get(sid) is conn:
            del self._kept[sid]
        self._cancel(conn.id)

    def close(self) -> None:
        """Cancel every expiry timer (the service is stopping)."""
        for _conn, handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        self._kept.clear()

    def _cancel(self, conn_id: int) -> None:
        entry = self._expiry.pop(conn_id, None)
        if entry is not None:
            entry[1].cancel()

    def _expire(self, conn: Connection) -> None:
        self._cancel(conn.id)
        if self._is_live(conn.id):
            conn.expire()
