"""Snapshots for the user: one connection (:class:`ConnectionInfo`) and the whole service
(:class:`TransportMetrics`). Built on demand from the parts' public state; nothing here runs
on the per-message path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .counters import ServiceTotals, add_counts
from .endpoint import ConnState
from .sansio.breaker import CircuitBreaker, CircuitBreakerState
from .sansio.events import PRIORITY_NAMES
from .sansio.metrics import LatencyHistogram

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ConnectionInfo", "KeptSessions", "TransportMetrics", "breaker_snapshot",
           "connection_info", "qos_snapshot", "transport_metrics"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one connection (``NetworkTransport.connection_info``)."""

    id: int
    transport: str
    host: str
    port: int
    state: str
    last_activity: float  # wall-clock time (time.time()) of the last send or receive
    bytes_sent: int  # payload bytes handed to the socket, not those still queued
    bytes_received: int
    message_count: int  # messages sent + received
    error_count: int
    circuit_breaker: CircuitBreakerState
    messages_sent: int = 0
    messages_received: int = 0
    framing: str = "native"
    role: str = "client"
    reconnects: int = 0
    rtt_ms: float | None = None
    pending_bytes: int = 0
    tls: bool = False
    #: QoS and throttling, per priority name ("control", "high", "normal", "low")
    queued_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_messages_by_priority: dict[str, int] = field(default_factory=dict)
    send_rate: float = 0.0  # bytes/s over about the last second
    throttle_wait: float = 0.0  # seconds spent waiting for bandwidth tokens
    max_bandwidth: float = 0.0
    max_receive_bandwidth: float = 0.0
    #: lossless sessions (native framing)
    unacked_bytes: int = 0  # sent, not yet acknowledged by the peer
    unacked_messages: int = 0
    unconfirmed: int = 0  # messages in doubt since the peer lost the session (total)
    duplicates_dropped: int = 0  # resent messages we had already delivered
    resent: int = 0  # messages we sent again after a resume
    bytes_queued: int = 0  # payload bytes the application queued (sent or not yet)
    #: UDP: datagrams sent and received, and what was lost (see docs/protocol.md section 6)
    datagram: dict[str, int] = field(default_factory=dict)
    #: an accepted peer's identity (``listen(..., authenticate=...)``, or the subject of
    #: its client certificate on mutual TLS); None otherwise
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class TransportMetrics:
    """Service-wide figures (``NetworkTransport.get_metrics``). Byte counts are payload bytes;
    ``total_messages`` counts messages sent, as in the original module."""

    total_connections: int
    active_connections: int
    total_bytes_sent: int
    total_bytes_received: int
    total_messages: int
    messages_received: int
    avg_latency_ms: float
    p50_latency_ms: float = 0.0
    p99_latency_ms: float = 0.0
    latency_samples: int = 0
    errors: int = 0
    handler_errors: int = 0
    reconnects: int = 0
    connections_refused: int = 0
    messages_queued: int = 0
    listeners: int = 0
    pooled_connections: int = 0
    #: QoS, per priority name, over the live connections
    queued_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_messages_by_priority: dict[str, int] = field(default_factory=dict)
    throttle_wait: float = 0.0  # seconds connections spent waiting for bandwidth tokens
    #: UDP: loss figures over every datagram connection (live and forgotten) and listener
    datagram: dict[str, int] = field(default_factory=dict)
    #: RTT samples at most each bound, seconds -> count (cumulative, as a Prometheus histogram)
    latency_buckets: dict[float, int] = field(default_factory=dict)
    latency_sum_seconds: float = 0.0
    #: request/reply and expiry counters (:class:`~.requests.MessagingCounters`)
    messaging: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeptSessions:
    """Listener-side sessions kept for a resume (``NetworkTransport.kept_sessions``)."""

    #: detached sessions waiting for their client to resume them now
    waiting: int
    #: sessions ended early (since start) because their listener's budget was full
    evicted: int


#: the bounds of ``TransportMetrics.latency_buckets``, seconds
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def breaker_snapshot(breaker: CircuitBreaker, wall_offset: float) -> CircuitBreakerState:
    """The breaker's state with ``last_failure`` in wall-clock time."""
    snap = breaker.snapshot()
    if snap.last_failure is not None:
        snap = CircuitBreakerState(snap.state, snap.failure_count,
                                   snap.last_failure + wall_offset, snap.success_count)
    return snap


def qos_snapshot(conn: Connection) -> dict[str, Any]:
    """Per-priority queued/sent figures and throttling of one connection."""
    names = PRIORITY_NAMES
    link = conn.link
    totals = conn.totals
    limits = conn.limits
    queued = sent = msgs = [0, 0, 0, 0]
    if link is not None:
        sched = link.session.scheduler
        queued = sched.queued_by_priority()
        sent = sched.sent_bytes
        msgs = link.session.messages_by_priority()
    return {
        "queued_bytes_by_priority": dict(zip(names, queued, strict=True)),
        "sent_bytes_by_priority": {n: a + b for n, a, b in
                                   zip(names, totals.priority_bytes, sent, strict=True)},
        "sent_messages_by_priority": {n: a + b for n, a, b in
                                      zip(names, totals.priority_messages, msgs, strict=True)},
        "send_rate": limits.pacer.rate(conn.loop.time()),
        "throttle_wait": limits.pacer.waited,
        "max_bandwidth": limits.max_bandwidth,
        "max_receive_bandwidth": limits.max_receive_bandwidth,
    }


def connection_info(conn: Connection, wall_offset: float) -> ConnectionInfo:
    """A snapshot of ``conn``; ``wall_offset`` turns loop time into wall-clock time."""
    t = conn.traffic()
    link = conn.link
    rtt = None
    if link is not None:
        last = getattr(link.session, "rtt_last", None)
        rtt = last * 1000.0 if last is not None else None
    ep = conn.endpoint
    rs = conn.resume_state
    return ConnectionInfo(
        id=conn.id, transport=ep.transport.value, host=ep.host, port=ep.port,
        state=conn.state.value, last_activity=conn.last_activity + wall_offset,
        bytes_sent=t.bytes_sent, bytes_received=t.bytes_received, bytes_queued=t.bytes_queued,
        message_count=t.messages_sent + t.messages_received, error_count=conn.error_count,
        circuit_breaker=breaker_snapshot(conn.breaker, wall_offset),
        messages_sent=t.messages_sent, messages_received=t.messages_received,
        framing="native" if conn.native else "raw", role=conn.role,
        reconnects=conn.reconnects, rtt_ms=rtt,
        pending_bytes=link.pending_bytes if link is not None else 0, tls=ep.tls,
        unacked_bytes=rs.unacked_bytes, unacked_messages=rs.unacked_count,
        unconfirmed=conn.unconfirmed_total, duplicates_dropped=rs.duplicates,
        resent=rs.resent, datagram=conn.datagram_counters(), identity=conn.identity,
        **qos_snapshot(conn))


def transport_metrics(totals: ServiceTotals, conns: Iterable[Connection],
                      listener_datagram: Iterable[dict[str, int]], latency: LatencyHistogram,
                      *, connections_refused: int, messages_queued: int, listeners: int,
                      pooled_connections: int) -> TransportMetrics:
    """Fold the live connections onto the totals of the forgotten ones."""
    traffic = totals.traffic.copy()
    reconnects = totals.reconnects
    active = 0
    datagram = dict(totals.datagram)
    for counts in listener_datagram:
        add_counts(datagram, counts)
    queued: dict[str, int] = {}
    sent: dict[str, int] = {}
    sent_msgs: dict[str, int] = {}
    qos = (("queued_bytes_by_priority", queued), ("sent_bytes_by_priority", sent),
           ("sent_messages_by_priority", sent_msgs))
    wait = 0.0
    for conn in conns:
        traffic.add(conn.traffic())
        reconnects += conn.reconnects
        if conn.state is ConnState.CONNECTED:
            active += 1
        add_counts(datagram, conn.datagram_counters())
        info = qos_snapshot(conn)
        wait += info["throttle_wait"]
        for key, per in qos:
            add_counts(per, info[key])
    lat = latency
    return TransportMetrics(
        throttle_wait=wait, queued_bytes_by_priority=queued, sent_bytes_by_priority=sent,
        sent_messages_by_priority=sent_msgs, datagram=datagram,
        total_connections=totals.connections, active_connections=active,
        total_bytes_sent=traffic.bytes_sent, total_bytes_received=traffic.bytes_received,
        total_messages=traffic.messages_sent, messages_received=traffic.messages_received,
        avg_latency_ms=lat.mean * 1000.0 if lat.count else 0.0,
        p50_latency_ms=lat.percentile(50) * 1000.0 if lat.count else 0.0,
        p99_latency_ms=lat.percentile(99) * 1000.0 if lat.count else 0.0,
        latency_samples=lat.count,
        latency_buckets=dict(zip(LATENCY_BOUNDS, lat.cumulative(LATENCY_BOUNDS), strict=True)),
        latency_sum_seconds=lat.mean * lat.count,
        errors=totals.errors, handler_errors=totals.handler_errors,
        reconnects=reconnects, connections_refused=connections_refused,
        messages_queued=messages_queued, listeners=listeners,
        pooled_connections=pooled_connections)
