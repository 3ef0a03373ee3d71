"""A listening socket and the connections it accepted."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from .config import Framing, Options, TransportKind
from .dispatch import Handler
from .drivers.stream import StreamLink

__all__ = ["Listener"]

log = logging.getLogger("objtransport.listener")


class _Refuse(asyncio.Protocol):
    """Accepts and closes at once: the listener is at ``max_connections``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class Listener:
    """What ``NetworkTransport.listen`` returns: ``host``, ``port``, ``transport``, ``close()``.

    Connections accepted here get ids like client connections; replies go through
    ``send_data(msg.conn_id, ...)``.
    """

    def __init__(self, host: str, transport: TransportKind, options: Options,
                 framing: Framing, handler: Handler | None,
                 ssl_context: ssl_module.SSLContext | None,
                 accept: Callable[[Listener], StreamLink | None]) -> None:
        self.host = host
        self.port = 0
        self.transport = transport.value
        self.kind = transport
        self.options = options
        self.framing = framing
        self.handler = handler
        self.ssl_context = ssl_context
        self._accept = accept
        self.server: asyncio.Server | None = None
        self.connections: set[int] = set()
        self.accepted = 0
        self.refused = 0
        self._close_hook: Callable[[Listener], Any] | None = None

    def __repr__(self) -> str:
        tls = "+tls" if self.ssl_context is not None else ""
        return (f"<Listener {self.transport}{tls}://{self.host}:{self.port} "
                f"framing={self.framing.value} connections={len(self.connections)}>")

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def protocol_factory(self) -> asyncio.BaseProtocol:
        """Called by asyncio for each accepted socket."""
        if len(self.connections) >= self.options.max_connections:
            self.refused += 1
            if self.refused == 1:
                log.warning("%r: max_connections (%d) reached; refusing new connections "
                            "(logged once)", self, self.options.max_connections)
            return _Refuse()
        link = self._accept(self)
        if link is None:
            return _Refuse()
        self.accepted += 1
        return link

    @property
    def sockets(self) -> list[Any]:
        return list(self.server.sockets) if self.server is not None else []

    async def close(self) -> None:
        """Stop accepting and close every connection this listener accepted (orderly)."""
        server = self.server
        if server is not None:
            server.close()
        hook = self._close_hook
        if hook is not None:
            self._close_hook = None
            await hook(self)
        if server is not None:
            await server.wait_closed()
        self.server = None
