"""What the service does when a connection changes state or ends (:class:`Housekeeper`):
count it, log its first error, and forget an ended one in every part that knew it."""

from __future__ import annotations

import logging

from .connection import Connection
from .counters import ServiceTotals
from .endpoint import ConnState
from .logfields import log_fields
from .pool_manager import PoolManager
from .receivers import Receivers
from .registry import Registry
from .sansio.framing import GoAwayCode
from .sessions import SessionKeeper

__all__ = ["Housekeeper"]

log = logging.getLogger("objtransport")

#: how accepted connections that never opened end when they are summed up per listener:
#: the socket lost (-1), or authentication refused
_EARLY_CODES = frozenset({-1, GoAwayCode.UNAUTHENTICATED})


class Housekeeper:
    """The connections' state and error hooks, and forgetting."""

    def __init__(self, registry: Registry, receivers: Receivers, sessions: SessionKeeper,
                 totals: ServiceTotals) -> None:
        self._registry = registry
        self._receivers = receivers
        self._sessions = sessions
        self._totals = totals
        #: the service's pools while it runs
        self.pools: PoolManager | None = None

    def on_state(self, conn: Connection, state: ConnState) -> None:
        """Count a first connection; forget an accepted or pooled one that ended (a client
        connection stays until ``disconnect``, for ``connection_info`` and ``unconfirmed``)."""
        if state is ConnState.CONNECTED:
            if not conn.ever_connected:
                conn.ever_connected = True
                self._totals.connections += 1
        elif state is ConnState.DISCONNECTED:
            if conn.role == "server" or conn.pooled:
                self.forget(conn.id)

    def on_error(self, conn: Connection, reason: str) -> None:
        """Count an error; log a connection's first one. An accepted socket lost before its
        handshake (a peer's EOF or reset before HELLO: scanners, attacks, health probes)
        is logged at DEBUG and summed up per listener, one line per interval; so is a
        client refused by ``authenticate`` (an authentication flood is no log flood)."""
        self._totals.errors += 1
        listener = conn.listener
        if (listener is not None and not conn.ever_connected and conn.role == "server"
                and conn.end_code in _EARLY_CODES):
            log.debug("connection %s (%s, %s): %s before its handshake", conn.id, conn.role,
                      conn.endpoint, reason, extra=log_fields(conn.id, conn.endpoint))
            listener.early_end(reason)
            return
        if conn.error_count == 1:
            log.warning("connection %s (%s, %s): %s", conn.id, conn.role, conn.endpoint,
                        reason, extra=log_fields(conn.id, conn.endpoint))

    def forget(self, conn_id: int) -> None:
        """The connection is gone: fold its counters, keep its unconfirmed messages for
        ``unconfirmed()``, and drop it from every part."""
        conn = self._registry.remove(conn_id)
        if conn is None:
            return
        if conn.confirmations.unconfirmed:  # kept for unconfirmed(conn_id) once it is gone
            self._registry.keep_orphan(conn_id, conn.take_unconfirmed())
        self._totals.fold(conn.traffic(), conn.reconnects, conn.datagram_counters())
        self._receivers.detach(conn)
        self._sessions.forget(conn)
        if self.pools is not None and conn.pooled:
            self.pools.forget(conn)
