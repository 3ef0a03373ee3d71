"""The figures every exporter publishes, read through the public API only.

:class:`FigureReader` reads ``net.get_metrics()``, ``net.connections()`` and
``net.connection_info(id)`` and groups them by ``(transport, role)``. Counters stay
monotonic across connections that go away: the last figures read of a connection are kept
for its label when it disappears. Traffic of a connection that opened and closed between two
reads is known only in the service's totals; it is published under the label
``transport="unknown", role="unknown"`` (the difference between the exact service totals and
the sum of the labelled figures), so the labelled figures always add up to the totals.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..connection import ConnectionInfo
from ..events import BreakerChanged, Event, RttMeasured, Subscription
from ..exceptions import ConnectionNotFound

if TYPE_CHECKING:
    from ..service import NetworkTransport, TransportMetrics

__all__ = ["COUNTERS", "Figures", "FigureReader", "Label", "UNKNOWN"]

Label = tuple[str, str]  # (transport, role)
UNKNOWN: Label = ("unknown", "unknown")

#: per-connection counters: name -> (ConnectionInfo field, service total field or "")
COUNTERS: dict[str, tuple[str, str]] = {
    "sent_bytes": ("bytes_sent", "total_bytes_sent"),
    "received_bytes": ("bytes_received", "total_bytes_received"),
    "sent_messages": ("messages_sent", "total_messages"),
    "received_messages": ("messages_received", "messages_received"),
    "resent_messages": ("resent", ""),
    "duplicates_dropped": ("duplicates_dropped", ""),
    "unconfirmed_messages": ("unconfirmed", ""),
    "reconnects": ("reconnects", "reconnects"),
    "throttle_wait_seconds": ("throttle_wait", ""),
    "connection_errors": ("error_count", ""),
}


@dataclass
class Figures:
    """One read of the service."""

    service: TransportMetrics
    #: label -> counter name (:data:`COUNTERS`, plus "opened_connections") -> value
    counters: dict[Label, dict[str, float]] = field(default_factory=dict)
    #: (transport, role, state) -> live connections
    states: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: (transport, role, breaker state) -> live connections whose endpoint's breaker is so
    breakers: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: the live connections (for per-connection figures, which are opt-in)
    connections: list[ConnectionInfo] = field(default_factory=list)
    #: (event type, transport) -> events seen since the reader subscribed
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    #: events the reader's subscription lost because nobody read for too long
    events_dropped: int = 0
    #: endpoint -> its circuit breaker's state, as the last BreakerChanged said
    breakers_by_endpoint: dict[str, str] = field(default_factory=dict)
    #: RTT samples (seconds, transport) that arrived since the previous read, from the
    #: ``RttMeasured`` events: each read hands each sample out once
    rtt_samples: list[tuple[float, str]] = field(default_factory=list)


class FigureReader:
    """Reads :class:`Figures` from ``net``; keep one per exporter (it remembers what it saw
    and holds one event subscription, drained at every read: ``maxsize`` events may wait
    between two reads, older ones are counted as dropped).

    ``read()`` may be called from any thread: off the service's event loop, the read is
    handed to the loop and waited for (at most ``timeout`` s), and reads from other threads
    within ``cache`` s of the last one return it (one collection by an exporting thread reads
    once for all its instruments). On the loop every read is fresh.
    """

    def __init__(self, net: NetworkTransport, *, maxsize: int = 10_000, cache: float = 0.05,
                 timeout: float = 5.0) -> None:
        self.net = net
        self.cache = cache
        self.timeout = timeout
        self._sub: Subscription = net.events(maxsize)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._seen: dict[int, tuple[Label, dict[str, float]]] = {}
        self._gone: dict[Label, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._events: dict[tuple[str, str], int] = {}
        self._breakers: dict[str, str] = {}
        self._rtt: list[tuple[float, str]] = []
        self._last: tuple[float, Figures] | None = None

    def close(self) -> None:
        """Unsubscribe from the service's events."""
        self._sub.close()

    def read(self) -> Figures:
        """The service's figures now (or as read less than ``cache`` s ago)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self._loop = running
        loop = self._loop
        if running is not None or loop is None or not loop.is_running():
            return self._read()
        last = self._last
        if last is not None and time.monotonic() - last[0] < self.cache:
            return last[1]
        figures = self._read_on_loop(loop)
        self._last = (time.monotonic(), figures)
        return figures

    def _read_on_loop(self, loop: asyncio.AbstractEventLoop) -> Figures:
        fut: concurrent.futures.Future[Figures] = concurrent.futures.Future()

        def read() -> None:
            try:
                fut.set_result(self._read())
            except Exception as exc:  # handed to the waiting thread
                fut.set_exception(exc)

        loop.call_soon_threadsafe(read)
        return fut.result(self.timeout)

    def _drain(self, out: Figures) -> None:
        while (ev := self._sub.get_nowait()) is not None:
            self._count(ev)
        out.events = dict(self._events)
        out.events_dropped = self._sub.dropped
        out.breakers_by_endpoint = dict(self._breakers)
        out.rtt_samples, self._rtt = self._rtt, []

    def _count(self, ev: Event) -> None:
        key = (type(ev).__name__, ev.transport)
        self._events[key] = self._events.get(key, 0) + 1
        if isinstance(ev, BreakerChanged):
            self._breakers[ev.endpoint] = ev.new
        elif isinstance(ev, RttMeasured):
            self._rtt.append((ev.rtt, ev.transport))

    def _read(self) -> Figures:
        net = self.net
        out = Figures(net.get_metrics())
        self._drain(out)
        live: dict[int, tuple[Label, dict[str, float]]] = {}
        for cid in net.connections():
            try:
                info = net.connection_info(cid)
            except ConnectionNotFound:  # gone between the listing and the read
                continue
            out.connections.append(info)
            label = (info.transport, info.role)
            live[cid] = (label, {name: float(getattr(info, attr))
                                 for name, (attr, _) in COUNTERS.items()})
            key = (*label, info.state)
            out.states[key] = out.states.get(key, 0) + 1
            bkey = (*label, str(info.circuit_breaker.state))
            out.breakers[bkey] = out.breakers.get(bkey, 0) + 1
        for cid, (label, values) in self._seen.items():
            if cid not in live:  # gone: its last figures stay with its label
                gone = self._gone[label]
                for name, v in values.items():
                    gone[name] += v
                gone["opened_connections"] += 1
        self._seen = live
        totals: dict[Label, dict[str, float]] = {
            label: dict(values) for label, values in self._gone.items()}
        for label, values in live.values():
            into = totals.setdefault(label, {})
            for name, v in values.items():
                into[name] = into.get(name, 0.0) + v
            into["opened_connections"] = into.get("opened_connections", 0.0) + 1
        self._unknown(out.service, totals)
        out.counters = totals
        return out

    @staticmethod
    def _unknown(service: TransportMetrics, totals: dict[Label, dict[str, float]]) -> None:
        """Put what the service totals have beyond the labelled figures under UNKNOWN."""
        exact = {name: float(getattr(service, total))
                 for name, (_, total) in COUNTERS.items() if total}
        exact["opened_connections"] = float(service.total_connections)
        rest = {name: value - sum(t.get(name, 0.0) for t in totals.values())
                for name, value in exact.items()}
        if any(v > 0 for v in rest.values()):
            totals[UNKNOWN] = {name: max(0.0, v) for name, v in rest.items()}
