"""Prometheus export, the public entry point (extra ``objtransport[prometheus]``)::

    from prometheus_client import CollectorRegistry
    from objtransport.metrics import PrometheusCollector

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(net))      # or: await net.serve_metrics(9100)

See :mod:`objtransport.exporters.prometheus` for the families.
"""

from __future__ import annotations

try:
    from .exporters.prometheus import MetricsServer, PrometheusCollector, serve_metrics
except ImportError as exc:  # pragma: no cover - depends on the installation
    if exc.name != "prometheus_client":
        raise
    raise ImportError("objtransport.metrics needs prometheus-client: "
                      "pip install 'objtransport[prometheus]'") from exc

__all__ = ["MetricsServer", "PrometheusCollector", "serve_metrics"]
