"""``ServiceParts``: what :class:`~objtransport.NetworkTransport` is made of, as the API
mixins (``api_*.py``) see it.

The facade's public methods are grouped by topic in small mixin classes (sending,
request/reply and receiving, groups, observing); each reads the parts the service composes
in its ``__init__``. This base declares those parts (types only: the service builds them)
and the two checks every group uses. The mixins hold no state of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import ConnectionNotFound, ServiceNotRunning

if TYPE_CHECKING:
    from .breakers import BreakerRegistry
    from .config import Options
    from .connection import Connection, Hooks
    from .counters import ServiceTotals
    from .events import EventHub
    from .exporters.prometheus import MetricsServer
    from .groups import Groups
    from .inbox import Inbox
    from .pool_manager import PoolManager
    from .registry import Registry
    from .requests import Exchange, MessagingCounters, Responder
    from .sansio.metrics import LatencyHistogram
    from .sessions import SessionKeeper

__all__ = ["ServiceParts"]


class ServiceParts:
    """The parts of the service the API mixins read (built by ``NetworkTransport``)."""

    options: Options
    _running: bool
    _conns: dict[int, Connection]  # the registry's: the per-message paths look ids up here
    _registry: Registry
    _groups: Groups
    _pools: PoolManager | None
    _breakers: BreakerRegistry
    _events: EventHub
    _inbox: Inbox
    _totals: ServiceTotals
    _latency: LatencyHistogram
    _messaging: MessagingCounters
    _exchange: Exchange
    _responder: Responder
    _sessions: SessionKeeper
    _hooks: Hooks
    #: the metrics endpoints ``serve_metrics`` started: closed by ``stop()``
    _metrics_servers: list[MetricsServer]

    def _check_running(self) -> None:
        if not self._running:
            raise ServiceNotRunning("NetworkTransport is not running: use `async with "
                                    "NetworkTransport() as net` or `await net.start()`")

    def _get(self, conn_id: int) -> Connection:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        return conn
