"""What every transport driver provides, and what the layers above may rely on.

A driver turns sessions into links over its kind of socket. The connection layer builds
sessions and callbacks (:class:`LinkParts`); the driver builds the link around them:

* ``await driver.open(host, port, parts, ...)`` returns an open :class:`Link` (the session
  handshake done) or raises ``ConnectError`` naming the endpoint and the reason;
* ``await driver.serve(host, port, accept, ...)`` returns a :class:`Server`; for each accepted
  peer it calls ``accept()`` for the parts (``None`` refuses the peer).

Drivers never import the service or the connection layer.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..config import Options, TransportKind
from ..sansio.core import AnySession, Session
from ..sansio.events import Closed, Event, Received
from ..sansio.framing import GoAwayCode
from ..sansio.throttle import TokenBucket
from .pacing import Pacer

__all__ = ["Driver", "Link", "LinkParts", "OnMessages", "Server", "StoppableLink"]


class OnMessages(Protocol):
    """Where a link hands the messages of a read (the connection's ``on_messages``).
    ``received``: the link's session's ``delivered_bytes`` after the read (a TCP link's
    read hands its decoder's ``bytes_received``, the same figure)."""

    def __call__(self, msgs: list[Received], received: int, /) -> None: ...


class Link(Protocol):
    """One live socket (or stream, or datagram peer) bound to one session."""

    peer: Any
    ready: asyncio.Future[None]  # session handshake complete
    closed: asyncio.Future[Closed]  # session ended
    lost: asyncio.Future[None]  # the socket is gone
    on_made: Callable[[Any], None] | None
    last_seq: int  # the sequence number of the last message send() queued
    on_messages: OnMessages
    on_event: Callable[[Any, Event], None]

    @property
    def session(self) -> AnySession: ...

    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool: ...

    def queue(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
              text: bool = False) -> bool: ...

    def queue_many(self, datas: Iterable[bytes | bytearray | memoryview], stream: int = 0,
                   priority: int = 2, text: bool = False) -> bool: ...

    async def wait_writable(self, timeout: float, priority: int = 3) -> None: ...

    def backlog(self, priority: int = 3) -> int: ...

    max_pending: int

    async def wait_flushed(self, timeout: float) -> None: ...

    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self, reason: str = "consumer") -> None: ...

    def resume_reading(self, reason: str = "consumer") -> None: ...

    @property
    def pending_bytes(self) -> int: ...


@runtime_checkable
class StoppableLink(Protocol):
    """A link that runs a task of its own, which may still run once the link is lost or
    closed (gRPC's client reader waits for grpc to report the end of its call). Its owner
    waits for it (``isinstance(link, StoppableLink)``) before reconnecting or returning
    from a close, so nothing of the link is left running."""

    async def wait_stopped(self, deadline: float) -> bool:
        """Wait for the link's task to end until ``deadline`` (loop time, one deadline for
        the whole wait), then cancel it (:func:`.stopping.stop_by`); False if it still
        runs after that (logged; the owner counts it as an error of the connection)."""
        ...


@dataclass
class LinkParts:
    """What a driver needs to build a link: sessions on demand and the owner's callbacks."""

    #: a new session: native (True), raw (False), or a native placeholder that sends
    #: nothing until the framing is detected (None)
    make_session: Callable[[bool | None], Session]
    #: the framing: True native, False raw, None detect from the peer's first bytes
    native: bool | None
    on_messages: OnMessages
    on_event: Callable[[Any, Event], None]
    max_pending: int
    #: transport-specific options (e.g. a WebSocket path)
    extra: dict[str, Any] = field(default_factory=dict)
    #: told about the link a driver built for an accepted peer, before any byte flows
    on_link: Callable[[Any], None] | None = None
    #: the buckets limiting what the link sends (shared, so rate changes apply at once)
    pacer: Pacer = field(default_factory=Pacer)
    #: the bucket limiting what the link reads, if any
    receive_bucket: TokenBucket | None = None


class Server(Protocol):
    """A listening endpoint."""

    port: int

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class Driver(Protocol):
    kind: TransportKind
    #: option names beyond :class:`Options` that connect()/listen() pass through
    extra_options: frozenset[str]

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> Link: ...

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> Server: ...
