"""OpenTelemetry export (extra ``objtransport[otel]``, on ``opentelemetry-api``).

:func:`instrument` creates observable instruments on a meter; at each collection they read the
service through its public API and event stream (:class:`~.figures.FigureReader`), the same
figures as the Prometheus export, with the attributes ``transport`` and ``role``::

    from opentelemetry.sdk.metrics import MeterProvider
    from objtransport.otel import instrument

    handle = instrument(net, meter_provider=MeterProvider(metric_readers=[reader]))
    ...
    handle.close()

Traces: :func:`inject` adds the current span's W3C ``traceparent`` (and ``tracestate``) to a
message's headers and :func:`extract` reads it back on the far side, so a span crosses the
wire (native framing: headers need it)::

    with tracer.start_as_current_span("send"):
        await net.send_data(conn, payload, headers=inject())
    ...                                                    # on the receiving side
    with tracer.start_as_current_span("handle", context=extract(msg)):
        ...

A collection from an exporting thread (``PeriodicExportingMetricReader``) hands the read to the
service's event loop. RTT is the histogram ``objtransport.rtt`` (seconds, attribute
``transport``): each ``RttMeasured`` event of the service's stream is one sample, recorded at
the next collection (before the histogram is collected, so it is in that one). A sample the
subscription lost (a collection later than ``maxsize`` events) is counted in
``objtransport.events.dropped``, not recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import metrics, propagate
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

from .. import __version__
from .figures import COUNTERS, FigureReader, Figures

if TYPE_CHECKING:
    from ..sansio.events import Message
    from ..service import NetworkTransport

__all__ = ["Instrumentation", "extract", "inject", "instrument"]

_UNITS = {"sent_bytes": "By", "received_bytes": "By", "throttle_wait_seconds": "s"}

Read = Callable[[Figures], Iterable[Observation]]


class Instrumentation:
    """What :func:`instrument` set up; ``close()`` stops following the service's events
    (the instruments then report the last figures they read)."""

    def __init__(self, net: NetworkTransport, meter: Meter) -> None:
        self.net = net
        self.meter = meter
        self.reader = FigureReader(net)
        self._closed = False
        self._last: Figures | None = None
        #: RTT samples from the event stream, recorded once per read that brought them
        self.rtt: Histogram = meter.create_histogram(
            "objtransport.rtt", unit="s", description="round-trip time of keepalive pings")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.reader.close()

    def figures(self) -> Figures:
        if self._closed and self._last is not None:
            return self._last
        figures = self.reader.read()
        if figures is not self._last:  # a fresh read (not the reader's cached one)
            for rtt, transport in figures.rtt_samples:
                self.rtt.record(rtt, {"transport": transport})
        self._last = figures
        return figures

    def callback(self, read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return list(read(self.figures()))
        return observe


def _labelled(name: str) -> Read:
    def read(f: Figures) -> Iterable[Observation]:
        for (transport, role), values in f.counters.items():
            if name in values:
                yield Observation(values[name], {"transport": transport, "role": role})
    return read


def _states(f: Figures) -> Iterable[Observation]:
    for (transport, role, state), n in f.states.items():
        yield Observation(n, {"transport": transport, "role": role, "state": state})


def _events(f: Figures) -> Iterable[Observation]:
    for (kind, transport), n in f.events.items():
        yield Observation(n, {"type": kind, "transport": transport})


def _breakers(f: Figures) -> Iterable[Observation]:
    states: dict[str, int] = {}
    for state in f.breakers_by_endpoint.values():
        states[state] = states.get(state, 0) + 1
    for state, n in states.items():
        yield Observation(n, {"state": state})


def _queued(f: Figures) -> Iterable[Observation]:
    for prio, n in f.service.queued_bytes_by_priority.items():
        yield Observation(n, {"priority": prio})


def _udp(f: Figures) -> Iterable[Observation]:
    for name, n in f.service.datagram.items():
        yield Observation(n, {"counter": name})


def _one(get: Callable[[Figures], float]) -> Read:
    def read(f: Figures) -> Iterable[Observation]:
        yield Observation(get(f))
    return read


def instrument(net: NetworkTransport, meter_provider: MeterProvider | None = None
               ) -> Instrumentation:
    """Export ``net``'s figures as OpenTelemetry instruments on ``meter_provider`` (the
    global one when None). Returns the handle; ``close()`` it when done."""
    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("objtransport", __version__)
    inst = Instrumentation(net, meter)
    cb = inst.callback
    for name in [*COUNTERS, "opened_connections"]:
        meter.create_observable_counter(f"objtransport.{name}", [cb(_labelled(name))],
                                        unit=_UNITS.get(name, "1"),
                                        description=name.replace("_", " "))
    meter.create_observable_up_down_counter(
        "objtransport.connections", [cb(_states)], unit="1",
        description="live connections by state")
    meter.create_observable_counter("objtransport.events", [cb(_events)], unit="1",
                                    description="lifecycle events by type")
    meter.create_observable_counter(
        "objtransport.events.dropped", [cb(_one(lambda f: f.events_dropped))], unit="1",
        description="events the exporter lost because it was not read in time")
    meter.create_observable_gauge("objtransport.circuit_breakers", [cb(_breakers)], unit="1",
                                  description="endpoints whose breaker changed, by state now")
    meter.create_observable_gauge("objtransport.queued_bytes", [cb(_queued)], unit="By",
                                  description="bytes waiting to be sent, by priority")
    meter.create_observable_gauge("objtransport.udp", [cb(_udp)], unit="1",
                                  description="UDP datagram figures by counter name")
    for name, get, unit in (
            ("listeners", lambda f: f.service.listeners, "1"),
            ("inbox_messages", lambda f: f.service.messages_queued, "1")):
        meter.create_observable_gauge(f"objtransport.{name}", [cb(_one(get))], unit=unit)
    for name, get in (("handler_errors", lambda f: f.service.handler_errors),
                      ("errors", lambda f: f.service.errors),
                      ("connections_refused", lambda f: f.service.connections_refused)):
        meter.create_observable_counter(f"objtransport.{name}", [cb(_one(get))], unit="1")
    return inst


def inject(headers: Mapping[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """``headers`` plus the current trace context (``traceparent``, ``tracestate``) as the
    global propagator writes it: pass the result as ``send_data(..., headers=...)``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {**(headers or {}), **carrier}


def extract(msg: Message) -> Context:
    """The trace context a received message's headers carry (an empty context if none):
    ``tracer.start_as_current_span(name, context=extract(msg))`` continues the sender's
    trace."""
    carrier = {k: v.decode("latin-1") if isinstance(v, bytes) else str(v)
               for k, v in (msg.headers or {}).items()}
    return propagate.extract(carrier)
