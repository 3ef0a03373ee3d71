"""``ConfirmingAPI``: the per-connection controls of :class:`~objtransport.NetworkTransport`
that come after sending: ``set_bandwidth`` (limits at run time), ``flush`` (wait for the
peer's acknowledgements) and ``unconfirmed`` (the payloads in doubt). A mixin over
:class:`~.api_parts.ServiceParts`, like :mod:`~objtransport.api_sending`.
"""

from __future__ import annotations

from .api_parts import ServiceParts
from .exceptions import ConnectionNotFound

__all__ = ["ConfirmingAPI"]


class ConfirmingAPI(ServiceParts):
    """Limits and confirmations of a connection (or a group)."""

    def set_bandwidth(self, conn_id: int, max_bandwidth: float | None = None,
                      burst: float | None = None, *,
                      max_receive_bandwidth: float | None = None,
                      receive_burst: float | None = None) -> None:
        """Change a connection's limits at run time (bytes/s; 0 removes a limit; None
        keeps it). Takes effect at once, also across reconnections."""
        self._get(conn_id).set_bandwidth(max_bandwidth, burst, max_receive_bandwidth,
                                         receive_burst)

    async def flush(self, conn_id: int, timeout: float | None = None) -> None:
        """Wait until the peer acknowledged everything sent so far on the connection
        (native framing; across reconnections), or, in raw framing, until it was all handed
        to the socket. Raises ``SendTimeout``, or ``SessionLost`` if the peer lost the
        session (then :meth:`unconfirmed` gives the messages in doubt)."""
        timeout = self.options.timeout if timeout is None else timeout
        group = self._groups.get(conn_id)
        if group is not None:
            await group.flush(timeout)
            return
        await self._get(conn_id).wait_acked(timeout)

    def unconfirmed(self, conn_id: int) -> list[bytes]:
        """Hand over (and forget) the payloads whose delivery could not be confirmed: the
        peer lost the session, or the connection was given up (also after it is gone, e.g.
        a pooled connection that died); see ``SessionLost``."""
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is not None:
                return group.take_unconfirmed()
            orphaned = self._registry.take_orphan(conn_id)
            if orphaned is None:
                raise ConnectionNotFound(conn_id)
            return orphaned
        return conn.take_unconfirmed()
