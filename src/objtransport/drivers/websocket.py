"""WebSocket (ws:// and wss://) on the public sans-I/O API of the ``websockets`` library.

The driver opens and serves WebSockets; each one is a
:class:`~.websocket_conn.WsConnection` (an asyncio protocol pumping a ``websockets``
``ClientProtocol`` / ``ServerProtocol``) under a :class:`~.websocket_link.WebSocketLink`
(the session's side). A connection is native when both ends agree on the subprotocol
``objtransport.v1``, raw otherwise. ``websockets`` exceptions are mapped into the
objtransport tree here and never reach the caller.

A listener serves one ``path``; a request for any other path is answered 404, logged (once
per peer host and minute) and counted in ``refused``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ..auth import (
    AUTH_OPTIONS,
    Authenticate,
    authenticate,
    bearer,
    bearer_header,
    certificate_subject,
)
from ..config import Options, TransportKind
from ..exceptions import AuthenticationError, ConnectError, TransportError
from ..logfields import log_fields
from ..sansio.core import AnySession
from ..sansio.framing import MAGIC, GoAwayCode, encode_goaway
from ..sansio.message import MessageSession
from ..sansio.sniff import WEBSOCKET_LISTENER, not_websocket
from .authgate import AUTH_LIMIT
from .base import LinkParts
from .tcp import describe_connect_error
from .websocket_conn import WsConnection
from .websocket_link import CARRIER_MAX, WebSocketLink, ws_close_code

__all__ = ["CARRIER_MAX", "DEFAULT_PATH", "SUBPROTOCOL", "WebSocketDriver", "WebSocketLink",
           "WebSocketServer", "ws_close_code"]

log = logging.getLogger("objtransport.websocket")

#: the subprotocol that selects the native framing
SUBPROTOCOL = Subprotocol("objtransport.v1")
#: the URL path a listener serves and a client asks for, unless ``path=`` says otherwise
DEFAULT_PATH = "/"
#: a wrong path from the same peer host is logged at most once per this many seconds
NOT_FOUND_LOG_INTERVAL = 60.0


class WebSocketServer:
    """A listening socket serving WebSockets on one path."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.server: asyncio.Server | None = None
        self.port = 0
        #: requests refused: a path not served (404)
        self.refused = 0
        #: connections closed at once because the peer did not speak HTTP (or spoke TLS)
        self.wrong_peers = 0
        self._logged: dict[Any, float] = {}  # peer host -> when its 404 was last logged
        #: upgrade requests whose token ``authenticate`` is checking (at most
        #: ``max_authentications``; more are answered 503: ``auth_busy``)
        self.checks: set[asyncio.Task[None]] = set()
        self.auth_busy = 0

    def not_found(self, conn: WsConnection, request: Request) -> None:
        """Answer a request for a path this listener does not serve: 404, logged, counted."""
        self.refused += 1
        host = conn.peer[0] if isinstance(conn.peer, tuple) else conn.peer
        now = time.monotonic()
        last = self._logged.get(host)
        if last is None or now - last >= NOT_FOUND_LOG_INTERVAL:
            if len(self._logged) >= 1024:
                self._logged.clear()
            self._logged[host] = now
            log.warning("WebSocket request from %s for %r refused with 404: this listener "
                        "serves %r (logged once per peer per %g s; %d refused so far)",
                        _show(conn.peer), request.path, self.path, NOT_FOUND_LOG_INTERVAL,
                        self.refused,
                        extra=log_fields(None, f"websocket://{_show(conn.peer)}", "websocket"))
        protocol = conn.protocol
        assert isinstance(protocol, ServerProtocol)
        conn.respond(protocol.reject(HTTPStatus.NOT_FOUND,
                                     f"no WebSocket endpoint at {request.path}\n"))

    def first_bytes(self, conn: WsConnection, head: bytes) -> bool:
        """A peer that does not open with an HTTP request is named, logged, counted and
        closed at once (a native one is told why in a GOAWAY); True if so."""
        hint = not_websocket(head)
        if hint is None or conn.transport is None:
            return False
        self.wrong_peers += 1
        log.warning("connection from %s closed: %s", _show(conn.peer), hint,
                    extra=log_fields(None, f"websocket://{_show(conn.peer)}", "websocket"))
        if head.startswith(MAGIC):
            conn.transport.write(MAGIC + encode_goaway(GoAwayCode.PROTOCOL_ERROR,
                                                       WEBSOCKET_LISTENER))
        conn.transport.close()
        return True

    def close(self) -> None:
        # the service closes the accepted connections itself, in order
        for task in list(self.checks):  # authentications under way end with the listener
            task.cancel()
        if self.server is not None:
            self.server.close()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()


def _show(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


def _url(host: str, port: int, path: str, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{shown}:{port}{path}"


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must be a string starting with '/', not {path!r}")
    return path


def _select(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def _new_session(parts: LinkParts, native: bool) -> AnySession:
    session: AnySession = parts.make_session(native)
    if not native:
        session = MessageSession.like(session, monotonic())
    return session


class WebSocketDriver:
    """ws:// and wss://, native (subprotocol ``objtransport.v1``) or raw per connection."""

    kind = TransportKind.WEBSOCKET
    extra_options: frozenset[str] = frozenset({"path"}) | AUTH_OPTIONS
    #: ``listen(reuse_port=True)``: SO_REUSEPORT, so that N processes share one port
    reuse_port = True

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> WebSocketLink:
        """Open the WebSocket, then wait for the session handshake (native).

        Raises ``ConnectError`` naming the URL and the reason: refused, TLS, timed out, an
        HTTP status that refused the upgrade (``.status``), a peer that is no WebSocket
        server, or a server that does not speak ``objtransport.v1`` in native mode.
        """
        path = _check_path(parts.extra.get("path", DEFAULT_PATH))
        url = _url(host, port, path, ssl_context is not None)
        native = parts.native is not False
        link: WebSocketLink | None = None
        conn: WsConnection | None = None
        try:
            protocol = ClientProtocol(
                parse_uri(url), subprotocols=[SUBPROTOCOL] if native else None,
                max_size=CARRIER_MAX if native else options.max_message_size)
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(options.timeout):
                _, conn = await loop.create_connection(
                    lambda: WsConnection(protocol, options.timeout), host, port,
                    ssl=ssl_context, server_hostname=server_hostname)
                request = protocol.connect()
                token = parts.extra.get("token")
                if token is not None:
                    request.headers["Authorization"] = bearer_header(token)
                protocol.send_request(request)
                conn.send_data()
                response = await asyncio.shield(conn.handshake)
                if protocol.handshake_exc is not None:
                    raise protocol.handshake_exc
                if response is None:
                    raise ConnectError(url, "closed during the WebSocket handshake")
                if native and conn.subprotocol != SUBPROTOCOL:
                    raise ConnectError(url, "the server did not accept the objtransport.v1 "
                                       "subprotocol (a plain WebSocket server? connect "
                                       "with framing='raw')")
                link = WebSocketLink(conn, _new_session(parts, native), parts)
                link.start()
                await asyncio.shield(link.ready)
            return link
        except InvalidStatus as exc:
            status = exc.response.status_code
            _abort(conn, link)
            if status == HTTPStatus.UNAUTHORIZED:
                raise AuthenticationError(url, "authentication refused (HTTP 401)",
                                          status) from exc
            raise ConnectError(url, f"WebSocket upgrade refused: HTTP {status} "
                               f"{_phrase(status)}", status) from exc
        except InvalidMessage as exc:
            _abort(conn, link)
            raise ConnectError(url, "not a WebSocket server (invalid HTTP response: "
                               f"{exc.__cause__ or exc})") from exc
        except (InvalidHandshake, InvalidURI) as exc:
            _abort(conn, link)
            raise ConnectError(url, f"WebSocket handshake failed: {exc}") from exc
        except (OSError, TimeoutError, ssl_module.SSLError) as exc:
            _abort(conn, link)
            raise ConnectError(url, describe_connect_error(exc)) from exc
        except TransportError as exc:
            _abort(conn, link)
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(url, f"handshake failed: {exc}") from exc
        except BaseException:
            _abort(conn, link)
            raise

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> WebSocketServer:
        """Serve ``path`` (other paths get 404). Each connection is native when the client
        asks for ``objtransport.v1``, raw otherwise."""
        path = _check_path(extra.get("path", DEFAULT_PATH))
        max_size = max(options.max_message_size, CARRIER_MAX)
        ws_server = WebSocketServer(path)
        auth: Authenticate | None = extra.get("authenticate")
        auth_limit = int(extra.get("max_authentications", AUTH_LIMIT))

        def on_request(conn: WsConnection, request: Request) -> None:
            if urlsplit(request.path).path != path:
                ws_server.not_found(conn, request)
                return
            if auth is None:
                upgrade(conn, request, None)
                return
            protocol = conn.protocol
            if len(ws_server.checks) >= auth_limit and isinstance(protocol, ServerProtocol):
                ws_server.auth_busy += 1  # a flood of slow checks: refused, not queued
                conn.respond(protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE,
                                             "too many authentications under way\n"))
                return
            task = asyncio.get_running_loop().create_task(check(conn, request, auth))
            ws_server.checks.add(task)
            task.add_done_callback(ws_server.checks.discard)
            conn.lost.add_done_callback(lambda _f: task.cancel())  # cut: stop checking

        async def check(conn: WsConnection, request: Request, fn: Authenticate) -> None:
            """Before any slot or session: the token of the upgrade request."""
            identity = await authenticate(fn, bearer(request.headers.get("Authorization")))
            if conn.transport is None or conn.transport.is_closing():
                return
            if identity is None:
                protocol = conn.protocol
                assert isinstance(protocol, ServerProtocol)
                response = protocol.reject(HTTPStatus.UNAUTHORIZED, "authentication refused\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                conn.respond(response)
                return
            upgrade(conn, request, identity)

        def upgrade(conn: WsConnection, request: Request, identity: str | None) -> None:
            protocol = conn.protocol
            assert isinstance(protocol, ServerProtocol)
            response = protocol.accept(request)
            conn.respond(response)
            if response.status_code != 101:
                return  # not a WebSocket handshake: the protocol said why, and closes
            parts = accept()
            if parts is None:
                conn.close(1013, "too many connections")
                return
            link = WebSocketLink(conn, _new_session(parts, conn.subprotocol == SUBPROTOCOL),
                                 parts)
            if identity is None and conn.transport is not None:  # mutual TLS
                identity = certificate_subject(conn.transport.get_extra_info("peercert"))
            link.identity = identity
            if parts.on_link is not None:
                parts.on_link(link)
            if link.on_made is not None:
                link.on_made(link)
            link.start()

        def factory() -> WsConnection:
            protocol = ServerProtocol(select_subprotocol=_select, max_size=max_size)
            conn = WsConnection(protocol, options.timeout, on_request)
            conn.on_first_bytes = ws_server.first_bytes
            conn.open_by = conn.loop.time() + options.handshake_timeout  # from the accept
            return conn

        try:
            ws_server.server = await asyncio.get_running_loop().create_server(
                factory, host, port, ssl=ssl_context, backlog=1024, reuse_address=True,
                reuse_port=bool(extra.get("reuse_port")) or None,
                ssl_handshake_timeout=options.handshake_timeout if ssl_context else None)
        except OSError as exc:
            raise ConnectError(f"{host}:{port}",
                               f"cannot listen: {describe_connect_error(exc)}") from exc
        ws_server.port = ws_server.server.sockets[0].getsockname()[1]
        return ws_server


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _abort(conn: WsConnection | None, link: WebSocketLink | None) -> None:
    if link is not None:
        link.abort()
    elif conn is not None:
        conn.abort()
