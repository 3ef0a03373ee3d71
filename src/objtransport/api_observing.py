"""``ObservingAPI``: what :class:`~objtransport.NetworkTransport` tells about itself.

Lifecycle events (``events()``), snapshots (``connection_info``, ``connections``,
``get_metrics``, the breakers) and the Prometheus endpoint (``serve_metrics``). Nothing here
is on a per-message path. A mixin over :class:`~.api_parts.ServiceParts`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from .api_parts import ServiceParts
from .config import TransportKind
from .connection import Connection, ConnectionInfo
from .endpoint import Endpoint
from .events import DEFAULT_MAXSIZE, Subscription
from .info import KeptSessions, TransportMetrics, connection_info, transport_metrics
from .listener import Listener
from .params import TransportArg
from .sansio.breaker import CircuitBreaker, CircuitBreakerState
from .sansio.chunk_pool import SpareBudget

if TYPE_CHECKING:
    from .exporters.prometheus import MetricsServer
    from .service import NetworkTransport

__all__ = ["ObservingAPI"]


class ObservingAPI(ServiceParts):
    """Events, snapshots, metrics and breakers."""

    def events(self, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to lifecycle events (:mod:`objtransport.events`) from now on:
        ``async for ev in net.events():``. At most ``maxsize`` wait; a subscriber that lags
        loses the oldest (counted in ``.dropped``). Iteration ends when the service stops;
        ``close()`` (or ``async with``) unsubscribes."""
        return self._events.subscribe(maxsize)

    def connection_info(self, conn_id: int) -> ConnectionInfo:
        """A snapshot of a connection, or of a group (summed over its members; ``role``
        "group", ``host`` the target)."""
        group = self._groups.get(conn_id)
        if group is not None:
            return group.info(self._wall_offset())
        return connection_info(self._get(conn_id), self._wall_offset())

    def connections(self) -> list[int]:
        return self._registry.ids()

    def connection(self, conn_id: int) -> Connection | None:
        """The live connection object of ``conn_id`` (None if unknown), for diagnostics
        and tests: its ``link`` (None while it reconnects), ``last_error``, ``state``. Read
        it; change it only through the service's methods. :meth:`connection_info` is the
        stable snapshot."""
        return self._conns.get(conn_id)

    def kept_sessions(self) -> KeptSessions:
        """Listener-side sessions that lost their socket and wait to be resumed, and
        how many ended early since start because their listener's ``max_kept_sessions``
        was full."""
        keeper = self._sessions
        return KeptSessions(waiting=len(keeper), evicted=keeper.evicted)

    @property
    def events_published(self) -> int:
        """Events published since start (:meth:`events`). While nobody subscribes and no
        ``on_event`` callback is given, none are built: it stays 0."""
        return self._events.published

    @property
    def spare_chunks(self) -> SpareBudget | None:
        """The service-wide budget of spare chunk buffers (``max_spare_chunk_bytes``):
        its ``limit`` and the bytes ``held`` by the connections' pools now."""
        return self._hooks.spare_chunks

    def get_metrics(self) -> TransportMetrics:
        listeners = self._registry.listeners
        return replace(transport_metrics(
            self._totals, self._registry, _listener_datagram(listeners), self._latency,
            connections_refused=sum(x.refused + getattr(x.server, "refused", 0)
                                    for x in listeners),  # + WebSocket 404s
            messages_queued=self._inbox.size, listeners=len(listeners),
            pooled_connections=self._pools.size if self._pools is not None else 0),
            messaging=self._messaging.as_dict())

    async def serve_metrics(self, port: int = 9100, host: str = "127.0.0.1", *,
                            per_connection: bool = False) -> MetricsServer:
        """Serve Prometheus metrics at ``http://host:port/metrics`` (``port=0``: any free
        port, read ``server.port``) until ``await server.close()`` or the service's
        ``stop()``, which closes it. Needs the extra ``objtransport[prometheus]``; see
        :mod:`objtransport.metrics`.

        Example::

            server = await net.serve_metrics(9100)
            ...
            await server.close()
        """
        from .metrics import serve_metrics

        self._check_running()
        server = await serve_metrics(cast("NetworkTransport", self), port, host,
                                     per_connection=per_connection)
        self._metrics_servers = [s for s in self._metrics_servers if s.serving]
        self._metrics_servers.append(server)
        return server

    async def _close_metrics_servers(self) -> None:
        servers, self._metrics_servers = self._metrics_servers, []
        for server in servers:
            await server.close()

    def breaker_for(self, endpoint: Endpoint) -> CircuitBreaker:
        """The circuit breaker shared by the connections to ``endpoint``."""
        return self._breakers.for_endpoint(endpoint)

    def circuit_breaker(self, host: str, port: int, transport: TransportArg = "tcp",
                        ssl: bool = False) -> CircuitBreakerState:
        """The breaker state of an endpoint (closed with zero counts if never used)."""
        return self._breakers.snapshot(Endpoint(TransportKind.parse(transport), host, port, ssl),
                                       self._wall_offset())

    @staticmethod
    def _wall_offset() -> float:
        return time.time() - asyncio.get_running_loop().time()


def _listener_datagram(listeners: list[Listener]) -> list[dict[str, int]]:
    """The loss counters of the UDP listeners (stream listeners have none)."""
    out = []
    for listener in listeners:
        counters = getattr(listener.server, "counters", None)
        if counters is not None:
            out.append(counters())
    return out
