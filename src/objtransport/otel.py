"""OpenTelemetry export, the public entry point (extra ``objtransport[otel]``)::

    from objtransport.otel import instrument

    handle = instrument(net)                 # the global MeterProvider, or meter_provider=
    ...
    handle.close()

    await net.send_data(conn, data, headers=inject())      # the current span's traceparent
    ctx = extract(msg)                                     # on the far side: its context

See :mod:`objtransport.exporters.otel` for the instruments.
"""

from __future__ import annotations

try:
    from .exporters.otel import Instrumentation, extract, inject, instrument
except ImportError as exc:  # pragma: no cover - depends on the installation
    if not (exc.name or "").startswith("opentelemetry"):
        raise
    raise ImportError("objtransport.otel needs opentelemetry-api: "
                      "pip install 'objtransport[otel]'") from exc

__all__ = ["Instrumentation", "extract", "inject", "instrument"]
