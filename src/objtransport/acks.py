"""What a connection could not confirm, and the tasks waiting for acknowledgements."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .endpoint import ConnState
from .exceptions import ConnectionNotReady, SendTimeout, SessionLost
from .sansio.headers import plain_payload
from .sansio.reliability import Unacked

if TYPE_CHECKING:
    from .connection import Connection
    from .drivers.base import Link

__all__ = ["Confirmations"]


class Confirmations:
    """Messages in doubt (the peer lost the session, or the connection was given up) and the
    waiters of ``flush()`` / ``send_data(wait_ack=True)``, woken by ACKs and state changes."""

    __slots__ = ("unconfirmed", "total", "expired", "_waiters")

    def __init__(self) -> None:
        #: messages whose delivery could not be confirmed, until handed over (a tuple: the
        #: empty one is no object of the connection's; few connections ever lose any)
        self.unconfirmed: tuple[Unacked, ...] = ()
        #: how many there were in all (handed over or not)
        self.total = 0
        #: ... of which given up because their ttl passed (not a lost session)
        self.expired = 0
        self._waiters: list[asyncio.Future[None]] | None = None  # made by the first wait

    def wake(self) -> None:
        """Let every waiter look again (an ACK came, or the state changed)."""
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def add(self, lost: list[Unacked], expired: bool = False) -> None:
        """Messages whose delivery can no longer be confirmed; waiters are woken. Those
        ``expired`` (given up by their ttl) do not fail a ``flush`` that waits."""
        self.unconfirmed += tuple(lost)
        self.total += len(lost)
        if expired:
            self.expired += len(lost)
        self.wake()

    def take(self) -> list[bytes]:
        """Hand over (and forget) the payloads in doubt."""
        out = [plain_payload(u[1], u[4], 0xFFFFFFFF) for u in self.unconfirmed]
        self.unconfirmed = ()
        return out

    def take_unacked(self) -> list[Unacked]:
        """Hand over (and forget) the messages in doubt with their stream and priority (a
        group re-sends them through another member)."""
        out = list(self.unconfirmed)
        self.unconfirmed = ()
        return out

    async def wait(self, conn: Connection, timeout: float, seq: int | None = None, *,
                   on_link: Link | None = None) -> None:
        """Wait until ``conn``'s peer acknowledged everything sent so far (or up to ``seq``).

        Raises ``SendTimeout`` after ``timeout`` s and ``SessionLost`` if the peer lost the
        session meanwhile. Without ACKs (raw framing) it waits until all is handed to the
        socket. With ``on_link``, the wait also ends (quietly) once that link is no longer the
        connection's: what it acknowledged by then is all it can (an orderly close does not
        wait for a reconnection); the caller looks at what stays unacknowledged.
        """
        lost_before = self.total - self.expired
        rs = conn.resume_state
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.total - self.expired != lost_before:
                        raise SessionLost(str(conn.endpoint), list(self.unconfirmed))
                    link = conn.link
                    if link is not None and not getattr(link.session, "acks", False) \
                            and link.session.open:
                        await link.wait_flushed(timeout)
                        return
                    if (not rs.unacked_count and not len(conn.offline)) or (
                            seq is not None and rs.acked >= seq):
                        return
                    if on_link is not None and (link is not on_link
                                                or conn.state is not ConnState.CONNECTED):
                        return
                    if conn.state is ConnState.DISCONNECTED:
                        raise ConnectionNotReady(conn.id, conn.state.value, str(conn.endpoint))
                    fut: asyncio.Future[None] = conn.loop.create_future()
                    if self._waiters is None:
                        self._waiters = []
                    self._waiters.append(fut)
                    await fut
        except TimeoutError:
            raise SendTimeout(f"{rs.unacked_count} message(s) to {conn.endpoint} not "
                              f"acknowledged within {timeout:g} s") from None
