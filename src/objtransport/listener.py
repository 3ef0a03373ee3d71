"""A listening socket and the connections it accepted."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .batch import BatchHandler
from .config import Framing, Options, TransportKind
from .dispatch import Handler
from .drivers.base import LinkParts, Server
from .logfields import log_fields
from .loglimit import LogTally

__all__ = ["Listener"]

log = logging.getLogger("objtransport.listener")

#: accepted sockets lost before their handshake are summed up in one line this often
EARLY_END_INTERVAL = 10.0


class Listener:
    """What ``NetworkTransport.listen`` returns: ``host``, ``port``, ``transport``, ``close()``.

    Connections accepted here get ids like client connections; replies go through
    ``send_data(msg.conn_id, ...)``.
    """

    def __init__(self, host: str, transport: TransportKind, options: Options,
                 framing: Framing, handler: Handler | BatchHandler | None,
                 ssl_context: ssl_module.SSLContext | None,
                 accept: Callable[[Listener], LinkParts | None],
                 extra: dict[str, Any] | None = None,
                 on_close: Callable[[Listener], Awaitable[None]] | None = None,
                 batch: bool = False) -> None:
        self.host = host
        self.port = 0
        self.transport = transport.value
        self.kind = transport
        self.options = options
        self.framing = framing
        self.handler = handler
        #: the handler gets one :class:`~.batch.Batch` per read
        self.batch = batch
        self.ssl_context = ssl_context
        self._accept = accept
        self.extra = extra or {}
        self.server: Server | None = None
        self.connections: set[int] = set()
        #: of those, the broken sessions kept for a resume: they hold no max_connections slot
        self.kept: set[int] = set()
        self.accepted = 0
        self.refused = 0
        #: accepted sockets lost before their handshake (EOF or reset before HELLO)
        self.early_ends = 0
        self._early = LogTally(EARLY_END_INTERVAL)
        self._early_timer: asyncio.TimerHandle | None = None
        #: the owner's part of close(): close the accepted connections (called once)
        self._on_close = on_close

    def __repr__(self) -> str:
        tls = "+tls" if self.tls else ""
        return (f"<Listener {self.transport}{tls}://{self.host}:{self.port} "
                f"framing={self.framing.value} connections={self.live} kept={len(self.kept)}>")

    @property
    def live(self) -> int:
        """Accepted connections that hold a ``max_connections`` slot (kept sessions hold
        none: :class:`~.sessions.SessionKeeper` bounds them by ``max_kept_sessions``)."""
        return len(self.connections) - len(self.kept)

    def add(self, conn_id: int) -> None:
        """An accepted connection takes a slot."""
        self.connections.add(conn_id)

    def keep(self, conn_id: int) -> None:
        """The connection lost its socket and waits for a resume: its slot is free."""
        if conn_id in self.connections:
            self.kept.add(conn_id)

    def unkeep(self, conn_id: int) -> None:
        """The kept connection was resumed (it holds a slot again) or ended."""
        self.kept.discard(conn_id)

    def remove(self, conn_id: int) -> None:
        """The connection is gone."""
        self.connections.discard(conn_id)
        self.kept.discard(conn_id)

    @property
    def tls(self) -> bool:
        """Serving TLS: an ``ssl_context``, or PEM material (gRPC's ``certificate_chain``)."""
        return self.ssl_context is not None or bool(self.extra.get("certificate_chain"))

    def accept(self) -> LinkParts | None:
        """Called by the driver for each new peer; ``None`` refuses it."""
        if self.live >= self.options.max_connections:
            self.refused += 1
            if self.refused == 1:
                log.warning("%r: max_connections (%d) reached; refusing new connections "
                            "(logged once)", self, self.options.max_connections,
                            extra=log_fields(None, f"{self.transport}://{self.host}:{self.port}",
                                             self.transport))
            return None
        parts = self._accept(self)
        if parts is not None:
            self.accepted += 1
        return parts

    def early_end(self, reason: str) -> None:
        """An accepted socket was lost before its handshake: counted, and reported in one
        WARNING line per :data:`EARLY_END_INTERVAL` with the counts by reason (an attack
        must not become a log flood)."""
        self.early_ends += 1
        first = not self._early.counts
        counts = self._early.add(reason, time.monotonic())
        if counts is not None:
            self._log_early(counts)
        elif first and self._early_timer is None:  # the line comes even if none follows
            self._early_timer = asyncio.get_running_loop().call_later(
                EARLY_END_INTERVAL, self._flush_early)

    def _flush_early(self) -> None:
        if self._early_timer is not None:
            self._early_timer.cancel()
            self._early_timer = None
        counts = self._early.take()
        if counts is not None:
            self._log_early(counts)

    def _log_early(self, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        detail = "; ".join(f"{n} x {why}" for why, n in sorted(counts.items(),
                                                                key=lambda kv: -kv[1]))
        log.warning("%r: %d accepted connection(s) lost before their handshake (%s)",
                    self, total, detail,
                    extra=log_fields(None, f"{self.transport}://{self.host}:{self.port}",
                                     self.transport))

    async def close(self) -> None:
        """Stop accepting and close every connection this listener accepted (orderly)."""
        self._flush_early()
        server = self.server
        if server is not None:
            server.close()
        hook = self._on_close
        if hook is not None:
            self._on_close = None
            await hook(self)
        if server is not None:
            await server.wait_closed()
        self.server = None
        self._flush_early()  # those lost while closing
