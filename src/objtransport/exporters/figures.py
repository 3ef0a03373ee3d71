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

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..connection import ConnectionInfo
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


class FigureReader:
    """Reads :class:`Figures` from ``net``; keep one per exporter (it remembers what it saw)."""

    def __init__(self, net: NetworkTransport) -> None:
        self.net = net
        self._seen: dict[int, tuple[Label, dict[str, float]]] = {}
        self._gone: dict[Label, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def read(self) -> Figures:
        """Read the service now. Call from the service's event loop thread."""
        net = self.net
        out = Figures(net.get_metrics())
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
