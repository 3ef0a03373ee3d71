"""The gRPC listener side: :class:`GrpcServer` (the ``grpc.aio`` server, its health service,
refusals and orderly stop) and :func:`listen`, which serves ``Transport/Connect``: a call is
refused while the listener closes or is full, its bearer token is checked before any slot or
session exists (at most ``max_authentications`` at once, within ``handshake_timeout``), and
it then runs as one :class:`~.grpc.GrpcLink` in the handler. The links and the client side
live in :mod:`.grpc`.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from ..auth import Authenticate, authenticate, bearer
from ..config import Options
from ..exceptions import ConnectError
from ..sansio.core import AnySession
from ..sansio.message import MessageSession
from .authgate import AUTH_LIMIT
from .base import LinkParts
from .grpc_config import (
    AUTHORIZATION,
    NATIVE,
    NATIVE_METADATA,
    OK,
    SERVICE,
    framing_of,
    parse_peer,
    server_credentials,
    server_options,
)

if TYPE_CHECKING:
    from .grpc import GrpcLink

__all__ = ["GrpcServer", "listen"]


class GrpcServer:
    """A ``grpc.aio`` server serving ``Transport`` and ``grpc.health.v1.Health``."""

    def __init__(self, server: grpc.aio.Server, health: health_aio.HealthServicer,
                 port: int) -> None:
        self.server = server
        self.health = health
        self.port = port
        self.closing = False
        #: a call was refused (max_connections) and none ended since: health NOT_SERVING
        self.full = False
        #: calls whose token ``authenticate`` is checking; calls refused for too many
        self.authenticating = 0
        self.auth_busy = 0
        self._health_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Task[None] | None = None

    async def refusing(self) -> None:
        """A call was refused: the listener is full, health says NOT_SERVING (so a
        balancer sends new clients elsewhere) until a call ends."""
        if not self.full and not self.closing:
            self.full = True
            await self.health.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def call_ended(self) -> None:
        """A call ended: a slot is free again."""
        if self.full and not self.closing:
            self.full = False
            await self.health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Stop accepting (new calls are refused with UNAVAILABLE, health says
        NOT_SERVING); the service closes the accepted connections itself, in order."""
        if self.closing:
            return
        self.closing = True
        self._health_task = asyncio.get_running_loop().create_task(
            self.health.enter_graceful_shutdown())

    async def wait_closed(self) -> None:
        """Stop the server (cancelling any call still open, e.g. health watches) and
        release the port."""
        self.close()
        if self._health_task is not None:
            await self._health_task
        if self._stopped is None:
            # a short grace lets health watchers receive NOT_SERVING before they are cut
            self._stopped = asyncio.get_running_loop().create_task(self.server.stop(0.05))
        await asyncio.shield(self._stopped)


async def listen(host: str, port: int, accept: Callable[[], LinkParts | None],
                 ssl_context: ssl_module.SSLContext | None, options: Options,
                 extra: dict[str, Any], link_type: type[GrpcLink]) -> GrpcServer:
    """Serve ``Transport/Connect`` and the health service on ``host:port`` (0: any free
    port). Each call is native when its metadata asks for it, raw otherwise."""
    creds = server_credentials(ssl_context, extra)
    server = grpc.aio.server(options=server_options(options,
                                                     bool(extra.get("reuse_port"))))
    health = health_aio.HealthServicer()
    gserver = GrpcServer(server, health, 0)

    auth = extra.get("authenticate")
    auth_limit = int(extra.get("max_authentications", AUTH_LIMIT))
    deadline = options.handshake_timeout

    async def connect(request_iterator: Any, context: Any) -> None:
        if gserver.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the listener is closing")
            return
        identity = None
        if auth is not None:  # before any slot or session exists
            token = bearer(dict(context.invocation_metadata() or ()).get(AUTHORIZATION))
            identity = await _checked(gserver, auth, token, auth_limit, deadline, context)
            if identity is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication refused")
                return
        parts = accept()
        if parts is None:
            await gserver.refusing()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many connections")
            return
        native = framing_of(context.invocation_metadata()) == NATIVE
        if native:
            await context.send_initial_metadata(NATIVE_METADATA)
        session: AnySession = parts.make_session(native)
        if not native:  # no keepalive of ours: a silent call is cut by its deadlines
            session = MessageSession.like(session, monotonic(), keepalive=False,
                                          idle_limit=True)
        link = link_type(session, parts, parse_peer(context.peer()), context=context)
        link.identity = identity if identity is not None else _tls_subject(context)
        if parts.on_link is not None:
            parts.on_link(link)
        if link.on_made is not None:
            link.on_made(link)
        try:
            await link.run()
        finally:
            await gserver.call_ended()
        code, details = link.final_status()
        if code is not OK:
            context.set_code(code)
            context.set_details(details[:500])

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Connect": grpc.stream_stream_rpc_method_handler(connect)}),))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (server.add_secure_port(address, creds) if creds is not None
                 else server.add_insecure_port(address))
    except RuntimeError as exc:
        raise ConnectError(address, f"cannot listen: {exc}") from exc
    if not bound:
        raise ConnectError(address, "cannot listen: the address cannot be bound")
    gserver.port = bound
    await server.start()
    await health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return gserver


async def _checked(gserver: GrpcServer, fn: Authenticate, token: str | None, limit: int,
                   deadline: float, context: Any) -> str | None:
    """``fn(token)`` for a call, at most ``limit`` at once per listener (one more call ends
    at once with RESOURCE_EXHAUSTED) and within ``deadline`` (else DEADLINE_EXCEEDED)."""
    if gserver.authenticating >= limit:
        gserver.auth_busy += 1
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"too many authentications under way ({limit}); try again")
    gserver.authenticating += 1
    try:
        async with asyncio.timeout(deadline):
            return await authenticate(fn, token)
    except TimeoutError:
        pass
    finally:
        gserver.authenticating -= 1
    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"authentication not done within {deadline:g} s (handshake_timeout)")
    return None


def _tls_subject(context: Any) -> str | None:
    """Mutual TLS: the client certificate's subject (or common name), else None."""
    try:
        auth = context.auth_context()
    except Exception:  # noqa: BLE001 - not every grpc build has it
        return None
    for key, prefix in (("x509_subject", ""), ("x509_common_name", "CN=")):
        values = auth.get(key)
        if values:
            return prefix + bytes(values[0]).decode("utf-8", "replace")
    return None
