"""Listener-side sessions kept for the client to resume (:class:`SessionKeeper`).

Every native connection a listener accepts is registered under the client's session id.
When its socket breaks, the connection is *detached*: it keeps its id, counters and
unacknowledged messages for ``session_resume_timeout`` seconds. A client that comes back
with the same session id on a new socket resumes it: the socket moves to the kept
connection (:meth:`~.connection.Connection.take_over`) and the fresh connection that carried
the HELLO disappears unseen. A session not resumed in time expires: its unacknowledged
messages are reported as unconfirmed and the connection ends.

A detached session holds no ``max_connections`` slot of its listener (a client that sends a
HELLO and resets cannot lock a listener with no socket open). Instead, at most
``max_kept_sessions`` (the listener's option) detached sessions per listener wait at once;
past that the one that has waited longest expires at once (memory stays bounded whatever
clients do). Its client, when it comes back, gets ``SessionLost`` with the messages the
listener had not acknowledged, as after a listener restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .connection import Connection
from .exceptions import ProtocolError
from .sansio.framing import GoAwayCode
from .sansio.reliability import ResumeState

__all__ = ["SessionKeeper"]

log = logging.getLogger("objtransport")


class SessionKeeper:
    """Resume lookup, expiry and takeover of kept listener-side sessions."""

    def __init__(self, is_live: Callable[[int], bool]) -> None:
        self._is_live = is_live
        self._kept: dict[bytes, Connection] = {}
        #: detached connections (by id, oldest first) and their expiry timers
        self._expiry: dict[int, tuple[Connection, asyncio.TimerHandle]] = {}
        #: the same, per listener (oldest first): each listener's budget is its own
        self._waiting: dict[Any, dict[int, Connection]] = {}
        #: sessions ended early because their listener's budget was full
        self.evicted = 0

    def __len__(self) -> int:
        """Detached sessions waiting to be resumed."""
        return len(self._expiry)

    def lookup(self, fresh: Connection, sid: bytes) -> tuple[ResumeState, bool]:
        """A client's HELLO asks to resume session ``sid`` on the socket ``fresh`` holds.

        If we kept that session, the socket moves to the kept connection (same id, same
        counters, its unacknowledged messages resent); the caller then drops ``fresh``
        unseen. Returns the resume state to use and whether it is a resume. Raises
        ``ProtocolError`` (``UNAUTHENTICATED``) if the kept session belongs to another
        identity: it stays kept for its owner.
        """
        kept = self._kept.get(sid)
        link = fresh.link
        if kept is not None and kept is not fresh and self._is_live(kept.id) \
                and link is not None:
            if kept.identity != fresh.identity:  # someone else's session: left as it is
                raise ProtocolError(f"session {sid.hex()[:8]}... belongs to another "
                                    "identity", GoAwayCode.UNAUTHENTICATED)
            self._cancel(kept.id)
            kept.expiry.check()  # nothing past its ttl is sent again by the resume
            fresh.link = None
            kept.take_over(link)
            return kept.resume_state, True
        fresh.resume_state = ResumeState(sid, fresh.resume_state.spare_budget)
        self._kept[sid] = fresh
        return fresh.resume_state, False

    def kept_by(self, listener: Any) -> int:
        """Detached sessions of ``listener`` waiting to be resumed."""
        return len(self._waiting.get(listener, ()))

    def detached(self, conn: Connection) -> None:
        """A listener-side session lost its socket: keep it for the client to resume, in
        its listener's budget (not in a ``max_connections`` slot)."""
        self._cancel(conn.id)
        listener = conn.listener
        waiting = self._waiting.setdefault(listener, {})
        budget = conn.options.max_kept_sessions
        while len(waiting) >= budget:
            old = next(iter(waiting.values()))
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                log.warning("more than %d sessions wait to be resumed: connection %s "
                            "expires early (%d so far)", budget, old.id, self.evicted)
            self._expire(old)
        handle = asyncio.get_running_loop().call_later(
            conn.options.session_resume_timeout, self._expire, conn)
        self._expiry[conn.id] = (conn, handle)
        waiting[conn.id] = conn
        if listener is not None:
            listener.keep(conn.id)

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
        self._waiting.clear()
        self._kept.clear()

    def _cancel(self, conn_id: int) -> None:
        entry = self._expiry.pop(conn_id, None)
        if entry is not None:
            conn, handle = entry
            handle.cancel()
            listener = conn.listener
            waiting = self._waiting.get(listener)
            if waiting is not None:
                waiting.pop(conn_id, None)
                if not waiting:
                    del self._waiting[listener]
            if listener is not None:
                listener.unkeep(conn_id)

    def _expire(self, conn: Connection) -> None:
        self._cancel(conn.id)
        if self._is_live(conn.id):
            conn.expire()
