"""Prometheus export: the collector in any registry, and ``net.serve_metrics()`` scraped over
HTTP and parsed with ``prometheus_client.parser``."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from objtransport import ConnectError, Message, NetworkTransport
from objtransport.metrics import PrometheusCollector
from objtransport.testing import eventually


def _scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


async def _echo_pair(net: NetworkTransport, transport: str = "tcp") -> tuple[int, int]:
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data)

    listener = await net.listen("127.0.0.1", 0, handler=echo, transport=transport)
    conn = await net.connect("127.0.0.1", listener.port, transport=transport)
    return listener.port, conn


async def test_serve_metrics_scraped_over_http_matches_get_metrics() -> None:
    async with NetworkTransport(keepalive_interval=0.05) as net:
        server = await net.serve_metrics(0)  # subscribes to the events from here on
        _, conn = await _echo_pair(net)
        for i in range(20):
            await net.send_data(conn, b"x" * (i + 1))
        for _ in range(20):
            await net.receive(conn, timeout=5)
        await eventually(lambda: net.get_metrics().latency_samples >= 2, timeout=5)
        try:
            before = net.get_metrics().latency_samples
            ctype, text = await asyncio.to_thread(_scrape, server.url)
            m = net.get_metrics()
        finally:
            await server.close()
    assert ctype.startswith("text/plain; version=")
    s = _samples(text)
    # labelled by transport and role; client and server sides both counted
    assert _value(s, "objtransport_sent_messages_total", transport="tcp", role="client") == 20
    assert _value(s, "objtransport_received_messages_total", transport="tcp",
                  role="server") == 20
    assert _value(s, "objtransport_sent_bytes_total", transport="tcp",
                  role="client") == sum(range(1, 21))
    # the labelled figures add up to the service's totals
    assert _sum(s, "objtransport_sent_bytes_total") == m.total_bytes_sent
    assert _sum(s, "objtransport_received_messages_total") == m.messages_received
    assert _sum(s, "objtransport_opened_connections_total") == m.total_connections == 2
    assert _value(s, "objtransport_connections_active", transport="tcp", role="client") == 1
    assert _value(s, "objtransport_connections", transport="tcp", role="server",
                  state="connected") == 1
    assert _value(s, "objtransport_circuit_breaker_connections", transport="tcp",
                  role="client", state="closed") == 1
    # RTT: a histogram in seconds; cumulative buckets, +Inf = count
    count = s[("objtransport_rtt_seconds_count", frozenset())]
    # keepalive_interval=0.05: RTT samples may land between the scrape and get_metrics
    assert 2 <= before <= count <= m.latency_samples
    assert _value(s, "objtransport_rtt_seconds_bucket", le="+Inf") == count
    assert _value(s, "objtransport_rtt_seconds_bucket", le="1.0") == count  # loopback < 1 s
    les = sorted((float(dict(k)["le"]), v) for (n, k), v in s.items()
                 if n == "objtransport_rtt_seconds_bucket")
    assert [v for _, v in les] == sorted(v for _, v in les)  # cumulative
    assert 0 < s[("objtransport_rtt_seconds_sum", frozenset())] < count
    # the event stream: connections, counted by type and transport
    assert _value(s, "objtransport_events_total", type="Connected", transport="tcp") == 1
    assert _value(s, "objtransport_events_total", type="Accepted", transport="tcp") == 1
    assert _value(s, "objtransport_events_total", type="Listening", transport="tcp") == 1
    assert s[("objtransport_events_dropped_total", frozenset())] == 0
    assert {"objtransport_handler_errors_total", "objtransport_queued_bytes",
            "objtransport_reconnects_total", "objtransport_resent_messages_total",
            "objtransport_duplicates_dropped_total",
            "objtransport_unconfirmed_messages_total",
            "objtransport_throttle_wait_seconds_total"} <= {n for n, _ in s}
    # per-connection series are opt-in
    assert not any("conn_id" in dict(labels) for _, labels in s)


async def test_closed_connections_stay_counted_and_per_connection_is_opt_in() -> None:
    async with NetworkTransport() as net:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PrometheusCollector(net, per_connection=True))
        _, conn = await _echo_pair(net)
        await net.send_data(conn, b"hello")
        await net.receive(conn, timeout=5)
        first = _samples(generate_latest(registry).decode())
        assert _value(first, "objtransport_connection_bytes_sent", conn_id=str(conn),
                      transport="tcp", role="client",
                      peer=next(dict(k)["peer"] for n, k in first
                                if n == "objtransport_connection_bytes_sent")) == 5
        await net.disconnect(conn)
        # a connection that opened and closed between two scrapes: counted under "unknown"
        _, other = await _echo_pair(net)
        await net.send_data(other, b"12345678")
        await net.receive(other, timeout=5)
        await net.disconnect(other)
        await eventually(lambda: net.get_metrics().active_connections == 0)
        after = _samples(generate_latest(registry).decode())
        m = net.get_metrics()
    assert _value(after, "objtransport_sent_bytes_total", transport="tcp", role="client") == 5
    assert _sum(after, "objtransport_sent_bytes_total") == m.total_bytes_sent == 5 + 5 + 8 + 8
    assert _value(after, "objtransport_sent_bytes_total", transport="unknown",
                  role="unknown") == 16
    assert not any(n == "objtransport_connection_bytes_sent" for n, _ in after)  # all gone


async def test_udp_loss_counters_and_handler_errors_are_exported() -> None:
    async with NetworkTransport() as net:
        def broken(msg: Message) -> None:
            raise RuntimeError("handler bug")

        listener = await net.listen("127.0.0.1", 0, transport="udp", handler=broken)
        conn = await net.connect("127.0.0.1", listener.port, transport="udp")
        for _ in range(3):
            await net.send_data(conn, b"d")
        await eventually(lambda: net.get_metrics().handler_errors >= 3)
        server = await net.serve_metrics(0)
        async with server:
            _, text = await asyncio.to_thread(_scrape, server.url)
    s = _samples(text)
    assert s[("objtransport_handler_errors_total", frozenset())] == 3
    assert s[("objtransport_udp_datagrams_sent_total", frozenset())] >= 3
    assert s[("objtransport_udp_datagrams_received_total", frozenset())] >= 3
    assert _value(s, "objtransport_sent_messages_total", transport="udp", role="client") == 3


async def test_events_dropped_breaker_changes_and_a_scrape_from_another_thread() -> None:
    async with NetworkTransport(failure_threshold=1, reconnect_interval=0.05,
                                max_reconnect_attempts=0) as net:
        collector = PrometheusCollector(net)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        listener = await net.listen("127.0.0.1", 0)
        port = listener.port
        await listener.close()
        with pytest.raises(ConnectError):  # nothing listens: the breaker opens
            await net.connect("127.0.0.1", port, timeout=1)
        # prometheus_client's own HTTP server scrapes from its thread: the read is handed
        # to the loop, which must stay free meanwhile
        text = (await asyncio.to_thread(generate_latest, registry)).decode()
        collector.close()
    s = _samples(text)
    assert _value(s, "objtransport_circuit_breakers", state="open") == 1
    assert _value(s, "objtransport_events_total", type="BreakerChanged", transport="tcp") == 1
    assert _value(s, "objtransport_events_total", type="ListenerClosed", transport="tcp") == 1


async def test_a_lagging_exporter_counts_the_events_it_lost() -> None:
    from objtransport.exporters.figures import FigureReader

    async with NetworkTransport() as net:
        reader = FigureReader(net, maxsize=2)
        for _ in range(3):
            listener = await net.listen("127.0.0.1", 0)
            await listener.close()
        f = reader.read()
        reader.close()
    assert f.events_dropped == 4  # 6 events, room for 2
    assert sum(f.events.values()) == 2


async def test_the_endpoint_answers_404_elsewhere_and_closes() -> None:
    async with NetworkTransport() as net:
        server = await net.serve_metrics(0, "127.0.0.1")
        url = server.url.replace("/metrics", "/nope")
        with pytest.raises(urllib.error.HTTPError) as err:
            await asyncio.to_thread(_scrape, url)
        assert err.value.code == 404
        err.value.close()
        await server.close()
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(_scrape, server.url)


async def test_the_service_owns_its_metrics_endpoint_and_closes_it_on_stop() -> None:
    net = await NetworkTransport().start()
    try:
        server = await net.serve_metrics(0)
        _, text = await asyncio.to_thread(_scrape, server.url)
        assert "objtransport_events_dropped_total" in text
        assert server.collector is not None
    finally:
        await net.stop()
    assert not server.serving and server.collector is None  # its event subscription ended
    with pytest.raises(urllib.error.URLError):  # the port no longer answers
        await asyncio.to_thread(_scrape, server.url)
