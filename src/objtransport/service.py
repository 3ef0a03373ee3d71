"""``NetworkTransport``: the facade with the original Elixir module's API, in Python form.

It composes parts that each own their state: the connections and listeners by id
(:mod:`.registry`), kept listener-side sessions (:mod:`.sessions`), the breakers per endpoint
(:mod:`.breakers`), the pools (:mod:`.pool_manager`), typed totals (:mod:`.counters`), the
drivers (:mod:`.transports`), the inbox (:mod:`.inbox`) and handlers (:mod:`.dispatch`). It
holds no protocol logic. Every task it starts is owned and cancelled on stop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack

from .breakers import BreakerRegistry
from .codecs import JSON_TYPE, MSGPACK_TYPE, json_bytes, msgpack_bytes
from .config import Framing, Options, Priority, TransportKind
from .connection import Connection, ConnectionInfo, Endpoint, Hooks
from .connector import Connector
from .counters import ServiceTotals
from .dispatch import Handler
from .drivers.pacing import default_burst
from .endpoint import ConnState
from .events import (
    DEFAULT_MAXSIZE,
    Event,
    EventHub,
    ListenerClosed,
    Listening,
    Subscription,
)
from .events import SessionLost as SessionLostEvent
from .exceptions import (
    ConnectError,
    ConnectionNotFound,
    ConnectionNotReady,
    ListenError,
    ReceiveTimeout,
    SendTimeout,
    ServiceNotRunning,
    UnsupportedFeature,
)
from .group import Group, Resolver
from .groups import GroupDeps, Groups, GroupSpec
from .housekeeping import Housekeeper
from .inbox import Inbox
from .info import TransportMetrics, connection_info, transport_metrics
from .lifecycle import breaker_event, emit, listener_event
from .listener import Listener
from .params import (
    ClientFraming,
    ConnectOptions,
    FramingName,
    ListenOptions,
    PriorityArg,
    SendToOptions,
    ServiceOptions,
    TransportArg,
)
from .pool_manager import PoolManager
from .receivers import Receivers
from .registry import Registry
from .requests import Exchange, MessagingCounters, Responder, outgoing, queue
from .sansio.balancer import Policy
from .sansio.breaker import CircuitBreaker, CircuitBreakerState
from .sansio.events import Message
from .sansio.framing import GoAwayCode
from .sansio.headers import HeaderValue
from .sansio.metrics import LatencyHistogram
from .sansio.throttle import TokenBucket
from .sessions import SessionKeeper
from .transports import DriverTable

if TYPE_CHECKING:
    from .exporters.prometheus import MetricsServer

__all__ = ["NetworkTransport", "TransportMetrics"]

log = logging.getLogger("objtransport")

#: priority names and values accepted by send_data, resolved without parsing
_PRIORITIES: dict[object, int] = {**{p.name.lower(): int(p) for p in Priority},
                                  **{int(p): int(p) for p in Priority}}


class NetworkTransport:
    """The service. Use ``async with NetworkTransport() as net:`` or ``start()``/``stop()``.

    Keyword arguments are the defaults of every call (see :class:`objtransport.Options`):
    ``pool_size=10, timeout=5.0, reconnect_interval=1.0, max_reconnect_attempts=5, ssl=False``,
    ``keepalive_interval``, ``idle_timeout``, ``failure_threshold``, ``reset_timeout``,
    ``max_frame_size``, ``max_message_size`` and more; each call may override them.
    """

    def __init__(self, *, transport: TransportArg = "tcp", rng: random.Random | None = None,
                 max_bandwidth: float = 0.0, burst: float = 0.0,
                 on_event: Callable[[Event], object] | None = None,
                 **options: Unpack[ServiceOptions]) -> None:
        self.options = Options().with_overrides(**options)
        self._events = EventHub()
        if on_event is not None:
            self._events.add_callback(on_event)
        #: the whole service's send limit (bytes/s), on top of each connection's own
        self._global_rate = (max_bandwidth, burst)
        self.default_transport = TransportKind.parse(transport)
        self.rng = rng or random.Random()
        self._drivers = DriverTable()
        self._registry = Registry()
        self._conns = self._registry.conns  # the per-message paths look ids up here
        self._breakers = BreakerRegistry(self.options, partial(breaker_event, self._events),
                                         self.rng)
        self._sessions = SessionKeeper(self._registry.__contains__)
        self._totals = ServiceTotals()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbox = Inbox(self.options.receive_queue_size, self.options.max_pending_bytes)
        self._receivers = Receivers(self._inbox, self.options.receive_queue_size, self._tasks,
                                    self._totals)
        self._keeper = Housekeeper(self._registry, self._receivers, self._sessions,
                                   self._totals)
        self._latency = LatencyHistogram()
        self._pools: PoolManager | None = None
        self._running = False
        self._hooks = Hooks(self._receivers.deliver, self._latency.record,
                            self._on_state, self._keeper.on_error,
                            self._sessions.detached, self._events)
        # request/reply: requests waiting for answers, and what answers received ones
        self._messaging = MessagingCounters()
        self._exchange = Exchange(self.options.max_inflight_requests, self._messaging)
        self._responder = self._receivers.responder = self._hooks.responder = Responder(
            self._conns, self._messaging, self.options.timeout)
        self._hooks.on_replies = self._exchange.on_replies
        self._hooks.on_lost = self._exchange.cancel
        self._connector = Connector(self.options, self._drivers, self._registry, self._breakers,
                                    self._sessions, self._receivers, self._hooks, self.rng,
                                    self._tasks, self._keeper.forget)
        self._groups = Groups(GroupDeps(  # connect_group, and send_to's targets
            self._connector.open, self._send_member, self._keeper.forget, self._breakers,
            self._drivers, self._registry.next_id, self.options, self.rng))

    def _on_state(self, conn: Connection, state: ConnState) -> None:
        if state is ConnState.DISCONNECTED:
            self._exchange.cancel(conn, "the connection was closed or given up")
            self._exchange.forget(conn.id)
        self._keeper.on_state(conn, state)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> NetworkTransport:
        if not self._running:
            self._running = self._connector.accepting = True
            self._pools = self._keeper.pools = PoolManager(
                self.options, self._drivers.kind, self._open_pooled, self._send_pooled,
                self.disconnect, self._breakers.for_endpoint)
            rate, burst = self._global_rate
            if rate > 0:
                self._connector.global_bucket = TokenBucket(
                    rate, burst or default_burst(rate), asyncio.get_running_loop().time())
        return self

    async def stop(self, timeout: float | None = None) -> None:
        """Close listeners and connections in order (queued messages go out first, up to
        ``timeout``), then cancel and await every task."""
        if not self._running:
            return
        self._running = self._connector.accepting = False
        timeout = self.options.timeout if timeout is None else timeout
        await self._groups.close(timeout)
        if self._pools is not None:
            self._pools.close()
        listeners = self._registry.listeners
        for listener in listeners:
            if listener.server is not None:
                listener.server.close()
        await asyncio.gather(*(c.close(timeout, GoAwayCode.SHUTDOWN, "service stopping")
                               for c in self._registry.connections()), return_exceptions=True)
        for listener in listeners:
            await listener.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for cid in self._registry.ids():
            self._keeper.forget(cid)
        self._sessions.close()
        self._inbox.close()
        self._events.close()

    async def __aenter__(self) -> NetworkTransport:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _check_running(self) -> None:
        if not self._running:
            raise ServiceNotRunning("NetworkTransport is not running: use `async with "
                                    "NetworkTransport() as net` or `await net.start()`")

    @property
    def transports(self) -> list[str]:
        """The transports this installation supports."""
        return self._drivers.names

    # -- listening -----------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0, *,
                     transport: TransportArg = "tcp",
                     ssl_context: ssl_module.SSLContext | None = None,
                     handler: Handler | None = None, framing: FramingName | Framing = "native",
                     reuse_port: bool = False, **options: Unpack[ListenOptions]) -> Listener:
        """Start a listener; ``port=0`` picks a free port (read it from ``listener.port``).

        Without a ``handler`` messages wait for ``receive()``/``messages()``; a handler (plain
        or ``async def``) is called for each message instead. ``framing`` is ``"native"``,
        ``"raw"`` (``{packet, 4}``) or ``"auto"`` (detected per connection).
        ``reuse_port=True`` (TCP/TLS, UDP) sets ``SO_REUSEPORT``: several processes listen on
        one port and the kernel spreads connections among them (:func:`objtransport.serve`).
        """
        self._check_running()
        driver = self._drivers.get(transport)
        rest, extra = self._drivers.split_options(driver, options)
        if reuse_port:
            if not getattr(driver, "reuse_port", False):
                raise ValueError(f"reuse_port is not supported by {driver.kind.value}")
            extra["reuse_port"] = True
        opts = self.options.with_overrides(framing=framing, **rest)
        listener = Listener(host, driver.kind, opts, Framing.parse(framing), handler,
                            ssl_context, self._connector.accept, extra,
                            on_close=self._close_listener)
        try:
            server = await driver.serve(host, port, listener.accept, ssl_context, opts, extra)
        except ConnectError as exc:  # drivers say "cannot connect": here it is listening
            where = str(Endpoint(driver.kind, host, port, listener.tls))
            raise ListenError(where, exc.reason.removeprefix("cannot listen: ")) from (
                exc.__cause__ or exc)
        listener.server = server
        listener.port = server.port
        self._registry.add_listener(listener)
        log.info("listening on %r", listener)
        listener_event(self._events, Listening, listener)
        return listener

    async def _close_listener(self, listener: Listener) -> None:
        if self._registry.remove_listener(listener):
            listener_event(self._events, ListenerClosed, listener)
        await asyncio.gather(*(c.close(self.options.timeout, GoAwayCode.SHUTDOWN,
                                       "listener closing")
                               for c in self._registry.accepted_by(listener)),
                             return_exceptions=True)

    # -- connecting ----------------------------------------------------------------------------
    async def connect(self, host: str, port: int, *, transport: TransportArg = "tcp",
                      ssl: bool | None = None, ssl_context: ssl_module.SSLContext | None = None,
                      server_hostname: str | None = None, framing: ClientFraming = "native",
                      handler: Handler | None = None, **options: Unpack[ConnectOptions]) -> int:
        """Open a connection and return its id once it is ready to carry messages.

        Raises ``ConnectError`` (refused, unreachable, timed out, TLS rejected) or
        ``CircuitOpenError`` (the endpoint failed too often lately; nothing was attempted).
        After an unexpected loss the connection reconnects by itself, keeping its id.
        """
        self._check_running()
        if options.get("compression") and framing in ("raw", Framing.RAW):
            raise UnsupportedFeature("compression is negotiated in the native HELLO: raw "
                                     "framing cannot carry it")
        return (await self._connector.open(host, port, transport, ssl, ssl_context,
                                           server_hostname, framing, handler, options)).id

    async def connect_group(self, endpoints: str | Sequence[str], *,
                            transport: TransportArg = "tcp",
                            policy: Literal["p2c", "round_robin", "pick_first"] | Policy = "p2c",
                            redeliver: bool = True, resolver: Resolver | None = None,
                            resolve_interval: float = 30.0,
                            retry_budget: tuple[float, float] = (0.2, 10.0),
                            pin_default_stream: bool = False, ssl: bool | None = None,
                            ssl_context: ssl_module.SSLContext | None = None,
                            framing: ClientFraming = "native", handler: Handler | None = None,
                            **options: Unpack[ConnectOptions]) -> int:
        """Connect to many endpoints behind one id, usable wherever a connection id is.

        ``endpoints``: ``["host:port", ...]`` or ``"dns:///name:port"`` (every address of
        the name is a member; re-resolved every ``resolve_interval`` s and soon after a member
        fails, through ``resolver(name, port) -> [(host, port)]``, by default
        ``loop.getaddrinfo``). Each member is a normal connection (``group(gid).members()``).
        ``policy`` picks a member per message; a stream other than 0 stays on its member
        while it is healthy. A member whose breaker opens or that is given up is ejected; what
        it had not confirmed is re-sent through another member (``redeliver=True``: at least
        once, within ``retry_budget`` = (share of traffic, per second)) or kept for
        ``unconfirmed(gid)``. Returns once one member is up; raises ``ConnectError`` if none
        can connect.
        """
        self._check_running()
        return (await self._groups.open(GroupSpec(
            endpoints, transport, policy, redeliver, resolver, resolve_interval, retry_budget,
            pin_default_stream, ssl, ssl_context, framing, handler, options))).id

    async def _send_member(self, conn_id: int, data: bytes | bytearray | memoryview,
                           priority: int, stream: int, text: bool, timeout: float,
                           wait_ack: bool) -> None:
        await self.send_data(conn_id, data, priority=Priority(priority), stream=stream,
                             text=text, timeout=timeout, wait_ack=wait_ack)

    def group(self, group_id: int) -> Group:
        """A group by id: ``members()``, ``resolve()``, ``redelivered``, ``budget``..."""
        group = self._groups.get(group_id)
        if group is None:
            raise ConnectionNotFound(group_id)
        return group

    async def pick_member(self, group_id: int, stream: int = 0,
                          timeout: float | None = None) -> int:
        """The id of the member connection a group would use now for ``stream`` (waits up
        to ``timeout`` for one to be healthy; raises ``ConnectionNotReady``)."""
        return await self.group(group_id).pick_member(stream, timeout)

    async def _open_pooled(self, host: str, port: int, kind: TransportKind, ssl: bool | None,
                           ssl_context: ssl_module.SSLContext | None, options: Mapping[str, Any],
                           shared_buckets: list[TokenBucket]) -> Connection:
        self._check_running()
        return await self._connector.open(host, port, kind, ssl, ssl_context, None, "native",
                                          None, options, pooled=True,
                                          shared_buckets=shared_buckets)

    async def _send_pooled(self, conn_id: int, data: bytes | bytearray | memoryview,
                           priority: PriorityArg, stream: int, timeout: float) -> None:
        await self.send_data(conn_id, data, priority=priority, stream=stream, timeout=timeout)

    def breaker_for(self, endpoint: Endpoint) -> CircuitBreaker:
        """The circuit breaker shared by the connections to ``endpoint``."""
        return self._breakers.for_endpoint(endpoint)

    def circuit_breaker(self, host: str, port: int, transport: TransportArg = "tcp",
                        ssl: bool = False) -> CircuitBreakerState:
        """The breaker state of an endpoint (closed with zero counts if never used)."""
        return self._breakers.snapshot(Endpoint(TransportKind.parse(transport), host, port, ssl),
                                       self._wall_offset())

    async def disconnect(self, conn_id: int, timeout: float | None = None) -> None:
        """Close a connection or a group in order (queued messages first); unknown ids are
        no error."""
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.pop(conn_id)
            if group is not None:
                await group.close(self.options.timeout if timeout is None else timeout)
                lost = group.take_unconfirmed()
                if lost:
                    self._registry.keep_orphan(conn_id, lost)
            return
        await conn.close(self.options.timeout if timeout is None else timeout)
        self._keeper.forget(conn_id)

    # -- sending ---------------------------------------------------------------------------------
    async def send_data(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                        priority: PriorityArg = "normal", stream: int = 0, text: bool = False,
                        timeout: float | None = None, wait_ack: bool = False,
                        reliable: bool = True,
                        headers: Mapping[str, HeaderValue] | None = None,
                        ttl: float | None = None) -> None:
        """Queue one message on a connection; return once it is queued.

        ``headers`` (``{"key": "value" | b"value"}``, at most ``max_headers`` entries and
        ``max_header_bytes`` in all) arrive as ``msg.headers``. ``ttl`` (seconds): a message
        still waiting to be queued when it passes is not sent (counted in
        ``get_metrics().messaging["expired_sent"]`` and listed by :meth:`unconfirmed`), and
        a receiver that gets it later does not deliver it. Both need the native framing
        (``UnsupportedFeature`` otherwise); with ``compression=`` agreed, messages of at
        least ``compression_min_size`` bytes are compressed when that saves space.

        ``reliable=False`` on QUIC sends the message as one DATAGRAM frame (unreliable,
        unordered; ``MessageTooLarge`` above one packet, nothing sent); other transports
        deliver it as usual.

        Waits (backpressure) while the connection has more than ``max_pending_bytes`` queued.
        While a native connection reconnects, the message is kept for the next link (up to
        ``max_pending_bytes``) and the call returns; past that it waits for the link and
        raises ``SendTimeout`` after ``timeout`` (``ConnectionNotReady`` for a connection
        that cannot queue: raw framing, or a first connection). Raises
        ``ConnectionNotFound`` for an unknown id, ``MessageTooLarge`` above
        ``max_message_size``, ``CircuitOpenError`` when the endpoint's circuit is open.
        """
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise _not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is None:
                self._check_running()
                raise ConnectionNotFound(conn_id)
            prio = _PRIORITIES.get(priority)
            await group.send(data, Priority.parse(priority) if prio is None else prio, stream,
                             text, timeout, wait_ack)
            return
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        if headers is not None or ttl is not None or conn.options.compression is not None:
            await self._send_extended(conn, data, priority, stream, text, timeout, headers,
                                      ttl)
            return
        link = conn.link
        if link is None or not link.session.open:
            if reliable and not wait_ack and conn.queue_offline(data, stream, prio, text):
                return  # reconnecting: it goes out on the next link
            link = await conn.ready_link(self.options.timeout if timeout is None else timeout)
        if not reliable:
            send_datagram = getattr(link, "send_datagram", None)
            if send_datagram is not None:
                send_datagram(data)
                return
        if wait_ack:
            link.send(data, stream, prio, text)
            await conn.wait_acked(self.options.timeout if timeout is None else timeout,
                                  link.last_seq)
            return
        if link.queue(data, stream, prio, text):
            try:
                await link.wait_writable(self.options.timeout if timeout is None else timeout,
                                         prio)
            except SendTimeout:
                conn.breaker.record_failure(asyncio.get_running_loop().time())
                raise

    async def send_many(self, conn_id: int, datas: Iterable[bytes | bytearray | memoryview],
                        *, priority: PriorityArg = "normal", stream: int = 0,
                        text: bool = False, timeout: float | None = None) -> None:
        """Queue many messages on a connection, in order; return once all are queued.

        The cheap way to send many small messages: one backpressure check for the batch,
        after it is queued (so pass batches of a bounded size), and the frames of normal
        messages on stream 0 built in one pass into one buffer. Waits and raises as
        :meth:`send_data`; a message that is refused (too large, not bytes) raises and ends
        the batch there, the messages before it stay queued. ``ConnectionClosed`` from the
        wait after queueing means the batch *is* queued: with ACKs a resumed session sends
        it again (or ``unconfirmed()`` reports it); do not send it again yourself.
        """
        conn = self._conns.get(conn_id)
        if conn is None:
            self._check_running()
            raise ConnectionNotFound(conn_id)
        wait = self.options.timeout if timeout is None else timeout
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        link = conn.link
        if link is None or not link.session.open:
            rest = iter(datas)
            for data in rest:  # reconnecting: kept for the next link while there is room
                if not conn.queue_offline(data, stream, prio, text):
                    datas = itertools.chain((data,), rest)
                    break
            else:
                return
            link = await conn.ready_link(wait)
        if link.queue_many(datas, stream, prio, text):
            try:
                await link.wait_writable(wait, prio)
            except SendTimeout:
                conn.breaker.record_failure(asyncio.get_running_loop().time())
                raise

    async def _send_extended(self, conn: Connection, data: bytes | bytearray | memoryview,
                             priority: PriorityArg, stream: int, text: bool,
                             timeout: float | None,
                             headers: Mapping[str, HeaderValue] | None,
                             ttl: float | None) -> None:
        """send_data with headers, a ttl or compression: the slow path."""
        timeout = self.options.timeout if timeout is None else timeout
        expires = time.time() + ttl if ttl is not None else 0.0
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        link = conn.link
        if link is None or not link.session.open:
            try:
                link = await conn.ready_link(timeout if ttl is None else min(ttl, timeout))
            except ConnectionNotReady:
                if ttl is None or ttl >= timeout:
                    raise
                self._expired(conn, data, stream, prio, text)
                return
        opts = conn.options
        payload, flags = outgoing(link, data, text, headers=headers, expires=expires,
                                  compression=opts.compression,
                                  min_size=opts.compression_min_size,
                                  counters=self._messaging, where=conn.endpoint)
        try:
            await queue(link, payload, stream, prio, flags, timeout if ttl is None
                        else min(ttl, timeout))
        except SendTimeout:
            if ttl is None or ttl >= timeout:
                conn.breaker.record_failure(asyncio.get_running_loop().time())
                raise
            # queued, past its ttl: it may still go out; the receiver drops it then

    def _expired(self, conn: Connection, data: bytes | bytearray | memoryview, stream: int,
                 prio: int, text: bool) -> None:
        """A message's ttl passed before it could be queued: report it, never silently."""
        self._messaging.expired(prio)
        conn.confirmations.add([(0, bytes(data), stream, prio, text)])
        emit(conn, SessionLostEvent, unconfirmed=1, reason="expired")

    # -- request/reply ---------------------------------------------------------------------------
    async def request(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                      timeout: float | None = None,
                      headers: Mapping[str, HeaderValue] | None = None,
                      priority: PriorityArg = "normal", stream: int = 0) -> Message:
        """Send a request and return the peer's answer (a :class:`Message`).

        The peer's handler answers by returning bytes or with ``await msg.reply(data)``;
        the deadline (``timeout``, the service's by default) travels with the request and a
        peer that gets it later does not run its handler. Raises ``RequestTimeout`` after
        the deadline, ``NoResponder`` when the peer answers with an error (no handler
        replies there, it raised, or the deadline had passed), ``RequestCancelled`` when
        the connection is given up, ``SendTimeout`` when ``max_inflight_requests`` stay in
        flight until the deadline, ``UnsupportedFeature`` on a raw connection. Requests
        survive a reconnection (the session resumes): each is answered once, or fails.
        """
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise _not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is None:
                self._check_running()
                raise ConnectionNotFound(conn_id)
            return await group.request(lambda member, left: self.request(  # a member's
                member, data, timeout=left, headers=headers, priority=priority,
                stream=stream), stream, self.options.timeout if timeout is None else timeout)
        if not conn.native:
            raise UnsupportedFeature(f"request() needs the native framing: connection "
                                     f"{conn_id} to {conn.endpoint} is raw")
        timeout = self.options.timeout if timeout is None else timeout
        prio = _PRIORITIES.get(priority)
        if prio is None:
            prio = Priority.parse(priority)
        opts = conn.options
        return await self._exchange.request(
            conn, partial(conn.ready_link, timeout), data, timeout, headers, prio, stream,
            opts.compression, opts.compression_min_size)

    async def request_to(self, host: str, port: int, data: bytes | bytearray | memoryview, *,
                         transport: TransportArg = "tcp", ssl: bool | None = None,
                         ssl_context: ssl_module.SSLContext | None = None,
                         timeout: float | None = None,
                         headers: Mapping[str, HeaderValue] | None = None,
                         priority: PriorityArg = "normal", stream: int = 0,
                         **options: Unpack[SendToOptions]) -> Message:
        """:meth:`request` through the endpoint's connection pool (as :meth:`send_to`)."""
        self._check_running()
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise _not_bytes(data)
        assert self._pools is not None
        answers: list[Message] = []

        async def ask(conn_id: int, payload: bytes | bytearray | memoryview,
                      prio: PriorityArg, strm: int, left: float) -> None:
            answers.append(await self.request(conn_id, payload, timeout=left,
                                              headers=headers, priority=prio, stream=strm))

        await self._pools.send(host, port, data, transport, ssl, ssl_context, priority,
                               stream, timeout, options, send=ask)
        return answers[0]

    # -- codecs ------------------------------------------------------------------------------------
    async def send_json(self, conn_id: int, obj: Any, *,
                        headers: Mapping[str, HeaderValue] | None = None,
                        **kwargs: Any) -> None:
        """``send_data`` of ``obj`` as compact UTF-8 JSON, with ``content-type:
        application/json`` (read it with ``msg.json()``)."""
        await self.send_data(conn_id, json_bytes(obj),
                             headers={**(headers or {}), "content-type": JSON_TYPE}, **kwargs)

    async def send_msgpack(self, conn_id: int, obj: Any, *,
                           headers: Mapping[str, HeaderValue] | None = None,
                           **kwargs: Any) -> None:
        """``send_data`` of ``obj`` as MessagePack, with ``content-type:
        application/msgpack`` (read it with ``msg.msgpack()``); needs
        ``objtransport[msgpack]``."""
        await self.send_data(conn_id, msgpack_bytes(obj),
                             headers={**(headers or {}), "content-type": MSGPACK_TYPE},
                             **kwargs)

    def send_nowait(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                    priority: PriorityArg = "normal", stream: int = 0,
                    text: bool = False) -> None:
        """Queue one message without waiting: for plain-function handlers and callbacks.

        Raises ``SendTimeout`` at once instead of waiting when more than
        ``max_pending_bytes`` are already queued (nothing is queued then),
        ``ConnectionNotReady`` when the connection is not connected, and the errors of
        :meth:`send_data`.
        """
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise _not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            self._check_running()
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

    async def send_to(self, host: str | Sequence[str],
                      port: int | bytes | bytearray | memoryview,
                      data: bytes | bytearray | memoryview | None = None, *,
                      transport: TransportArg = "tcp", ssl: bool | None = None,
                      ssl_context: ssl_module.SSLContext | None = None,
                      priority: PriorityArg = "normal", stream: int = 0,
                      timeout: float | None = None, **options: Unpack[SendToOptions]) -> int:
        """Send one message through the endpoint's connection pool; return the connection id
        used. The pool opens at most ``pool_size`` connections per endpoint.

        ``send_to(target, data)`` with the targets of :meth:`connect_group` (a list of
        ``"host:port"`` or ``"dns:///name:port"``) sends through a group kept per target
        (``p2c``, ``redeliver=True``), made on first use."""
        self._check_running()
        if not isinstance(port, int):  # send_to(target, data)
            if data is not None:
                raise TypeError("send_to(target, data) takes no third argument")
            key = (host if isinstance(host, str) else tuple(host), transport, ssl, ssl_context)
            group = await self._groups.for_target(key, GroupSpec(
                host, transport, ssl=ssl, ssl_context=ssl_context, options=options))
            await self.send_data(group.id, port, priority=priority, stream=stream,
                                 timeout=timeout)
            return group.id
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise _not_bytes(data)
        if not isinstance(host, str):
            raise TypeError("send_to(host, port, data), or send_to(target, data)")
        assert self._pools is not None
        return await self._pools.send(host, port, data, transport, ssl, ssl_context, priority,
                                      stream, timeout, options)

    def set_bandwidth(self, conn_id: int, max_bandwidth: float | None = None,
                      burst: float | None = None, *,
                      max_receive_bandwidth: float | None = None,
                      receive_burst: float | None = None) -> None:
        """Change a connection's limits at run time (bytes/s; 0 removes a limit; None
        keeps it). Takes effect at once, also across reconnections."""
        self._get(conn_id).set_bandwidth(max_bandwidth, burst, max_receive_bandwidth,
                                         receive_burst)

    async def flush(self, conn_id: int, timeout: float | None = None) -> None:
        """Wait until the peer acknowledged everything sent so far on the connection
        (native framing; across reconnections), or, in raw framing, until it was all handed
        to the socket. Raises ``SendTimeout``, or ``SessionLost`` if the peer lost the
        session (then :meth:`unconfirmed` gives the messages in doubt)."""
        timeout = self.options.timeout if timeout is None else timeout
        group = self._groups.get(conn_id)
        if group is not None:
            await group.flush(timeout)
            return
        await self._get(conn_id).wait_acked(timeout)

    def unconfirmed(self, conn_id: int) -> list[bytes]:
        """Hand over (and forget) the payloads whose delivery could not be confirmed: the
        peer lost the session, or the connection was given up (also after it is gone, e.g.
        a pooled connection that died); see ``SessionLost``."""
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is not None:
                return group.take_unconfirmed()
            orphaned = self._registry.take_orphan(conn_id)
            if orphaned is None:
                raise ConnectionNotFound(conn_id)
            return orphaned
        return conn.take_unconfirmed()

    # -- receiving -------------------------------------------------------------------------------
    async def receive(self, conn_id: int | None = None,
                      timeout: float | None = None) -> Message:
        """The next message from any connection (or from ``conn_id``).

        Raises ``ReceiveTimeout`` (a ``TimeoutError``) after ``timeout`` s (None waits for
        ever).
        """
        self._check_running()
        if conn_id is not None and conn_id not in self._conns:
            msg = self._inbox.get_nowait(conn_id)
            if msg is not None:
                return msg
            raise ConnectionNotFound(conn_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                msg = await self._inbox.get(
                    conn_id, None if deadline is None else max(0.0, deadline - loop.time()))
            except TimeoutError:
                where = "any connection" if conn_id is None else f"connection {conn_id}"
                raise ReceiveTimeout(f"no message from {where} within {timeout:g} s"
                                     ) from None
            if not msg.flags or not self._responder.expired(msg, time.time()):
                return msg

    async def messages(self, conn_id: int | None = None) -> AsyncIterator[Message]:
        """Iterate over received messages until the service stops."""
        while self._running:
            msg = await self._inbox.get(conn_id, None)
            if not msg.flags or not self._responder.expired(msg, time.time()):
                yield msg

    # -- observing -------------------------------------------------------------------------------
    def events(self, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to lifecycle events (:mod:`objtransport.events`) from now on:
        ``async for ev in net.events():``. At most ``maxsize`` wait; a subscriber that lags
        loses the oldest (counted in ``.dropped``). Iteration ends when the service stops;
        ``close()`` (or ``async with``) unsubscribes."""
        return self._events.subscribe(maxsize)

    @staticmethod
    def _wall_offset() -> float:
        return time.time() - asyncio.get_running_loop().time()

    def _get(self, conn_id: int) -> Connection:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise ConnectionNotFound(conn_id)
        return conn

    def connection_info(self, conn_id: int) -> ConnectionInfo:
        """A snapshot of a connection, or of a group (summed over its members; ``role``
        "group", ``host`` the target)."""
        group = self._groups.get(conn_id)
        if group is not None:
            return group.info(self._wall_offset())
        return connection_info(self._get(conn_id), self._wall_offset())

    def connections(self) -> list[int]:
        return self._registry.ids()

    def get_metrics(self) -> TransportMetrics:
        listeners = self._registry.listeners
        return replace(transport_metrics(
            self._totals, self._registry, _listener_datagram(listeners), self._latency,
            connections_refused=sum(x.refused + getattr(x.server, "refused", 0)
                                    for x in listeners),  # + WebSocket 404s
            messages_queued=self._inbox.size, listeners=len(listeners),
            pooled_connections=self._pools.size if self._pools is not None else 0),
            messaging=self._messaging.as_dict())

    async def serve_metrics(self, port: int = 9100, host: str = "127.0.0.1", *,
                            per_connection: bool = False) -> MetricsServer:
        """Serve Prometheus metrics at ``http://host:port/metrics`` (``port=0``: any free
        port, read ``server.port``) until ``await server.close()``. Needs the extra
        ``objtransport[prometheus]``; see :mod:`objtransport.metrics`.

        Example::

            server = await net.serve_metrics(9100)
            ...
            await server.close()
        """
        from .metrics import serve_metrics

        return await serve_metrics(self, port, host, per_connection=per_connection)


#: payload types accepted besides ``bytes`` (checked after the ``type(data) is bytes`` fast path)
_BYTES_LIKE = (bytearray, memoryview)


def _not_bytes(data: object) -> TypeError:
    return TypeError(f"a message payload must be bytes, bytearray or memoryview, not "
                     f"{type(data).__name__}")


def _listener_datagram(listeners: list[Listener]) -> list[dict[str, int]]:
    """The loss counters of the UDP listeners (stream listeners have none)."""
    out = []
    for listener in listeners:
        counters = getattr(listener.server, "counters", None)
        if counters is not None:
            out.append(counters())
    return out
