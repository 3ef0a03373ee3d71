"""The gRPC transport's driver: opening a client call (:meth:`GrpcDriver.open`) and serving
(:meth:`GrpcDriver.serve`, see :mod:`.grpc_listener`). The links themselves live in
:mod:`.grpc`.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable
from time import monotonic
from typing import Any

import grpc

from ..auth import AUTH_OPTIONS, bearer_header
from ..config import Options, TransportKind
from ..exceptions import AuthenticationError, ConnectError, TransportError
from ..sansio.core import AnySession
from ..sansio.message import MessageSession
from .base import LinkParts
from .grpc import GrpcLink
from .grpc_config import (
    AUTHORIZATION,
    LOST,
    METHOD,
    NATIVE,
    NATIVE_METADATA,
    OK,
    TLS_OPTIONS,
    channel_options,
    client_credentials,
    describe_rpc_error,
    framing_of,
)
from .grpc_listener import GrpcServer, listen

__all__ = ["GrpcDriver"]

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


class GrpcDriver:
    """``transport="grpc"``: native or raw per call, plaintext or TLS (PEM options)."""

    kind = TransportKind.GRPC
    extra_options: frozenset[str] = TLS_OPTIONS | AUTH_OPTIONS
    #: ``listen(reuse_port=True)``: grpc's own ``grpc.so_reuseport`` (off otherwise)
    reuse_port = True

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> GrpcLink:
        """Open a channel and the ``Connect`` call, then wait for the session handshake
        (native). Raises ``ConnectError`` naming the endpoint and the reason: refused, TLS,
        timed out, a server that does not serve the method, or one that does not answer
        in native mode."""
        endpoint = f"{f'[{host}]' if ':' in host else host}:{port}"
        native = parts.native is not False
        creds = client_credentials(ssl_context, parts.extra)
        opts = channel_options(options, native, server_hostname)
        channel = (grpc.aio.secure_channel(endpoint, creds, opts) if creds is not None
                   else grpc.aio.insecure_channel(endpoint, opts))
        call: Any = None
        link: GrpcLink | None = None
        stage = "connecting"
        metadata = list(NATIVE_METADATA) if native else []
        token = parts.extra.get("token")
        if token is not None:
            metadata.append((AUTHORIZATION, bearer_header(token)))
        try:
            async with asyncio.timeout(options.timeout):
                call = channel.stream_stream(METHOD)(
                    metadata=tuple(metadata) or None, wait_for_ready=False)
                try:
                    await call.wait_for_connection()
                except grpc.aio.AioRpcError as exc:
                    if native or exc.code() in LOST or exc.code() is _UNAUTHENTICATED:
                        raise
                    # raw: the server answered, and its status ended the call already;
                    # as when it comes a moment later, the link reports it (not a raise)
                if native:
                    # the HELLO waits for the listener's answer: a call it refused (full,
                    # closing) is never written to, as grpc's aio client reports a write
                    # that races the end of the call as INTERNAL, hiding the real status
                    stage = ("waiting for the listener's answer (a plain gRPC server? "
                             "connect with framing='raw')")
                    await self._check_native(call, endpoint)
                session: AnySession = parts.make_session(native)
                if not native:
                    session = MessageSession.like(session, monotonic(),
                                                  keepalive=False)
                link = GrpcLink(session, parts, (host, port), call=call, channel=channel)
                link.start()  # a native client speaks first: its HELLO goes out now
                stage = "in the session handshake"
                await asyncio.shield(link.ready)
            return link
        except grpc.aio.AioRpcError as exc:
            await _abandon(channel, call, link)
            raise _connect_error(endpoint, exc.code(), exc.details() or "") from exc
        except TimeoutError as exc:
            await _abandon(channel, call, link)
            raise ConnectError(endpoint, f"timed out {stage}") from exc
        except TransportError as exc:
            await _abandon(channel, call, link)
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(endpoint, f"handshake failed: {exc}") from exc
        except BaseException:
            await _abandon(channel, call, link)
            raise

    @staticmethod
    async def _check_native(call: Any, endpoint: str) -> None:
        metadata = await call.initial_metadata()
        if framing_of(metadata) == NATIVE:
            return
        # not objtransport: a status may be on its way (e.g. UNIMPLEMENTED) and says more
        status = asyncio.ensure_future(call.code())
        await asyncio.wait([status], timeout=0.25)
        if not status.done():
            status.cancel()
        elif status.result() is not OK:
            raise _connect_error(endpoint, status.result(), await call.details() or "")
        raise ConnectError(endpoint, "the server did not answer in native mode (a plain "
                           "gRPC server? connect with framing='raw')")

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> GrpcServer:
        """Serve ``Transport/Connect`` and the health service on ``host:port`` (0: any free
        port). Each call is native when its metadata asks for it, raw otherwise (see
        :func:`.grpc_listener.listen`)."""
        return await listen(host, port, accept, ssl_context, options, extra, GrpcLink)


def _connect_error(endpoint: str, code: grpc.StatusCode, details: str) -> ConnectError:
    if code is _UNAUTHENTICATED:
        return AuthenticationError(endpoint, f"authentication refused ({details})")
    return ConnectError(endpoint, describe_rpc_error(code, details))


async def _abandon(channel: grpc.aio.Channel, call: Any, link: GrpcLink | None) -> None:
    """A connect failed: drop the call (the link's task closes the channel) or the channel."""
    if link is not None:
        link.abort()
        return
    if call is not None:
        call.cancel()
    await channel.close()
