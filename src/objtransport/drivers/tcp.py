"""Opening and serving TCP / TLS sockets, with OS and TLS errors mapped into our tree."""

from __future__ import annotations

import asyncio
import errno
import ssl as ssl_module
from collections.abc import Callable

from ..exceptions import ConnectError
from .stream import StreamLink

__all__ = ["client_ssl_context", "describe_connect_error", "open_stream", "serve_stream"]


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
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"unreachable ({exc.strerror})"
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


async def open_stream(host: str, port: int, factory: Callable[[], StreamLink],
                      ssl_context: ssl_module.SSLContext | None, timeout: float,
                      server_hostname: str | None = None) -> StreamLink:
    """Connect, run the TLS handshake if any, then wait for the session handshake.

    Everything that can go wrong before the session is open raises ``ConnectError`` naming
    the endpoint and the reason (the original exception is chained).
    """
    loop = asyncio.get_running_loop()
    endpoint = f"{host}:{port}"
    link: StreamLink | None = None
    try:
        async with asyncio.timeout(timeout):
            if ssl_context is not None:
                _, link = await loop.create_connection(
                    factory, host, port, ssl=ssl_context,
                    server_hostname=server_hostname or host, ssl_handshake_timeout=timeout)
            else:
                _, link = await loop.create_connection(factory, host, port)
            await asyncio.shield(link.ready)
        return link
    except (OSError, TimeoutError, ssl_module.SSLError) as exc:
        if link is not None:
            link.abort()
        raise ConnectError(endpoint, describe_connect_error(exc)) from exc
    except Exception as exc:
        if link is not None:
            link.abort()
        if isinstance(exc, ConnectError):
            raise
        from ..exceptions import TransportError

        if isinstance(exc, TransportError):
            raise ConnectError(endpoint, f"handshake failed: {exc}") from exc
        raise


async def serve_stream(host: str, port: int, factory: Callable[[], asyncio.BaseProtocol],
                       ssl_context: ssl_module.SSLContext | None,
                       backlog: int = 1024) -> asyncio.Server:
    """Bind and start serving; raises ``ConnectError`` if the address cannot be bound."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(factory, host, port, ssl=ssl_context, backlog=backlog,
                                        reuse_address=True)
    except OSError as exc:
        raise ConnectError(f"{host}:{port}", f"cannot listen: {describe_connect_error(exc)}"
                           ) from exc
