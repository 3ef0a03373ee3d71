"""TCP and TLS: opening and serving stream sockets, OS and TLS errors mapped into our tree."""

from __future__ import annotations

import asyncio
import errno
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from ..auth import AUTH_OPTIONS
from ..config import Options, TransportKind
from ..exceptions import AuthenticationError, ConnectError, ConnectionClosed, TransportError
from ..sansio.framing import GoAwayCode
from ..sansio.reassembly import ReassemblyBudget
from .authgate import AUTH_LIMIT, AuthGate
from .base import LinkParts
from .stream import StreamLink

__all__ = ["TcpDriver", "client_ssl_context", "describe_connect_error"]


def client_ssl_context(ssl: bool, ssl_context: ssl_module.SSLContext | None,
                       ) -> ssl_module.SSLContext | None:
    """The context a client uses: the caller's, a verifying default, or none.

    ``ssl=True`` gives ``ssl.create_default_context()``: certificates and host names are
    verified. Turning verification off needs an explicit context from the caller.
    """
    if ssl_context is not None:
        return ssl_context
    if ssl:
        return ssl_module.create_default_context(ssl_module.Purpose.SERVER_AUTH)
    return None


def describe_connect_error(exc: BaseException) -> str:
    """A short, specific reason for a failed connect."""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl_module.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"unreachable ({exc.strerror})"
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


#: after asyncio's own ssl_handshake_timeout has cut the socket
_HANDSHAKE_MARGIN = 0.05


def _handshake_deadline(link: StreamLink, timeout: float) -> None:
    """A TLS listener's socket whose handshake is not done ``timeout`` s after accept
    never reaches its link: asyncio cut it (ssl_handshake_timeout), or the handshake failed,
    and asyncio tells the link neither. End the link, so its connection and its
    ``max_connections`` slot go."""
    if link.transport is None and not link.lost.done():
        link.connection_lost(ConnectionAbortedError(
            f"TLS handshake not done within {timeout:g} s (handshake_timeout)"))


#: what OpenSSL says when the other side answered a ClientHello with something else than TLS
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                      "UNEXPECTED_RECORD", "HTTP_REQUEST", "UNEXPECTED_EOF_WHILE_READING"})


def _plain_answer(exc: BaseException) -> bool:
    """Did a TLS handshake fail the way it does against a plain listener (it sends
    something else than TLS, or closes or resets at the ClientHello)?"""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl_module.SSLEOFError | ConnectionResetError | ConnectionAbortedError):
        return True
    return isinstance(exc, ssl_module.SSLError) and exc.reason in _NOT_TLS


class _Refuse(asyncio.Protocol):
    """Accepts and closes at once (the listener refused the peer)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def refusal(endpoint: str, exc: TransportError) -> AuthenticationError | None:
    """The ``AuthenticationError`` for a session the listener ended with GOAWAY
    ``UNAUTHENTICATED`` during the handshake, else None."""
    if isinstance(exc, ConnectionClosed) and exc.code == GoAwayCode.UNAUTHENTICATED:
        return AuthenticationError(endpoint, exc.reason or "authentication refused")
    return None


def auth_gate(extra: dict[str, Any]) -> AuthGate | None:
    """A listener's gate for ``authenticate=`` (None without one)."""
    fn = extra.get("authenticate")
    if fn is None:
        return None
    if not callable(fn):
        raise TypeError("authenticate must be a function: fn(token) -> identity | None")
    return AuthGate(fn, int(extra.get("max_authentications", AUTH_LIMIT)))


class TcpServer:
    def __init__(self, server: asyncio.Server, budget: ReassemblyBudget,
                 auth: AuthGate | None = None) -> None:
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]
        #: memory held for incomplete messages by every connection of the listener
        self.budget = budget
        #: the HELLO tokens' authentications (None: the listener does not authenticate)
        self.auth = auth

    def counters(self) -> dict[str, int]:
        """The listener's own figures (the connections' are on their connections)."""
        b = self.budget
        out = {"reassembly_bytes": b.used, "reassembly_peak": b.peak,
               "reassembly_refused": b.refused}
        if self.auth is not None:
            out.update(self.auth.counters())
        return out

    def close(self) -> None:
        if self.auth is not None:
            self.auth.close()
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


class TcpDriver:
    """Stream sockets, plain or TLS, native or raw framing (``StreamLink``)."""

    kind = TransportKind.TCP
    extra_options: frozenset[str] = AUTH_OPTIONS
    #: ``listen(reuse_port=True)``: SO_REUSEPORT, so that N processes share one port
    reuse_port = True

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> StreamLink:
        """Connect, run the TLS handshake if any, then wait for the session handshake.

        Everything that can go wrong before the session is open raises ``ConnectError``
        naming the endpoint and the reason (the original exception is chained).
        """
        loop = asyncio.get_running_loop()
        endpoint = f"{host}:{port}"
        timeout = options.timeout
        link: StreamLink | None = None
        try:
            async with asyncio.timeout(timeout):
                factory = lambda: StreamLink.from_parts(parts)  # noqa: E731
                if ssl_context is not None:
                    _, link = await loop.create_connection(
                        factory, host, port, ssl=ssl_context,
                        server_hostname=server_hostname or host,
                        ssl_handshake_timeout=min(timeout, options.handshake_timeout))
                else:
                    _, link = await loop.create_connection(factory, host, port)
                await asyncio.shield(link.ready)
            return link
        except (OSError, TimeoutError, ssl_module.SSLError) as exc:
            reason = describe_connect_error(exc)
            if link is not None:
                link.abort()
            elif ssl_context is not None and _plain_answer(exc):
                reason += ": the listener does not speak TLS? connect without ssl=True"
            raise ConnectError(endpoint, reason) from exc
        except TransportError as exc:
            if link is not None:
                link.abort()
            if isinstance(exc, ConnectError):
                raise
            refused = refusal(endpoint, exc)
            if refused is not None:
                raise refused from exc
            raise ConnectError(endpoint, f"handshake failed: {exc}") from exc

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> TcpServer:
        """Bind and start serving; raises ``ConnectError`` if the address cannot be bound."""
        loop = asyncio.get_running_loop()
        budget = ReassemblyBudget(options.max_total_reassembly_bytes)

        handshake = options.handshake_timeout
        gate = auth_gate(extra)

        def factory() -> asyncio.BaseProtocol:
            parts = accept()
            if parts is None:
                return _Refuse()
            link = StreamLink.from_parts(parts, budget)
            if gate is not None:
                link.use_auth(gate)
            if ssl_context is not None:
                loop.call_later(handshake + _HANDSHAKE_MARGIN, _handshake_deadline, link,
                                handshake)
            return link

        try:
            server = await loop.create_server(
                factory, host, port, ssl=ssl_context, backlog=1024, reuse_address=True,
                reuse_port=bool(extra.get("reuse_port")) or None,
                ssl_handshake_timeout=handshake if ssl_context is not None else None)
        except OSError as exc:
            raise ConnectError(f"{host}:{port}",
                               f"cannot listen: {describe_connect_error(exc)}") from exc
        return TcpServer(server, budget, gate)
