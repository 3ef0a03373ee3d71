"""``NetworkTransport``: the facade with the original Elixir module's API, in Python form.

It composes parts that each own their state: the connections and listeners by id
(:mod:`.registry`), kept listener-side sessions (:mod:`.sessions`), the breakers per endpoint
(:mod:`.breakers`), the pools (:mod:`.pool_manager`), typed totals (:mod:`.counters`), the
drivers (:mod:`.transports`), the inbox (:mod:`.inbox`) and handlers (:mod:`.dispatch`). It
holds no protocol logic. Every task it starts is owned and cancelled on stop.

Here: construction, the lifecycle, ``listen``, ``connect`` and ``disconnect``. The other
public methods are grouped by topic in stateless mixins over :class:`~.api_parts.ServiceParts`:
sending (:mod:`.api_sending`), request/reply and receiving (:mod:`.api_messaging`), groups
(:mod:`.api_groups`), observing (:mod:`.api_observing`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Unpack

from .api_confirming import ConfirmingAPI
from .api_groups import GroupsAPI
from .api_messaging import MessagingAPI
from .api_observing import ObservingAPI
from .api_sending import SendingAPI
from .batch import BatchHandler
from .breakers import BreakerRegistry
from .config import Framing, Options, TransportKind
from .connection import Connection, Endpoint, Hooks
from .connector import Connector
from .counters import ServiceTotals
from .dispatch import Handler
from .drivers.pacing import default_burst
from .endpoint import ConnState
from .events import Event, EventHub, ListenerClosed, Listening
from .exceptions import ConnectError, ListenError, UnsupportedFeature
from .groups import GroupDeps, Groups
from .housekeeping import Housekeeper
from .inbox import Inbox
from .info import TransportMetrics
from .lifecycle import breaker_event, listener_event
from .listener import Listener
from .params import (
    ClientFraming,
    ConnectOptions,
    FramingName,
    ListenOptions,
    ServiceOptions,
    TransportArg,
)
from .pool_manager import PoolManager
from .receivers import Receivers
from .registry import Registry
from .requests import Exchange, MessagingCounters, Responder
from .sansio.chunk_pool import SpareBudget
from .sansio.framing import GoAwayCode
from .sansio.metrics import LatencyHistogram
from .sansio.throttle import TokenBucket
from .sessions import SessionKeeper
from .transports import DriverTable

__all__ = ["NetworkTransport", "TransportMetrics"]

log = logging.getLogger("objtransport")


class NetworkTransport(SendingAPI, ConfirmingAPI, MessagingAPI, GroupsAPI, ObservingAPI):
    """The service. Use ``async with NetworkTransport() as net:`` or ``start()``/``stop()``.

    ``clock`` (a function returning Unix time, ``time.time`` by default) is what message
    ttls are measured on; a test passes a manual one to make them pass without waiting.

    Keyword arguments are the defaults of every call (see :class:`objtransport.Options`):
    ``pool_size=10, timeout=5.0, reconnect_interval=1.0, max_reconnect_attempts=5, ssl=False``,
    ``keepalive_interval``, ``idle_timeout``, ``failure_threshold``, ``reset_timeout``,
    ``max_frame_size``, ``max_message_size`` and more; each call may override them.
    """

    def __init__(self, *, transport: TransportArg = "tcp", rng: random.Random | None = None,
                 max_bandwidth: float = 0.0, burst: float = 0.0,
                 on_event: Callable[[Event], object] | None = None,
                 clock: Callable[[], float] | None = None,
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
        self._metrics_servers = []
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
        if clock is not None:  # ttl deadlines (Unix time by default): tests inject one
            self._hooks.clock = self._responder.clock = clock
        self._hooks.on_expired = self._messaging.expired_all
        self._hooks.spare_chunks = SpareBudget(self.options.max_spare_chunk_bytes)
        self._connector = Connector(self.options, self._drivers, self._registry, self._breakers,
                                    self._sessions, self._receivers, self._hooks, self.rng,
                                    self._tasks, self._keeper.forget)
        self._groups = Groups(GroupDeps(  # connect_group, and send_to's targets
            self._connector.open, self._send_member, self._keeper.forget, self._breakers,
            self._drivers, self._registry.next_id, self.options, self.rng, self._events))

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
        await self._close_metrics_servers()
        self._events.close()

    async def __aenter__(self) -> NetworkTransport:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def transports(self) -> list[str]:
        """The transports this installation supports."""
        return self._drivers.names

    # -- listening -----------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0, *,
                     transport: TransportArg = "tcp",
                     ssl_context: ssl_module.SSLContext | None = None,
                     handler: Handler | BatchHandler | None = None,
                     framing: FramingName | Framing = "native", reuse_port: bool = False,
                     batch: bool = False, **options: Unpack[ListenOptions]) -> Listener:
        """Start a listener; ``port=0`` picks a free port (read it from ``listener.port``).

        Without a ``handler`` messages wait for ``receive()``/``messages()``; a handler (plain
        or ``async def``) is called for each message instead, or with ``batch=True`` once per
        read with a :class:`~objtransport.Batch` of its messages (:mod:`objtransport.batch`).
        ``framing`` is ``"native"``, ``"raw"`` (``{packet, 4}``) or ``"auto"`` (detected
        per connection).
        ``reuse_port=True`` (every transport) sets ``SO_REUSEPORT``: several processes listen on
        one port and the kernel spreads connections among them (:func:`objtransport.serve`).
        """
        self._check_running()
        driver = self._drivers.get(transport)
        rest, extra = self._drivers.split_options(driver, options)
        self._drivers.check_auth(driver, extra, Framing.parse(framing))
        if reuse_port:
            if not getattr(driver, "reuse_port", False):
                raise ValueError(f"reuse_port is not supported by {driver.kind.value}")
            extra["reuse_port"] = True
        opts = self.options.for_call(framing=framing, **rest)
        listener = Listener(host, driver.kind, opts, Framing.parse(framing), handler,
                            ssl_context, self._connector.accept, extra,
                            on_close=self._close_listener, batch=self._batch(handler, batch))
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
                      handler: Handler | BatchHandler | None = None, batch: bool = False,
                      **options: Unpack[ConnectOptions]) -> int:
        """Open a connection and return its id once it is ready to carry messages.

        ``handler`` and ``batch`` as for :meth:`listen` (without a handler, messages wait
        for ``receive()``).

        Raises ``ConnectError`` (refused, unreachable, timed out, TLS rejected) or
        ``CircuitOpenError`` (the endpoint failed too often lately; nothing was attempted).
        After an unexpected loss the connection reconnects by itself, keeping its id.
        """
        self._check_running()
        if options.get("compression") and framing in ("raw", Framing.RAW):
            raise UnsupportedFeature("compression is negotiated in the native HELLO: raw "
                                     "framing cannot carry it")
        return (await self._connector.open(host, port, transport, ssl, ssl_context,
                                           server_hostname, framing, handler, options,
                                           batch=self._batch(handler, batch))).id

    @staticmethod
    def _batch(handler: object, batch: bool) -> bool:
        if batch and handler is None:
            raise ValueError("batch=True needs a handler (without one, use receive_many())")
        return batch

    async def _open_pooled(self, host: str, port: int, kind: TransportKind, ssl: bool | None,
                           ssl_context: ssl_module.SSLContext | None, options: Mapping[str, Any],
                           shared_buckets: list[TokenBucket]) -> Connection:
        self._check_running()
        return await self._connector.open(host, port, kind, ssl, ssl_context, None, "native",
                                          None, options, pooled=True,
                                          shared_buckets=shared_buckets)

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
