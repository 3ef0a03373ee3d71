"""Prometheus export (extra ``objtransport[prometheus]``, on ``prometheus-client``).

:class:`PrometheusCollector` is a custom collector: each scrape reads the service through
its public API (:class:`~objtransport.exporters.figures.FigureReader`) and yields metric
families named by Prometheus conventions (``objtransport_`` prefix, base units, ``_total``
counters), labelled by ``transport`` and ``role``. Per-connection families (label
``conn_id``) are opt-in: ``per_connection=True``. ::

    from prometheus_client import CollectorRegistry, generate_latest
    from objtransport.metrics import PrometheusCollector

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(net))
    print(generate_latest(registry).decode())

:func:`serve_metrics` (``await net.serve_metrics(9100)``) serves ``/metrics`` over HTTP on
the service's own event loop, so every read happens on the loop thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..http_endpoint import HttpEndpoint
from .figures import COUNTERS, FigureReader, Figures

if TYPE_CHECKING:
    from ..service import NetworkTransport

__all__ = ["MetricsServer", "PrometheusCollector", "serve_metrics"]

P = "objtransport_"
LABELS = ["transport", "role"]
#: UDP figures that are levels, not counts
_UDP_GAUGES = {"reassembly_bytes", "reassembly_peak", "peers"}
_HELP = {
    "sent_bytes": "Payload bytes sent",
    "received_bytes": "Payload bytes received",
    "sent_messages": "Messages sent",
    "received_messages": "Messages received",
    "resent_messages": "Messages sent again after a session resume",
    "duplicates_dropped": "Resent messages dropped because they were already delivered",
    "unconfirmed_messages": "Messages in doubt after the peer lost the session",
    "reconnects": "Reconnections of client connections",
    "throttle_wait_seconds": "Seconds spent waiting for bandwidth tokens",
    "connection_errors": "Errors seen on connections",
    "opened_connections": "Connections opened or accepted",
}


class PrometheusCollector(Collector):
    """Yields objtransport's figures at every scrape; register it with any registry.

    ``per_connection=True`` adds families labelled by ``conn_id`` (one series per live
    connection: mind the cardinality).
    """

    def __init__(self, net: NetworkTransport, *, per_connection: bool = False) -> None:
        self.net = net
        self.per_connection = per_connection
        self._reader = FigureReader(net)

    def close(self) -> None:
        """Stop following the service's events (after unregistering the collector)."""
        self._reader.close()

    def describe(self) -> list[Metric]:
        return []  # families depend on what is running; registered unchecked

    def collect(self) -> Iterator[Metric]:
        f = self._reader.read()
        yield from self._connections(f)
        yield from self._counters(f)
        yield from self._service(f)
        yield from self._events(f)
        if self.per_connection:
            yield from self._per_connection(f)

    @staticmethod
    def _connections(f: Figures) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(P + "connections", "Live connections by state",
                                     labels=[*LABELS, "state"])
        active = GaugeMetricFamily(P + "connections_active", "Connected connections",
                                   labels=LABELS)
        actives: dict[tuple[str, str], int] = {}
        for (transport, role, state), n in sorted(f.states.items()):
            by_state.add_metric([transport, role, state], n)
            if state == "connected":
                actives[(transport, role)] = actives.get((transport, role), 0) + n
        for (transport, role), n in sorted(actives.items()):
            active.add_metric([transport, role], n)
        breakers = GaugeMetricFamily(
            P + "circuit_breaker_connections",
            "Live connections whose endpoint's circuit breaker is in this state",
            labels=[*LABELS, "state"])
        for key, n in sorted(f.breakers.items()):
            breakers.add_metric(list(key), n)
        yield from (by_state, active, breakers)

    @staticmethod
    def _counters(f: Figures) -> Iterator[Metric]:
        for name in [*COUNTERS, "opened_connections"]:
            family = CounterMetricFamily(P + name, _HELP[name], labels=LABELS)
            for (transport, role), values in sorted(f.counters.items()):
                if name in values:
                    family.add_metric([transport, role], values[name])
            yield family

    @staticmethod
    def _service(f: Figures) -> Iterator[Metric]:
        m = f.service
        buckets = [(repr(le), float(n)) for le, n in sorted(m.latency_buckets.items())]
        rtt = HistogramMetricFamily(
            P + "rtt_seconds", "Round-trip time of keepalive PING/PONG (and UDP PONGs)",
            buckets=[*buckets, ("+Inf", float(m.latency_samples))],
            sum_value=m.latency_sum_seconds)
        yield rtt
        queued = GaugeMetricFamily(P + "queued_bytes", "Bytes waiting to be sent, by priority",
                                   labels=["priority"])
        for prio, nbytes in sorted(m.queued_bytes_by_priority.items()):
            queued.add_metric([prio], nbytes)
        yield queued
        for name, value, text in (
                ("handler_errors", m.handler_errors, "Exceptions raised by message handlers"),
                ("errors", m.errors, "Connection errors of the service"),
                ("connections_refused", m.connections_refused,
                 "Connections refused by listeners (max_connections)")):
            yield CounterMetricFamily(P + name, text, value=value)
        for name, value, text in (
                ("listeners", m.listeners, "Open listeners"),
                ("pooled_connections", m.pooled_connections, "Connections in send_to pools"),
                ("inbox_messages", m.messages_queued, "Messages waiting for receive()")):
            yield GaugeMetricFamily(P + name, text, value=value)
        for name, value in sorted(m.datagram.items()):
            if name in _UDP_GAUGES:
                yield GaugeMetricFamily(P + f"udp_{name}", f"UDP {name.replace('_', ' ')}",
                                        value=value)
            else:
                yield CounterMetricFamily(P + f"udp_{name}", f"UDP {name.replace('_', ' ')}",
                                          value=value)

    def _events(self, f: Figures) -> Iterator[Metric]:
        events = CounterMetricFamily(P + "events", "Lifecycle events (objtransport.events)",
                                     labels=["type", "transport"])
        for (kind, transport), n in sorted(f.events.items()):
            events.add_metric([kind, transport], n)
        yield events
        yield CounterMetricFamily(P + "events_dropped",
                                  "Events the exporter lost because it was not scraped in time",
                                  value=f.events_dropped)
        states: dict[str, int] = {}
        for state in f.breakers_by_endpoint.values():
            states[state] = states.get(state, 0) + 1
        breakers = GaugeMetricFamily(P + "circuit_breakers",
                                     "Endpoints whose circuit breaker changed, by state now",
                                     labels=["state"])
        for state, n in sorted(states.items()):
            breakers.add_metric([state], n)
        yield breakers
        if self.per_connection:
            by_endpoint = GaugeMetricFamily(
                P + "circuit_breaker_open", "1 while the endpoint's breaker is open",
                labels=["endpoint"])
            for endpoint, state in sorted(f.breakers_by_endpoint.items()):
                by_endpoint.add_metric([endpoint], 1.0 if state == "open" else 0.0)
            yield by_endpoint

    @staticmethod
    def _per_connection(f: Figures) -> Iterator[Metric]:
        labels = ["conn_id", "transport", "role", "peer"]
        fams = {name: GaugeMetricFamily(P + f"connection_{name}", f"Per connection: {name}",
                                        labels=labels)
                for name in ("bytes_sent", "bytes_received", "messages_sent",
                             "messages_received", "rtt_seconds", "pending_bytes",
                             "unacked_bytes")}
        for i in f.connections:
            values = [str(i.id), i.transport, i.role, f"{i.host}:{i.port}"]
            fams["bytes_sent"].add_metric(values, i.bytes_sent)
            fams["bytes_received"].add_metric(values, i.bytes_received)
            fams["messages_sent"].add_metric(values, i.messages_sent)
            fams["messages_received"].add_metric(values, i.messages_received)
            fams["pending_bytes"].add_metric(values, i.pending_bytes)
            fams["unacked_bytes"].add_metric(values, i.unacked_bytes)
            if i.rtt_ms is not None:
                fams["rtt_seconds"].add_metric(values, i.rtt_ms / 1000.0)
        yield from fams.values()


class MetricsServer(HttpEndpoint):
    """A minimal HTTP/1.1 endpoint for ``GET /metrics`` on the running event loop."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 collector: PrometheusCollector | None = None) -> None:
        super().__init__(self._answer, host, port)
        self.registry = registry
        #: the collector this server made for itself: closed with it (its event
        #: subscription ends)
        self.collector = collector

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        """Stop serving (idempotent); the service's ``stop()`` calls it for the servers
        ``serve_metrics`` started."""
        if self.collector is not None:
            self.registry.unregister(self.collector)
            self.collector.close()
            self.collector = None
        await super().close()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path not in ("/metrics", "/"):
            return "404 Not Found", "text/plain", b"try /metrics\n"
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)


async def serve_metrics(net: NetworkTransport, port: int = 9100, host: str = "127.0.0.1",
                        *, per_connection: bool = False) -> MetricsServer:
    """Serve ``net``'s figures at ``http://host:port/metrics`` (``port=0``: any free port,
    read ``server.port``). Close it with ``await server.close()``. Prefer
    ``net.serve_metrics()``: the service then owns the server and closes it on ``stop()``."""
    registry = CollectorRegistry(auto_describe=False)
    collector = PrometheusCollector(net, per_connection=per_connection)
    registry.register(collector)
    return await MetricsServer(registry, host, port, collector).start()
