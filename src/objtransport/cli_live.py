"""The live views of ``objtransport serve --live`` and ``objtransport proxy``.

Each view samples public figures once a second (``get_metrics()``, ``connection_info()``,
the proxy's counters) and keeps the last few service events, and renders them as a rich
table when stdout is a terminal, or as one plain line per second otherwise. The events come
from ``net.events()``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

from .events import Event
from .service import NetworkTransport, TransportMetrics

__all__ = ["EventTail", "ServeView", "describe", "run_live"]


def _rate(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class EventTail:
    """The last ``size`` lifecycle events of ``net`` (its event stream), as one-line strings,
    and how many there were; :meth:`drain` reads what arrived since the last call."""

    def __init__(self, net: NetworkTransport, size: int = 6) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.count = 0
        self._sub = net.events(maxsize=1000)

    def drain(self) -> None:
        while (ev := self._sub.get_nowait()) is not None:
            self.count += 1
            self.lines.append(describe(ev))

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def __enter__(self) -> EventTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sub.close()


def describe(ev: Event) -> str:
    """``"10:31:02 Disconnected conn 3 tcp://127.0.0.1:50122 reason='peer closed' ..."``."""
    stamp = time.strftime("%H:%M:%S")
    extra = " ".join(f"{f.name}={getattr(ev, f.name)!r}" for f in dataclasses.fields(ev)
                     if f.name not in ("conn_id", "endpoint", "transport", "time"))
    conn = f" conn {ev.conn_id}" if ev.conn_id is not None else ""
    return f"{stamp} {type(ev).__name__}{conn} {ev.endpoint} {extra}".rstrip()


class ServeView:
    """What ``serve --live`` shows: totals, rates over the last second, connections."""

    def __init__(self, net: NetworkTransport, title: str, tail: EventTail) -> None:
        self.net = net
        self.title = title
        self.tail = tail
        self._last: tuple[float, TransportMetrics] | None = None
        self.rates = (0.0, 0.0, 0.0, 0.0)  # msg/s in, msg/s out, B/s in, B/s out

    def sample(self) -> TransportMetrics:
        """Read the metrics and update the rates; call once per refresh."""
        self.tail.drain()
        now, m = time.monotonic(), self.net.get_metrics()
        if self._last is not None:
            t0, p = self._last
            dt = max(1e-6, now - t0)
            self.rates = ((m.messages_received - p.messages_received) / dt,
                          (m.total_messages - p.total_messages) / dt,
                          (m.total_bytes_received - p.total_bytes_received) / dt,
                          (m.total_bytes_sent - p.total_bytes_sent) / dt)
        self._last = (now, m)
        return m

    def line(self, m: TransportMetrics) -> str:
        """One plain line: the figures of the table's header."""
        mi, mo, bi, bo = self.rates
        return (f"conns {m.active_connections}/{m.total_connections}  in {_rate(mi)} msg/s "
                f"{_rate(bi)}B/s  out {_rate(mo)} msg/s {_rate(bo)}B/s  "
                f"rtt p50 {m.p50_latency_ms:.2f} ms p99 {m.p99_latency_ms:.2f} ms  "
                f"errors {m.errors}  events {self.tail.count}")

    def render(self) -> Any:
        """A rich renderable: summary, one row per connection, the last events."""
        from rich.console import Group
        from rich.table import Table

        m = self.sample()
        head = Table(title=self.title, show_header=True, header_style="bold", expand=False)
        for col in ("active/total", "msg/s in", "msg/s out", "B/s in", "B/s out",
                    "RTT p50 ms", "RTT p99 ms", "errors", "events"):
            head.add_column(col, justify="right", no_wrap=True)
        mi, mo, bi, bo = self.rates
        head.add_row(f"{m.active_connections}/{m.total_connections}", _rate(mi),
                     _rate(mo), _rate(bi), _rate(bo), f"{m.p50_latency_ms:.2f}",
                     f"{m.p99_latency_ms:.2f}", str(m.errors), str(self.tail.count))
        conns = Table(show_header=True, header_style="bold", title="connections")
        for col in ("id", "peer", "transport", "state", "msgs in", "msgs out", "bytes in",
                    "bytes out", "RTT ms", "breaker"):
            conns.add_column(col)
        ids = self.net.connections()
        for cid in ids[:20]:
            try:
                i = self.net.connection_info(cid)
            except Exception:  # gone between the listing and the read
                continue
            conns.add_row(str(i.id), f"{i.host}:{i.port}", i.transport, i.state,
                          str(i.messages_received), str(i.messages_sent),
                          str(i.bytes_received), str(i.bytes_sent),
                          "-" if i.rtt_ms is None else f"{i.rtt_ms:.2f}",
                          str(i.circuit_breaker.state))
        if len(ids) > 20:
            conns.caption = f"and {len(ids) - 20} more"
        events = Table(show_header=False, title="last events", box=None)
        events.add_column("event", no_wrap=True, overflow="ellipsis")
        for text in self.tail.lines or ["(none yet)"]:
            events.add_row(text)
        return Group(head, conns, events)


async def run_live(render: Callable[[], Any], line: Callable[[], str], *,
                   interval: float = 1.0, rich_view: bool) -> None:
    """Refresh ``render()`` every ``interval`` s in a rich Live (``rich_view``) or print
    ``line()`` each time; runs until cancelled."""
    if not rich_view:
        while True:
            await asyncio.sleep(interval)
            print(line(), flush=True)
    from rich.console import Console
    from rich.live import Live

    console = Console(file=sys.stdout)
    with Live(render(), console=console, auto_refresh=False, transient=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(render(), refresh=True)
