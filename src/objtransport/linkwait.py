"""What a send does while its connection has no open link (:class:`LinkWait`).

A native client connection that reconnects keeps the message for the next link (its
:class:`~.offline.OfflineQueue`, up to ``max_pending_bytes``); otherwise the send waits for
the (re)connection, up to its timeout. An endpoint whose breaker is open fails at once
(``CircuitOpenError``), a connection that cannot come back with ``ConnectionNotReady``.
None of this runs while the link is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from .drivers.base import Link
from .endpoint import ConnState
from .exceptions import CircuitOpenError, ConnectionNotReady, MessageTooLarge, SendTimeout
from .sansio.breaker import BreakerState

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["LinkWait"]


class LinkWait:
    """The offline queue and the wait for a link, of one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def fail_fast(self) -> None:
        """Raise ``CircuitOpenError`` while the endpoint's breaker is open."""
        breaker = self.conn.breaker
        if breaker.state is BreakerState.OPEN:
            retry = breaker.retry_after(self.conn.loop.time())
            if retry > 0:
                raise CircuitOpenError(str(self.conn.endpoint), retry)

    def queue_offline(self, data: bytes | bytearray | memoryview, stream: int, priority: int,
                      text: bool) -> bool:
        """While the native client connection reconnects (its session is lossless), keep
        one message for the next link if ``max_pending_bytes`` allows; True if kept.

        Raises ``MessageTooLarge`` above ``max_message_size`` and ``CircuitOpenError``
        while the endpoint's breaker is open (fail fast, as :meth:`ready_link`)."""
        conn = self.conn
        rs = conn.resume_state
        if not (conn.state is ConnState.CONNECTING and conn.role == "client" and conn.native
                and rs.established and rs.tracking and not conn.closed_by_user):
            return False
        self.fail_fast()
        size = len(data)
        limit = conn.options.max_message_size
        if size > limit:
            raise MessageTooLarge(size, limit)
        if not conn.offline.room_for(size):
            return False
        conn.offline.put(data, stream, priority, text)
        return True

    async def ready_link(self, timeout: float) -> Link:
        """The open link, waiting up to ``timeout`` while (re)connecting. Raises
        ``SendTimeout`` when the wait was for room (the offline queue was full)."""
        conn = self.conn
        link = conn.link
        if link is not None and link.session.is_open:
            return link
        # the endpoint is down: fail at once instead of waiting for a reconnection
        self.fail_fast()
        if (conn.state is ConnState.CONNECTED and not conn.closed_by_user and link is not None
                and not link.session.is_open):
            # its session just ended and the connection has not taken note yet (it will
            # reconnect or give up): wait for that instead of failing the send
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while conn.state is ConnState.CONNECTED and conn.link is link:
                        await conn.state_change()
        if conn.state is ConnState.CONNECTING and not conn.closed_by_user:
            try:
                async with asyncio.timeout(timeout):
                    while conn.state is ConnState.CONNECTING:
                        await conn.state_change()
            except TimeoutError:
                if len(conn.offline) and conn.state is ConnState.CONNECTING:
                    raise SendTimeout(
                        f"send to {conn.endpoint} blocked for {timeout:g} s: reconnecting, "
                        f"{conn.offline.bytes} bytes already queued (max_pending_bytes)"
                    ) from None
            link = conn.link
            if link is not None and link.session.is_open:
                return link
        self.fail_fast()
        state = "closing" if self.closing else conn.state.value
        raise ConnectionNotReady(conn.id, state, str(conn.endpoint))

    @property
    def closing(self) -> bool:
        """Connected, but its session is ending (a close or GOAWAY is under way)."""
        conn = self.conn
        link = conn.link
        return conn.closed_by_user or (conn.state is ConnState.CONNECTED and link is not None
                                       and not link.session.is_open)
