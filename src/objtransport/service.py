"""``NetworkTransport``: the facade with the original Elixir module's API, in Python form.

It composes: connections (:mod:`.connection`), listeners (:mod:`.listener`), the inbox
(:mod:`.inbox`), handlers (:mod:`.dispatch`), pools (:mod:`.pool_manager`) and per-endpoint
breakers. It holds no protocol logic. Every task it starts is owned and cancelled on stop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .config import Framing, Options, Priority, TransportKind
from .connection import Connection, ConnectionInfo, ConnState, Endpoint, Hooks
from .dispatch import Handler, HandlerRunner
from .drivers.base import Driver, LinkParts
from .drivers.pacing import default_burst
from .drivers.tcp import TcpDriver, client_ssl_context
from .drivers.udp import UdpDriver
from .exceptions import (
    ConnectionNotFound,
    ConnectionNotReady,
    SendTimeout,
    ServiceNotRunning,
    UnsupportedTransport,
)
from .inbox import Inbox
from .listener import Listener
from .pool_manager import PoolManager
from .sansio.breaker import BreakerState, CircuitBreaker, CircuitBreakerState
from .sansio.events import Message, Received
from .sansio.framing import GoAwayCode
from .sansio.metrics import LatencyHistogram
from .sansio.reliability import ResumeState
from .sansio.throttle import TokenBucket

__all__ = ["NetworkTransport", "TransportMetrics"]

log = logging.getLogger("objtransport")

#: priority names and values accepted by send_data, resolved without parsing
_PRIORITIES: dict[object, int] = {**{p.name.lower(): int(p) for p in Priority},
                                  **{int(p): int(p) for p in Priority}}


def _optional_drivers() -> dict[TransportKind, Callable[[], Driver | None]]:
    """Transports whose driver needs a third-party library: present when it imports."""
    drivers: dict[TransportKind, Callable[[], Driver | None]] = {}

    def websocket() -> Driver | None:
        try:
            from .drivers.websocket import WebSocketDriver
        except ImportError:  # `websockets` is not installed
            return None
        return WebSocketDriver()

    def grpc() -> Driver | None:
        try:
            from .drivers.grpc import GrpcDriver
        except ImportError:  # `grpcio` is not installed
            return None
        return GrpcDriver()

    drivers[TransportKind.WEBSOCKET] = websocket
    drivers[TransportKind.GRPC] = grpc
    return drivers


_OPTIONAL_DRIVERS = _optional_drivers()
#: gone connections whose unconfirmed messages are kept for ``unconfirmed()``, at most
MAX_ORPHANS = 1024


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


class NetworkTransport:
    """The service. Use ``async with NetworkTransport() as net:`` or ``start()``/``stop()``.

    Keyword arguments are the defaults of every call (see :class:`objtransport.Options`):
    ``pool_size=10, timeout=5.0, reconnect_interval=1.0, max_reconnect_attempts=5, ssl=False``,
    ``keepalive_interval``, ``idle_timeout``, ``failure_threshold``, ``reset_timeout``,
    ``max_frame_size``, ``max_message_size`` and more; each call may override them.
    """

    def __init__(self, *, transport: str = "tcp", rng: random.Random | None = None,
                 max_bandwidth: float = 0.0, burst: float = 0.0, **options: Any) -> None:
        self.options = Options().with_overrides(**options)
        #: the whole service's send limit (bytes/s), on top of each connection's own
        self._global_bucket: TokenBucket | None = None
        self._global_rate = (max_bandwidth, burst)
        self.default_transport = TransportKind.parse(transport)
        self.rng = rng or random.Random()
        self._drivers: dict[TransportKind, Driver] = {TransportKind.TCP: TcpDriver(),
                                                      TransportKind.UDP: UdpDriver()}
        for kind, factory in _OPTIONAL_DRIVERS.items():
            driver = factory()
            if driver is not None:
                self._drivers[kind] = driver
        self._ids = itertools.count(1)
        self._conns: dict[int, Connection] = {}
        #: unconfirmed payloads of connections that are gone (a pooled connection that
        #: died), until ``unconfirmed(conn_id)`` hands them over
        self._orphans: dict[int, list[bytes]] = {}
        self._handlers: dict[int, HandlerRunner] = {}
        self._listeners: list[Listener] = []
        self._breakers: dict[Endpoint, CircuitBreaker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbox = Inbox(self.options.receive_queue_size, self.options.max_pending_bytes)
        self._latency = LatencyHistogram()
        self._pools: PoolManager | None = None
        self._running = False
        self._hooks = Hooks(self._deliver, self._latency.record, self._on_state,
                            self._on_error, self._on_detached)
        #: listener-side connections by the client's session id, for resuming
        self._kept: dict[bytes, Connection] = {}
        self._expiry: dict[int, asyncio.TimerHandle] = {}
        # folded counters of forgotten connections
        self._closed_totals = [0, 0, 0, 0]
        self._closed_datagram: dict[str, int] = {}
        self._total_connections = 0
        self._errors = 0
        self._handler_errors = 0
        self._reconnects_closed = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> NetworkTransport:
        if not self._running:
            self._running = True
            self._pools = PoolManager(self)
            rate, burst = self._global_rate
            if rate > 0:
                self._global_bucket = TokenBucket(rate, burst or default_burst(rate),
                                                  asyncio.get_running_loop().time())
        return self

    async def stop(self, timeout: float | None = None) -> None:
        """Close listeners and connections in order (queued messages go out first, up to
        ``timeout``), then cancel and await every task."""
        if not self._running:
            return
        self._running = False
        timeout = self.options.timeout if timeout is None else timeout
        if self._pools is not None:
            self._pools.close()
        for listener in list(self._listeners):
            if listener.server is not None:
                listener.server.close()
        await asyncio.gather(*(c.close(timeout, GoAwayCode.SHUTDOWN, "service stopping")
                               for c in list(self._conns.values())), return_exceptions=True)
        for listener in list(self._listeners):
            await listener.close()
        self._listeners.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for cid in list(self._conns):
            self._forget(cid)
        self._inbox.close()

    async def __aenter__(self) -> NetworkTransport:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _check_running(self) -> None:
        if not self._running:
            raise ServiceNotRunning("NetworkTransport is not running: use `async with "
                                    "NetworkTransport() as net` or `await net.start()`")

    def _driver(self, transport: str | TransportKind) -> Driver:
        kind = TransportKind.parse(transport)
        driver = self._drivers.get(kind)
        if driver is None:
            raise UnsupportedTransport(kind.value, tuple(k.value for k in self._drivers))
        return driver

    def _split_options(self, driver: Driver, options: dict[str, Any]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Separate a driver's own options (e.g. ``path``) from :class:`Options` fields."""
        extra = {k: options.pop(k) for k in list(options) if k in driver.extra_options}
        return options, extra

    @property
    def transports(self) -> list[str]:
        """The transports this installation supports."""
        return [k.value for k in self._drivers]

    # -- listening -----------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0, *, transport: str = "tcp",
                     ssl_context: ssl_module.SSLContext | None = None,
                     handler: Handler | None = None, framing: str = "native",
                     **options: Any) -> Listener:
        """Start a listener; ``port=0`` picks a free port (read it from ``listener.port``).

        Without a ``handler`` messages wait for ``receive()``/``messages()``; a handler (plain
        or ``async def``) is called for each message instead. ``framing`` is ``"native"``,
        ``"raw"`` (``{packet, 4}``) or ``"auto"`` (detected per connection).
        """
        self._check_running()
        driver = self._driver(transport)
        options, extra = self._split_options(driver, dict(options))
        opts = self.options.with_overrides(framing=framing, **options)
        listener = Listener(host, driver.kind, opts, Framing.parse(framing), handler,
                            ssl_context, self._accept, extra)
        listener._close_hook = self._close_listener
        server = await driver.serve(host, port, listener.accept, ssl_context, opts, extra)
        listener.server = server
        listener.port = server.port
        self._listeners.append(listener)
        log.info("listening on %r", listener)
        return listener

    def _accept(self, listener: Listener) -> LinkParts | None:
        if not self._running:
            return None
        cid = next(self._ids)
        endpoint = Endpoint(listener.kind, listener.host, listener.port, listener.tls)
        breaker = CircuitBreaker(self.options.failure_threshold, self.options.reset_timeout)
        conn = Connection(cid, endpoint, listener.options, breaker, self._hooks,
                          self._drivers[listener.kind], role="server",
                          native=listener.framing is not Framing.RAW, extra=listener.extra,
                          shared_buckets=[self._global_bucket] if self._global_bucket else None)
        conn.listener = listener
        conn.resume_lookup = lambda sid, c=conn: self._resume_lookup(c, sid)
        self._conns[cid] = conn
        listener.connections.add(cid)
        self._attach_receiver(conn, listener.handler)
        return conn.make_parts(detect=listener.framing is Framing.AUTO)

    def _resume_lookup(self, fresh: Connection, sid: bytes) -> tuple[ResumeState, bool]:
        """A client's HELLO asks to resume session ``sid`` on the socket ``fresh`` holds.

        If we kept that session, the socket moves to the kept connection (same id, same
        counters, its unacknowledged messages resent) and ``fresh`` disappears unseen.
        """
        kept = self._kept.get(sid)
        link = fresh.link
        if kept is not None and kept is not fresh and kept.id in self._conns and link is not None:
            stale = kept.link
            if stale is not None:  # we had not noticed the old socket died yet
                kept._fold(stale)
                kept.link = None
                stale.abort()
            handle = self._expiry.pop(kept.id, None)
            if handle is not None:
                handle.cancel()
            fresh.link = None
            self._drop_unseen(fresh)
            kept.take_over(link)
            return kept.resume_state, True
        fresh.resume_state = ResumeState(sid)
        self._kept[sid] = fresh
        return fresh.resume_state, False

    def _drop_unseen(self, conn: Connection) -> None:
        """Forget a connection that was only a vehicle for a resume: not counted."""
        self._conns.pop(conn.id, None)
        runner = self._handlers.pop(conn.id, None)
        if runner is not None:
            runner.cancel()
        self._inbox.unregister(conn.id)
        if conn.listener is not None:
            conn.listener.connections.discard(conn.id)

    def _on_detached(self, conn: Connection) -> None:
        """A listener-side session lost its socket: keep it for the client to resume."""
        timeout = conn.options.session_resume_timeout
        self._expiry[conn.id] = asyncio.get_running_loop().call_later(
            timeout, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        self._expiry.pop(conn.id, None)
        if conn.link is None and conn.id in self._conns:
            rs = conn.resume_state
            if rs.unacked_data:
                conn._session_lost(rs.take_unconfirmed())
            conn._set_state(ConnState.DISCONNECTED)

    async def _close_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        conns = [self._conns[c] for c in list(listener.connections) if c in self._conns]
        await asyncio.gather(*(c.close(self.options.timeout, GoAwayCode.SHUTDOWN,
                                       "listener closing")
                               for c in conns), return_exceptions=True)

    # -- connecting ----------------------------------------------------------------------------
    async def connect(self, host: str, port: int, *, transport: str = "tcp",
                      ssl: bool | None = None, ssl_context: ssl_module.SSLContext | None = None,
                      server_hostname: str | None = None, framing: str = "native",
                      handler: Handler | None = None, **options: Any) -> int:
        """Open a connection and return its id once it is ready to carry messages.

        Raises ``ConnectError`` (refused, unreachable, timed out, TLS rejected) or
        ``CircuitOpenError`` (the endpoint failed too often lately; nothing was attempted).
        After an unexpected loss the connection reconnects by itself, keeping its id.
        """
        return (await self._open(host, port, transport, ssl, ssl_context, server_hostname,
                                 framing, handler, options, pooled=False)).id

    async def _open(self, host: str, port: int, transport: str | TransportKind,
                    ssl: bool | None, ssl_context: ssl_module.SSLContext | None,
                    server_hostname: str | None, framing: str, handler: Handler | None,
                    options: dict[str, Any], pooled: bool,
                    shared_buckets: list[TokenBucket] | None = None) -> Connection:
        self._check_running()
        driver = self._driver(transport)
        kind = driver.kind
        options, extra = self._split_options(driver, dict(options))
        opts = self.options.with_overrides(ssl=ssl, **options)
        fr = Framing.parse(framing)
        if fr is Framing.AUTO:
            raise ValueError('framing="auto" is for listeners; a client says what it speaks')
        ctx = client_ssl_context(opts.ssl, ssl_context)
        endpoint = Endpoint(kind, host, port, ctx is not None)
        cid = next(self._ids)
        shared = list(shared_buckets or [])
        if self._global_bucket is not None:
            shared.append(self._global_bucket)
        conn = Connection(cid, endpoint, opts, self.breaker_for(endpoint), self._hooks, driver,
                          extra=extra, native=fr is Framing.NATIVE, ssl_context=ctx,
                          server_hostname=server_hostname, rng=self.rng,
                          shared_buckets=shared)
        conn.pooled = pooled
        self._conns[cid] = conn
        self._attach_receiver(conn, handler)
        try:
            await conn.open_first()
        except BaseException:
            self._forget(cid)
            raise
        if conn.task is not None:
            self._tasks.add(conn.task)
            conn.task.add_done_callback(self._tasks.discard)
        return conn

    def breaker_for(self, endpoint: Endpoint) -> CircuitBreaker:
        b = self._breakers.get(endpoint)
        if b is None:
            o = self.options
            def changed(old: BreakerState, new: BreakerState, now: float) -> None:
                log.warning("circuit breaker for %s: %s -> %s", endpoint, old.value, new.value)

            b = self._breakers[endpoint] = CircuitBreaker(
                o.failure_threshold, o.reset_timeout, o.half_open_max_probes,
                on_state_change=changed)
        return b

    def circuit_breaker(self, host: str, port: int, transport: str = "tcp",
                        ssl: bool = False) -> CircuitBreakerState:
        """The breaker state of an endpoint (closed with zero counts if never used)."""
        b = self.breaker_for(Endpoint(TransportKind.parse(transport), host, port, ssl))
        snap = b.snapshot()
        if snap.last_failure is not None:
            snap = CircuitBreakerState(snap.state, snap.failure_count,
                                       snap.last_failure + self._wall_offset(),
                                       snap.success_count)
        return snap

    async def disconnect(self, conn_id: int, timeout: float | None = None) -> None:
        """Close a connection in order (queued messages first); unknown ids are no error."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        await conn.close(self.options.timeout if timeout is None else timeout)
        self._forget(conn_id)

    def _forget(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return
        if conn.unconfirmed:  # kept for unconfirmed(conn_id) after the connection is gone
            self._orphans[conn_id] = [u[1] for u in conn.unconfirmed]
            if len(self._orphans) > MAX_ORPHANS:  # bounded: the oldest report goes
                old_id = next(iter(self._orphans))
                dropped = self._orphans.pop(old_id)
                log.warning("the %d unconfirmed message(s) of gone connection %s were never "
                            "collected with unconfirmed(); discarded", len(dropped), old_id)
        bs, br, ms, mr = conn.counters()
        t = self._closed_totals
        t[0] += bs
        t[1] += br
        t[2] += ms
        t[3] += mr
        self._reconnects_closed += conn.reconnects
        _add_counts(self._closed_datagram, conn.datagram_counters())
        runner = self._handlers.pop(conn_id, None)
        if runner is not None:
            runner.cancel()
        self._inbox.unregister(conn_id)
        listener = getattr(conn, "listener", None)
        if listener is not None:
            listener.connections.discard(conn_id)
        sid = conn.resume_state.session_id
        if self._kept.get(sid) is conn:
            del self._kept[sid]
        handle = self._expiry.pop(conn_id, None)
        if handle is not None:
            handle.cancel()
        if self._pools is not None and conn.pooled:
            self._pools.forget(conn)

    # -- hooks from connections -----------------------------------------------------------------
    def _attach_receiver(self, conn: Connection, handler: Handler | None) -> None:
        flow = conn.flow_control
        if handler is None:
            self._inbox.register(conn.id, flow, conn)
        else:
            self._handlers[conn.id] = HandlerRunner(
                handler, conn, flow, self._tasks, self.options.receive_queue_size,
                self._on_handler_error)

    def _deliver(self, conn: Connection, msgs: list[Received], nbytes: int) -> None:
        runner = self._handlers.get(conn.id)
        if runner is None:
            self._inbox.put_many(conn.id, msgs, nbytes)
        else:
            runner.deliver(msgs)

    def _on_state(self, conn: Connection, state: ConnState) -> None:
        if state is ConnState.CONNECTED:
            if not conn.ever_connected:
                conn.ever_connected = True
                self._total_connections += 1
        elif state is ConnState.DISCONNECTED:
            if conn.role == "server" or conn.pooled:
                self._forget(conn.id)

    def _on_error(self, conn: Connection, reason: str) -> None:
        self._errors += 1
        if conn.error_count == 1:
            log.warning("connection %s (%s, %s): %s", conn.id, conn.role, conn.endpoint,
                        reason)

    def _on_handler_error(self, exc: BaseException) -> None:
        self._handler_errors += 1

    # -- sending ---------------------------------------------------------------------------------
    async def send_data(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                        priority: str | int = "normal", stream: int = 0, text: bool = False,
                        timeout: float | None = None, wait_ack: bool = False) -> None:
        """Queue one message on a connection; return once it is queued.

        Waits (backpressure) while the connection has more than ``max_pending_bytes`` queued,
        and while it reconnects; raises ``SendTimeout`` / ``ConnectionNotReady`` after
        ``timeout``. Raises ``ConnectionNotFound`` for an unknown id, ``MessageTooLarge``
        above ``max_message_size``, ``CircuitOpenError`` when the endpoint's circuit is open.
        """
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        link = conn.link
        if link is None or not link.session.open:
            link = await conn.ready_link(self.options.timeout if timeout is None else timeout)
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        if wait_ack:
            link.send(data, stream, prio, text)
            await conn.wait_acked(self.options.timeout if timeout is None else timeout,
                                  link.last_seq)
            return
        if link.send(data, stream, prio, text):
            try:
                await link.wait_writable(self.options.timeout if timeout is None else timeout,
                                         prio)
            except SendTimeout:
                conn.breaker.record_failure(asyncio.get_running_loop().time())
                raise

    def send_nowait(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                    priority: str | int = "normal", stream: int = 0,
                    text: bool = False) -> None:
        """Queue one message without waiting: for plain-function handlers and callbacks.

        Raises ``SendTimeout`` at once instead of waiting when more than
        ``max_pending_bytes`` are already queued (nothing is queued then),
        ``ConnectionNotReady`` when the connection is not connected, and the errors of
        :meth:`send_data`.
        """
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        link = conn.link
        if link is None or not link.session.open:
            raise ConnectionNotReady(conn.id, conn.state.value, str(conn.endpoint))
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        if link.backlog(prio) > link.max_pending:
            raise SendTimeout(f"send_nowait to {conn.endpoint}: {link.pending_bytes} bytes "
                              "already queued (max_pending_bytes); use send_data to wait")
        link.send(data, stream, prio, text)

    async def send_to(self, host: str, port: int, data: bytes | bytearray | memoryview, *,
                      transport: str = "tcp", ssl: bool | None = None,
                      ssl_context: ssl_module.SSLContext | None = None,
                      priority: str | int = "normal", stream: int = 0,
                      timeout: float | None = None, **options: Any) -> int:
        """Send one message through the endpoint's connection pool; return the connection id
        used. The pool opens at most ``pool_size`` connections per endpoint."""
        self._check_running()
        assert self._pools is not None
        return await self._pools.send(host, port, data, transport, ssl, ssl_context, priority,
                                      stream, timeout, options)

    def set_bandwidth(self, conn_id: int, max_bandwidth: float | None = None,
                      burst: float | None = None, *,
                      max_receive_bandwidth: float | None = None,
                      receive_burst: float | None = None) -> None:
        """Change a connection's limits at run time (bytes/s; 0 removes a limit; None
        keeps it). Takes effect at once, also across reconnections."""
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        conn.set_bandwidth(max_bandwidth, burst, max_receive_bandwidth, receive_burst)

    async def flush(self, conn_id: int, timeout: float | None = None) -> None:
        """Wait until the peer acknowledged everything sent so far on the connection
        (native framing; across reconnections), or, in raw framing, until it was all handed
        to the socket. Raises ``SendTimeout``, or ``SessionLost`` if the peer lost the
        session (then :meth:`unconfirmed` gives the messages in doubt)."""
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        await conn.wait_acked(self.options.timeout if timeout is None else timeout)

    def unconfirmed(self, conn_id: int) -> list[bytes]:
        """Hand over (and forget) the payloads whose delivery could not be confirmed: the
        peer lost the session, or the connection was given up (also after it is gone, e.g.
        a pooled connection that died); see ``SessionLost``."""
        conn = self._conns.get(conn_id)
        if conn is None:
            orphaned = self._orphans.pop(conn_id, None)
            if orphaned is None:
                raise ConnectionNotFound(conn_id)
            return orphaned
        out = [u[1] for u in conn.unconfirmed]
        conn.unconfirmed.clear()
        return out

    # -- receiving -------------------------------------------------------------------------------
    async def receive(self, conn_id: int | None = None,
                      timeout: float | None = None) -> Message:
        """The next message from any connection (or from ``conn_id``).

        Raises ``TimeoutError`` after ``timeout`` s (None waits for ever).
        """
        self._check_running()
        if conn_id is not None and conn_id not in self._conns:
            msg = self._inbox.get_nowait(conn_id)
            if msg is not None:
                return msg
            raise ConnectionNotFound(conn_id)
        return await self._inbox.get(conn_id, timeout)

    async def messages(self, conn_id: int | None = None) -> AsyncIterator[Message]:
        """Iterate over received messages until the service stops."""
        while self._running:
            yield await self._inbox.get(conn_id, None)

    # -- observing -------------------------------------------------------------------------------
    @staticmethod
    def _wall_offset() -> float:
        return time.time() - asyncio.get_running_loop().time()

    def connection_info(self, conn_id: int) -> ConnectionInfo:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        return conn.info(self._wall_offset())

    def connections(self) -> list[int]:
        return list(self._conns)

    def get_metrics(self) -> TransportMetrics:
        t = list(self._closed_totals)
        active = 0
        reconnects = self._reconnects_closed
        for conn in self._conns.values():
            bs, br, ms, mr = conn.counters()
            t[0] += bs
            t[1] += br
            t[2] += ms
            t[3] += mr
            reconnects += conn.reconnects
            if conn.state is ConnState.CONNECTED:
                active += 1
        lat = self._latency
        qos: dict[str, dict[str, int]] = {"queued_bytes_by_priority": {},
                                          "sent_bytes_by_priority": {},
                                          "sent_messages_by_priority": {}}
        wait = 0.0
        datagram = dict(self._closed_datagram)
        for listener in self._listeners:
            counters = getattr(listener.server, "counters", None)
            if counters is not None:
                _add_counts(datagram, counters())
        for conn in self._conns.values():
            _add_counts(datagram, conn.datagram_counters())
            info = conn._qos_info()
            wait += info["throttle_wait"]
            for key, per in qos.items():
                for name, n in info[key].items():
                    per[name] = per.get(name, 0) + n
        return TransportMetrics(
            throttle_wait=wait, **qos, datagram=datagram,
            total_connections=self._total_connections, active_connections=active,
            total_bytes_sent=t[0], total_bytes_received=t[1], total_messages=t[2],
            messages_received=t[3],
            avg_latency_ms=lat.mean * 1000.0 if lat.count else 0.0,
            p50_latency_ms=lat.percentile(50) * 1000.0 if lat.count else 0.0,
            p99_latency_ms=lat.percentile(99) * 1000.0 if lat.count else 0.0,
            latency_samples=lat.count, errors=self._errors,
            handler_errors=self._handler_errors, reconnects=reconnects,
            connections_refused=sum(x.refused for x in self._listeners),
            messages_queued=self._inbox.size, listeners=len(self._listeners),
            pooled_connections=self._pools.size if self._pools is not None else 0)


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n
