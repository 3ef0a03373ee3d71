"""Exporters: they read the service through its public API (``get_metrics()``,
``connections()``, ``connection_info()``) and its event stream, never its internals.

* :mod:`.prometheus` (extra ``objtransport[prometheus]``): a collector and an HTTP endpoint;
* :mod:`.otel` (extra ``objtransport[otel]``): OpenTelemetry instruments;
* :mod:`.figures`: what both publish, grouped by transport and role.
"""
