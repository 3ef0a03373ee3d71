"""OpenTelemetry export: ``objtransport.otel.instrument()`` read with the SDK's in-memory
reader."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from objtransport import Message, NetworkTransport
from objtransport.otel import instrument
from objtransport.testing import eventually


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "objtransport"
            for metric in sm.metrics:
                out[metric.name] = [(dict(p.attributes or {}),
                                     p.value if hasattr(p, "value") else (p.count, p.sum))
                                    for p in metric.data.data_points]
    return out


def _get(points: dict[str, list[tuple[dict[str, Any], float]]], name: str,
         **attrs: str) -> float:
    return next(v for a, v in points[name] if a == attrs)


async def test_instrument_exports_the_same_figures_as_get_metrics() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with NetworkTransport(keepalive_interval=0.05) as net:
        handle = instrument(net, meter_provider=provider)

        async def echo(msg: Message) -> None:
            await net.send_data(msg.conn_id, msg.data)

        listener = await net.listen("127.0.0.1", 0, handler=echo)
        conn = await net.connect("127.0.0.1", listener.port)
        for _ in range(10):
            await net.send_data(conn, b"0123456789")
        for _ in range(10):
            await net.receive(conn, timeout=5)
        await eventually(lambda: net.get_metrics().latency_samples >= 2)
        points = _points(reader)
        m = net.get_metrics()
        handle.close()
    provider.shutdown()
    assert _get(points, "objtransport.sent_messages", transport="tcp", role="client") == 10
    assert _get(points, "objtransport.sent_bytes", transport="tcp", role="client") == 100
    assert _get(points, "objtransport.received_bytes", transport="tcp", role="server") == 100
    assert sum(v for _, v in points["objtransport.sent_bytes"]) == m.total_bytes_sent
    assert _get(points, "objtransport.connections", transport="tcp", role="client",
                state="connected") == 1
    assert _get(points, "objtransport.events", type="Connected", transport="tcp") == 1
    assert _get(points, "objtransport.events", type="Accepted", transport="tcp") == 1
    assert _get(points, "objtransport.events.dropped") == 0
    # RTT is a histogram of the RttMeasured events (one sample per PONG), per transport
    count, total = _get(points, "objtransport.rtt", transport="tcp")  # type: ignore[misc]
    assert 2 <= count <= m.latency_samples
    assert 0 < total < count  # loopback: well under a second each
    assert _get(points, "objtransport.listeners") == 1
    assert _get(points, "objtransport.handler_errors") == 0


async def test_counters_stay_monotonic_after_connections_go() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with NetworkTransport() as net:
        handle = instrument(net, meter_provider=provider)
        listener = await net.listen("127.0.0.1", 0)
        conn = await net.connect("127.0.0.1", listener.port)
        await net.send_data(conn, b"abc")
        await net.receive(timeout=5)
        before = _points(reader)
        await net.disconnect(conn)
        await eventually(lambda: net.get_metrics().active_connections == 0)
        after = _points(reader)
        handle.close()
    provider.shutdown()
    for name in ("objtransport.sent_bytes", "objtransport.received_messages"):
        assert sum(v for _, v in after[name]) >= sum(v for _, v in before[name]) > 0
    assert _get(after, "objtransport.sent_bytes", transport="tcp", role="client") == 3
    assert _get(after, "objtransport.events", type="Disconnected", transport="tcp") >= 1


async def test_a_span_crosses_the_wire_in_the_headers() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from objtransport.otel import extract, inject

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    handled = asyncio.Event()
    async with NetworkTransport() as net:
        def handle(msg: Message) -> None:
            assert msg.headers is not None and "traceparent" in msg.headers
            with tracer.start_as_current_span("handle", context=extract(msg)):
                handled.set()

        listener = await net.listen("127.0.0.1", 0, handler=handle)
        conn = await net.connect("127.0.0.1", listener.port)
        with tracer.start_as_current_span("send"):
            await net.send_data(conn, b"traced", headers=inject({"kind": "demo"}))
        await asyncio.wait_for(handled.wait(), 5)
    provider.shutdown()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    send, handled_span = by_name["send"], by_name["handle"]
    assert handled_span.context.trace_id == send.context.trace_id
    assert handled_span.parent is not None
    assert handled_span.parent.span_id == send.context.span_id
    assert handled_span.parent.is_remote
