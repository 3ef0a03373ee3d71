"""How a connection ends (:class:`Closing`): an orderly close, or giving up.

An orderly close lets what is queued go out and be acknowledged (up to the timeout), sends
GOAWAY, closes the socket and stops the supervising task; a client whose reconnection
attempts ran out gives up. Either way what the peer had not acknowledged (and what waited
in the offline queue) is reported as unconfirmed, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .drivers.base import StoppableLink
from .drivers.stopping import LINK_TASK_LEFT
from .endpoint import ConnState
from .exceptions import TransportError
from .logfields import log_fields
from .sansio.framing import GoAwayCode

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Closing"]

log = logging.getLogger("objtransport.connection")


class Closing:
    """Ends one connection and reports what stayed unconfirmed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def close(self, timeout: float, code: int = GoAwayCode.NORMAL,
                    reason: str = "closed") -> None:
        """Orderly close: queued messages go out and are acknowledged (up to ``timeout``),
        GOAWAY, socket closed. What stays unacknowledged is reported as unconfirmed."""
        conn = self.conn
        loop = conn.loop
        deadline = loop.time() + timeout
        link = conn.link
        if link is not None and getattr(link.session, "acks", False) and link.session.open:
            try:
                # on this link only: one lost meanwhile (reset, refused reconnection) ends
                # the wait, a close never waits for a reconnection that may not come
                await conn.wait_acked(timeout, on_link=link)
            except TransportError:
                pass  # reported below
        conn.closed_by_user = True
        timeout = max(0.01, deadline - loop.time())
        link = conn.link
        if link is not None:
            link.close(code, reason)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(link.lost)
            except TimeoutError:
                link.abort()
            # a link that runs its own task: the same deadline, then cancelled
            if isinstance(link, StoppableLink) and not await link.wait_stopped(deadline):
                conn.record_error(LINK_TASK_LEFT)
        task = conn.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if conn.link is not None:
            conn.fold_link(conn.link)
        if conn.resume_state.unacked_count or len(conn.offline):
            lost = conn.resume_state.take_unconfirmed() + conn.offline.take()
            conn.session_lost(lost)
            log.warning("connection %s to %s closed with %d message(s) not acknowledged",
                        conn.id, conn.endpoint, len(lost),
                        extra=log_fields(conn.id, conn.endpoint))
        conn.set_state(ConnState.DISCONNECTED)

    def give_up(self) -> None:
        """No more attempts: what the peer had not acknowledged can no longer be confirmed.
        It is reported (``unconfirmed``, ``SessionLost`` in waiters), never dropped."""
        conn = self.conn
        if conn.closed_by_user or not (conn.resume_state.unacked_count or len(conn.offline)):
            return
        lost = conn.resume_state.take_unconfirmed() + conn.offline.take()
        conn.session_lost(lost, "the connection was given up")
        log.warning("connection %s to %s given up with %d message(s) not acknowledged",
                    conn.id, conn.endpoint, len(lost), extra=log_fields(conn.id, conn.endpoint))
