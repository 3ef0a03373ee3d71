"""Building connections: accepted ones (a listener's ``accept``) and client ones (``connect``
and the pools). Each new connection is registered, given its receiver (inbox or handler),
its breaker and its shared send limits; a client one is connected once before it is
returned."""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
from collections.abc import Callable, Mapping
from typing import Any

from .auth import check_credentials
from .batch import BatchHandler
from .breakers import BreakerRegistry
from .config import Framing, Options, TransportKind
from .connection import Connection, Hooks
from .dispatch import Handler
from .drivers.base import LinkParts
from .drivers.tcp import client_ssl_context
from .endpoint import Endpoint
from .link_setup import make_parts
from .listener import Listener
from .receivers import Receivers
from .registry import Registry
from .sansio.reliability import ResumeState
from .sansio.throttle import TokenBucket
from .sessions import SessionKeeper
from .transports import DriverTable

__all__ = ["Connector"]


class Connector:
    """Makes the service's connections; owns nothing but the service-wide send limit."""

    def __init__(self, options: Options, drivers: DriverTable, registry: Registry,
                 breakers: BreakerRegistry, sessions: SessionKeeper, receivers: Receivers,
                 hooks: Hooks, rng: random.Random, tasks: set[asyncio.Task[None]],
                 forget: Callable[[int], None]) -> None:
        self.options = options
        self._drivers = drivers
        self._registry = registry
        self._breakers = breakers
        self._sessions = sessions
        self._receivers = receivers
        self._hooks = hooks
        self._rng = rng
        self._tasks = tasks
        self._forget = forget
        #: the whole service's send limit (bytes/s), on top of each connection's own
        self.global_bucket: TokenBucket | None = None
        #: accepted peers are refused while False (the service is not running)
        self.accepting = False
        #: one bound method for every accepted connection (see AcceptedSide.resume)
        self._resume_any = self._resume

    def accept(self, listener: Listener) -> LinkParts | None:
        """A listener's driver has a new peer: a server-side connection for it, or None to
        refuse it."""
        if not self.accepting:
            return None
        endpoint = Endpoint(listener.kind, listener.host, listener.port, listener.tls)
        gb = self.global_bucket
        conn = Connection(self._registry.next_id(), endpoint, listener.options,
                          self._breakers.detached(), self._hooks,
                          self._drivers.get(listener.kind), role="server",
                          native=listener.framing is not Framing.RAW, extra=listener.extra,
                          rng=self._rng, shared_buckets=[gb] if gb is not None else None)
        conn.listener = listener
        if conn.server is not None:  # one object per connection, not a partial's three
            conn.server.lookup = self._resume_any
            conn.resume_lookup = conn.server.resume
        self._registry.add(conn)
        self._receivers.attach(conn, listener.handler, listener.batch)
        return make_parts(conn, detect=listener.framing is Framing.AUTO)

    def _resume(self, fresh: Connection, sid: bytes) -> tuple[ResumeState, bool]:
        """An accepted connection's HELLO: resume a kept session (then ``fresh`` was only
        its vehicle and disappears, uncounted) or start one."""
        if fresh.link is not None:  # who the link says it is (authenticate, mutual TLS)
            fresh.identity = getattr(fresh.link, "identity", None) or fresh.identity
        state, resumed = self._sessions.lookup(fresh, sid)
        if resumed:
            self._registry.remove(fresh.id)
            self._receivers.detach(fresh)
        return state, resumed

    async def open(self, host: str, port: int, transport: str | TransportKind,
                   ssl: bool | None, ssl_context: ssl_module.SSLContext | None,
                   server_hostname: str | None, framing: str | Framing,
                   handler: Handler | BatchHandler | None,
                   options: Mapping[str, Any], pooled: bool = False,
                   shared_buckets: list[TokenBucket] | None = None,
                   batch: bool = False) -> Connection:
        """A client connection, connected once (no retry): raises ``ConnectError`` or
        ``CircuitOpenError`` and then leaves nothing behind."""
        driver = self._drivers.get(transport)
        options, extra = self._drivers.split_options(driver, options)
        opts = self.options.for_call(ssl=ssl, **options)
        fr = Framing.parse(framing)
        if fr is Framing.AUTO:
            raise ValueError('framing="auto" is for listeners; a client says what it speaks')
        check_credentials(extra)
        self._drivers.check_auth(driver, extra, fr)
        ctx = client_ssl_context(opts.ssl, ssl_context)
        endpoint = Endpoint(driver.kind, host, port, ctx is not None)
        shared = list(shared_buckets or [])
        if self.global_bucket is not None:
            shared.append(self.global_bucket)
        conn = Connection(self._registry.next_id(), endpoint, opts,
                          self._breakers.for_endpoint(endpoint), self._hooks, driver,
                          extra=extra, native=fr is Framing.NATIVE, ssl_context=ctx,
                          server_hostname=server_hostname, rng=self._rng,
                          shared_buckets=shared)
        conn.pooled = pooled
        self._registry.add(conn)
        self._receivers.attach(conn, handler, batch)
        try:
            await conn.open_first()
        except BaseException:
            self._forget(conn.id)
            raise
        if conn.task is not None:
            self._tasks.add(conn.task)
            conn.task.add_done_callback(self._tasks.discard)
        return conn
