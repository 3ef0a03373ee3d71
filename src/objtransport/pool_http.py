"""The worker pool parent's HTTP endpoint (:class:`PoolEndpoint`): the workers' metrics added
up, for Prometheus, and readiness / liveness for an orchestrator (Kubernetes probes, a load
balancer's health check).

* ``GET /metrics``: the service totals of every worker, added up at each scrape (the parent
  asks each worker over its pipe; :func:`~objtransport.workers.aggregate`), as Prometheus
  text, with the same ``objtransport_`` names as the single-process exporter (without the
  ``transport``/``role`` labels) plus ``objtransport_workers`` and
  ``objtransport_worker_restarts_total``.
* ``GET /ready``: 200 while every worker listens, 503 otherwise (starting, one restarting,
  stopping): point a readiness probe here, so that a pod joins the Service's DNS answer (and
  a ``dns:///`` group) only once it can take connections.
* ``GET /healthz``: 200 while at least one worker listens (a liveness probe).

No third-party library: the text format of a few counters is written by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .http_endpoint import HttpEndpoint

if TYPE_CHECKING:
    from .workers import WorkerPool

__all__ = ["PoolEndpoint"]

P = "objtransport_"
#: the Prometheus text format, version 0.0.4 (also fine for the probes' one-line answers)
TEXT = "text/plain; version=0.0.4"
#: Prometheus name -> (TransportMetrics field, type, help)
_FIGURES = {
    "connections_active": ("active_connections", "gauge", "Connected connections"),
    "opened_connections": ("total_connections", "counter", "Connections opened"),
    "sent_bytes": ("total_bytes_sent", "counter", "Payload bytes sent"),
    "received_bytes": ("total_bytes_received", "counter", "Payload bytes received"),
    "sent_messages": ("total_messages", "counter", "Messages sent"),
    "received_messages": ("messages_received", "counter", "Messages received"),
    "reconnects": ("reconnects", "counter", "Reconnections"),
    "errors": ("errors", "counter", "Connection errors"),
    "handler_errors": ("handler_errors", "counter", "Handler exceptions"),
    "connections_refused": ("connections_refused", "counter", "Connections refused"),
}


class PoolEndpoint(HttpEndpoint):
    """``/metrics``, ``/ready`` and ``/healthz`` for a :class:`WorkerPool` (port 0: any
    free port, read ``.port`` after ``start()``)."""

    def __init__(self, pool: WorkerPool, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(self._answer, host, port)
        self.pool = pool

    async def metrics_text(self) -> str:
        """The Prometheus text of the added-up figures."""
        m = await self.pool.metrics()
        lines = [f"# HELP {P}workers Worker processes listening",
                 f"# TYPE {P}workers gauge", f"{P}workers {self.pool.listening}",
                 f"# HELP {P}worker_restarts Workers restarted after they died",
                 f"# TYPE {P}worker_restarts counter",
                 f"{P}worker_restarts_total {self.pool.restarts}"]
        for name, (field, kind, help_) in _FIGURES.items():
            sample = f"{P}{name}_total" if kind == "counter" else f"{P}{name}"
            lines += [f"# HELP {P}{name} {help_} (all workers)", f"# TYPE {P}{name} {kind}",
                      f"{sample} {getattr(m, field)}"]
        return "\n".join(lines) + "\n"

    async def _answer(self, path: str) -> tuple[str, str, bytes]:
        pool = self.pool
        if path == "/metrics":
            return "200 OK", TEXT, (await self.metrics_text()).encode()
        if path == "/ready":
            ok = pool.listening == pool.workers and not pool.stopping
            return ("200 OK" if ok else "503 Service Unavailable", TEXT,
                    f"{pool.listening}/{pool.workers} workers listening\n".encode())
        if path == "/healthz":
            ok = pool.listening > 0
            return ("200 OK" if ok else "503 Service Unavailable", TEXT,
                    f"{pool.listening} workers listening\n".encode())
        return "404 Not Found", TEXT, b"try /metrics, /ready or /healthz\n"
