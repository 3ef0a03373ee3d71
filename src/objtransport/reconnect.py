"""The client side of a connection: the first connect, and the supervising task that
reconnects with the backoff policy when the link is lost unexpectedly.

A :class:`Supervisor` works through the connection's public methods only: it asks for the
link parts, brings links up (``conn.up``), folds ended ones (``conn.fold_link``), moves the
state (``conn.set_state``) and reports a give-up (``conn.give_up``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .auth import client_token
from .drivers.base import Link, StoppableLink
from .drivers.stopping import LINK_TASK_LEFT
from .endpoint import ConnState
from .events import GivenUp, Reconnecting
from .exceptions import AuthenticationError, CircuitOpenError, ConnectError
from .lifecycle import emit
from .link_setup import make_parts
from .logfields import log_fields
from .sansio.backoff import backoff_delays

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Supervisor"]

log = logging.getLogger("objtransport.connection")

#: seconds a lost link that runs its own task (gRPC's reader) is given to end before the
#: next attempt, all told (then cancelled: :func:`.drivers.stopping.stop_by`): it ends at
#: once when its call is over, and is the connection's to wait for, not left pending when
#: the service stops
LINK_STOP_WAIT = 0.5


class Supervisor:
    """Connects one client connection and keeps it connected."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: reconnection attempts since the last success (or loss)
        self.attempts = 0
        #: loop time past which no attempt starts (``reconnect_deadline`` after the loss)
        self.give_up_at: float | None = None

    async def attempt(self) -> Link:
        """One connection attempt, gated and scored by the endpoint's breaker.

        Raises ``CircuitOpenError`` without any network attempt when the breaker is open,
        ``ConnectError`` on failure (which feeds the breaker).
        """
        conn = self.conn
        breaker = conn.breaker
        loop = conn.loop
        now = loop.time()
        if not breaker.allow(now):
            raise CircuitOpenError(str(conn.endpoint), breaker.retry_after(now))
        ep = conn.endpoint
        try:
            conn.token = await self._token()
            link = await conn.driver.open(ep.host, ep.port, make_parts(conn),
                                          conn.ssl_context, conn.options, conn.server_hostname)
        except ConnectError as exc:
            breaker.record_failure(loop.time())
            conn.record_error(exc.reason)
            raise
        except BaseException:
            breaker.release_probe()
            raise
        if getattr(link, "verified", True):
            breaker.record_success(loop.time())
        else:  # a raw datagram socket: a success once the peer is heard from, not before
            breaker.release_probe()
            conn.expect_first_message()
        return link

    async def _token(self) -> str | None:
        """This attempt's token: ``token=``, or ``credentials=`` asked again (an expiring
        token is refreshed at each reconnect). A failing ``credentials`` is a
        ``ConnectError`` (retried)."""
        conn = self.conn
        try:
            return await client_token(conn.extra)
        except Exception as exc:
            raise ConnectError(str(conn.endpoint), f"credentials failed: {exc!r}") from exc

    async def run(self) -> None:
        """Wait for the link to end; reconnect with backoff unless the user closed it.

        A link that fails before the peer sent or acknowledged anything (a server that
        accepts the socket, then refuses the session) counts as a failed attempt: the
        backoff schedule goes on instead of starting over, so such a peer is given up
        after ``max_reconnect_attempts`` like one that refuses the connection. A link whose
        peer's resume floor (in the next HELLO) shows it received more counts as progress.
        """
        conn = self.conn
        delays: Iterator[float] | None = None
        acked_before = conn.resume_state.acked
        while True:
            link = conn.link
            assert link is not None
            closed = await link.closed
            conn.fold_link(link)
            if isinstance(link, StoppableLink) and not conn.closed_by_user:
                # a link that runs its own task (a close waits for it itself)
                if not await link.wait_stopped(conn.loop.time() + LINK_STOP_WAIT):
                    conn.record_error(LINK_TASK_LEFT)
            if conn.closed_by_user:
                break
            if closed.error:
                conn.breaker.record_failure(conn.loop.time())
            if conn.pooled and not closed.error:
                # closed in order (by the peer, or idle): a pooled connection leaves its
                # pool rather than reconnecting; the next send_to opens another
                conn.give_up()
                break
            # progress since the last loss: data from the peer, or acknowledgements, also
            # those that only the resumed HELLO's floor brought (a middlebox that resets
            # every link before any ACK comes back still lets every link deliver)
            progressed = (link.session.bytes_received > 0
                          or conn.resume_state.acked != acked_before)
            acked_before = conn.resume_state.acked
            if not closed.error or progressed:
                delays = None
            log.info("connection %s to %s lost (%s); reconnecting", conn.id, conn.endpoint,
                     closed.reason, extra=log_fields(conn.id, conn.endpoint))
            conn.set_state(ConnState.CONNECTING)
            if delays is None:
                delays = self._delays()
            new = await self._reconnect(delays)
            if new is None:
                if not conn.closed_by_user:
                    emit(conn, GivenUp, attempts=self.attempts, reason=conn.last_error)
                conn.give_up()
                break
            conn.reconnects += 1
            conn.up(new)
        conn.set_state(ConnState.DISCONNECTED)

    def _delays(self) -> Iterator[float]:
        """A new backoff schedule (a loss after progress): the attempts and the deadline
        start over."""
        o = self.conn.options
        self.give_up_at = (None if o.reconnect_deadline is None
                           else self.conn.loop.time() + o.reconnect_deadline)
        return backoff_delays(o.reconnect_interval, o.reconnect_multiplier,
                              o.reconnect_max_delay, o.max_reconnect_attempts,
                              self.conn.rng if o.reconnect_jitter else None)

    async def _reconnect(self, delays: Iterator[float]) -> Link | None:
        conn = self.conn
        self.attempts = 0
        for delay in delays:
            now = conn.loop.time()
            wait = max(delay, conn.breaker.retry_after(now))
            if self.give_up_at is not None:
                if now >= self.give_up_at:
                    break
                wait = min(wait, self.give_up_at - now)
            self.attempts += 1
            emit(conn, Reconnecting, attempt=self.attempts, delay=wait)
            await asyncio.sleep(wait)
            if conn.closed_by_user:
                return None
            try:
                return await self.attempt()
            except AuthenticationError as exc:  # retrying cannot help: given up at once
                log.warning("connection %s to %s: %s; not retried", conn.id, conn.endpoint,
                            exc, extra=log_fields(conn.id, conn.endpoint))
                return None
            except (ConnectError, CircuitOpenError) as exc:
                log.debug("reconnect %s to %s failed: %s", conn.id, conn.endpoint, exc,
                          extra=log_fields(conn.id, conn.endpoint))
        if self.attempts:
            log.warning("connection %s to %s: giving up after %d reconnect attempts (%s)",
                        conn.id, conn.endpoint, self.attempts, conn.last_error,
                        extra=log_fields(conn.id, conn.endpoint))
        else:
            log.info("connection %s to %s lost; it does not reconnect (%s)", conn.id,
                     conn.endpoint, conn.last_error, extra=log_fields(conn.id, conn.endpoint))
        return None
