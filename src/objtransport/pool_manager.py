"""The connection pools behind ``send_to``: the async half of :mod:`.sansio.pool`.

The bookkeeper decides (assign / open / wait); this module does the I/O it asks for. Per
endpoint (transport, host, port, TLS) at most ``pool_size`` connections exist. After an
unexpected loss a pooled connection reconnects and resumes its session like any other (so
nothing sent through the pool is lost); one the peer closes in order, or that runs out of
reconnect attempts, leaves the pool and the next ``send_to`` opens a replacement. Idle
ones are closed after ``idle_timeout``. When the endpoint's circuit is open, ``send_to``
fails at once without touching the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .config import Options, TransportKind
from .connection import Connection
from .drivers.pacing import default_burst
from .drivers.tcp import client_ssl_context
from .endpoint import Endpoint
from .exceptions import CircuitOpenError, NoAvailableConnection
from .params import PriorityArg
from .sansio.breaker import BreakerState, CircuitBreaker
from .sansio.pool import Assign, Open, PoolBookkeeper
from .sansio.throttle import TokenBucket

_OPTION_FIELDS = frozenset(f.name for f in dataclasses.fields(Options))

__all__ = ["Opener", "PoolManager", "Sender"]

#: opens a pooled connection: (host, port, kind, ssl, ssl_context, options, shared buckets)
Opener = Callable[[str, int, TransportKind, "bool | None", "ssl_module.SSLContext | None",
                   Mapping[str, Any], list[TokenBucket]], Awaitable[Connection]]
#: sends on a connection: (conn_id, data, priority, stream, timeout)
Sender = Callable[[int, "bytes | bytearray | memoryview", PriorityArg, int, float],
                  Awaitable[None]]


class _Pool:
    __slots__ = ("book", "changed", "buckets")

    def __init__(self, size: int, idle_timeout: float) -> None:
        self.book = PoolBookkeeper(size, idle_timeout)
        self.changed = asyncio.Event()
        #: one send limit shared by the endpoint's pooled connections (send_to's
        #: max_bandwidth)
        self.buckets: list[TokenBucket] = []

    def pulse(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class PoolManager:
    """All pools of one service. It is given what it needs as functions: ``resolve`` a
    transport name, ``open`` a connection, ``send`` on one, ``close`` one (idle), and the
    endpoint's breaker; it never sees the service."""

    def __init__(self, options: Options,
                 resolve: Callable[[str | TransportKind], TransportKind],
                 open: Opener, send: Sender, close: Callable[[int], Awaitable[None]],
                 breaker_for: Callable[[Endpoint], CircuitBreaker]) -> None:
        self.options = options
        self._resolve = resolve
        self._open = open
        self._send = send
        self._close = close
        self._breaker_for = breaker_for
        self._pools: dict[Endpoint, _Pool] = {}
        self._housekeeper: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return sum(len(p.book) for p in self._pools.values())

    def __repr__(self) -> str:
        return "<PoolManager " + ", ".join(f"{ep}: {p.book!r}" for ep, p in
                                          self._pools.items()) + ">"

    async def send(self, host: str, port: int, data: bytes | bytearray | memoryview,
                   transport: str | TransportKind, ssl: bool | None,
                   ssl_context: ssl_module.SSLContext | None, priority: PriorityArg,
                   stream: int, timeout: float | None, options: Mapping[str, Any],
                   send: Any = None) -> int:
        """``send`` (same signature as the pool's own) replaces how the message goes on
        the connection chosen (``request_to``)."""
        kind = self._resolve(transport)
        sender = send or self._send
        # a driver's own options (PEM certificates, a WebSocket path) go to the connections
        # only; the connector checks them against the driver
        opts = self.options.for_call(
            ssl=ssl, **{k: v for k, v in options.items() if k in _OPTION_FIELDS})
        tls = client_ssl_context(opts.ssl, ssl_context) is not None
        ep = Endpoint(kind, host, port, tls)
        pool = self._pool_for(ep, opts.pool_size, opts.idle_timeout)
        if opts.max_bandwidth > 0:
            now = asyncio.get_running_loop().time()
            burst = opts.burst or default_burst(opts.max_bandwidth)
            if pool.buckets:
                pool.buckets[0].set_rate(opts.max_bandwidth, burst, now)
            else:
                pool.buckets.append(TokenBucket(opts.max_bandwidth, burst, now))
        conn_options = {k: v for k, v in options.items() if k not in ("max_bandwidth", "burst")}
        breaker = self._breaker_for(ep)
        loop = asyncio.get_running_loop()
        timeout = opts.timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        n = len(data)
        while True:
            now = loop.time()
            if breaker.state is BreakerState.OPEN and breaker.retry_after(now) > 0:
                raise CircuitOpenError(str(ep), breaker.retry_after(now))
            action = pool.book.checkout(n, now)
            if isinstance(action, Assign):
                try:
                    await sender(action.conn_id, data, priority, stream,
                                     max(0.0, deadline - loop.time()))
                finally:
                    pool.book.release(action.conn_id, n, loop.time())
                    pool.pulse()
                return action.conn_id
            if isinstance(action, Open):
                try:
                    conn = await self._open(host, port, kind, ssl, ssl_context,
                                            dict(conn_options), pool.buckets)
                except BaseException:
                    pool.book.open_failed(action.slot)
                    pool.pulse()
                    raise
                conn.pool_endpoint = ep
                pool.book.opened(action.slot, conn.id, loop.time())
                pool.pulse()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoAvailableConnection(
                    f"no connection to {ep} became available within {timeout:g} s "
                    f"(pool_size={opts.pool_size}, all opening)")
            try:
                async with asyncio.timeout(remaining):
                    await pool.changed.wait()
            except TimeoutError:
                continue

    def _pool_for(self, ep: Endpoint, size: int, idle_timeout: float) -> _Pool:
        pool = self._pools.get(ep)
        if pool is None:
            pool = self._pools[ep] = _Pool(size, idle_timeout)
            if self._housekeeper is None:
                self._housekeeper = asyncio.create_task(self._housekeep(),
                                                        name="objtransport-pool-idle")
        return pool

    def forget(self, conn: Connection) -> None:
        """A pooled connection died or was closed: it leaves its pool."""
        ep = conn.pool_endpoint
        pool = self._pools.get(ep) if ep is not None else None
        if pool is not None:
            pool.book.remove(conn.id)
            pool.pulse()

    async def _housekeep(self) -> None:
        """Close pooled connections idle past ``idle_timeout``."""
        loop = asyncio.get_running_loop()
        while True:
            deadlines = [d for p in self._pools.values()
                         if (d := p.book.next_deadline()) is not None]
            wait = min(deadlines) - loop.time() if deadlines else self.options.idle_timeout
            await asyncio.sleep(min(max(wait, 0.01), 1.0))
            now = loop.time()
            for pool in self._pools.values():
                for cid in pool.book.expire_idle(now):
                    await self._close(cid)

    def close(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            self._housekeeper = None


