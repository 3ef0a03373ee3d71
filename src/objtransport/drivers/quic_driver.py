"""The QUIC driver (:class:`QuicDriver`): opens connections, a
:class:`~.quic_conn.ClientSocket` of their own each, and serves them with a
:class:`~.quic.QuicServer` (see :mod:`.quic`)."""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections.abc import Callable
from time import monotonic
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from ..auth import AUTH_OPTIONS
from ..config import Options, TransportKind
from ..exceptions import AuthenticationError, ConnectError
from ..sansio.framing import GoAwayCode
from .base import LinkParts
from .quic import QuicServer
from .quic_config import TLS_OPTIONS, TicketStore, client_configuration, server_configuration
from .quic_conn import ClientSocket, QuicPump, make_socket
from .quic_link import QuicEnded, QuicLink
from .tcp import auth_gate, describe_connect_error

__all__ = ["QuicDriver"]


class QuicDriver:
    """QUIC connections, native or raw by ALPN, TLS 1.3 always."""

    kind = TransportKind.QUIC
    extra_options: frozenset[str] = TLS_OPTIONS | AUTH_OPTIONS
    #: ``listen(reuse_port=True)``: SO_REUSEPORT; the kernel keeps each peer's address on
    #: one socket (a client that migrates to a new address may land on another process)
    reuse_port = True

    def __init__(self) -> None:
        #: session tickets by endpoint: reconnects start in 0-RTT
        self.tickets = TicketStore()

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> QuicLink:
        """Connect (QUIC and TLS handshakes), then wait for the session handshake (native).

        Raises ``ConnectError`` naming the endpoint and the reason: unreachable, timed out,
        TLS (certificate) failures, a refused ALPN, a listener refusing the connection.
        """
        endpoint = f"{host}:{port}"
        native = parts.native is not False
        loop = asyncio.get_running_loop()
        link: QuicLink | None = None
        csock: ClientSocket | None = None
        try:
            async with asyncio.timeout(options.timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                family, addr = infos[0][0], infos[0][4]
                server_name = server_hostname or host
                key = (host, port, server_name, native)
                config = client_configuration(options, parts.extra, native, server_name,
                                              ssl_context, self.tickets.get(key))
                quic = QuicConnection(configuration=config,
                                      session_ticket_handler=lambda t: self.tickets.put(key, t))
                csock = ClientSocket(family, addr, options.udp_socket_buffer)
                pump = QuicPump(quic, csock.send)
                csock.pump = pump
                pump.read_first = csock.read_waiting
                session = parts.make_session(native)
                link = QuicLink(pump, session, parts, client=True, peer=addr)
                link.socket = csock
                pump.on_routing = _closer(csock)
                csock.on_error = link.socket_error
                quic.connect(addr, now=monotonic())
                link.start()
                pump.transmit()  # the Initial (and our HELLO in 0-RTT, with a ticket)
                await asyncio.shield(link.handshake_done)
                await asyncio.shield(link.ready)
            return link
        except (OSError, TimeoutError) as exc:
            _abort(link, csock)
            raise ConnectError(endpoint, describe_connect_error(exc)) from exc
        except QuicEnded as exc:
            reason = link.session.close_reason if link is not None else str(exc)
            _abort(link, csock)
            raise ConnectError(endpoint, reason or "QUIC connection closed") from exc
        except ConnectError:
            _abort(link, csock)
            raise
        except BaseException as exc:
            _abort(link, csock)
            if link is not None and link.session.closed and isinstance(exc, Exception):
                if link.session.close_code == GoAwayCode.UNAUTHENTICATED:
                    raise AuthenticationError(endpoint, link.session.close_reason) from exc
                raise ConnectError(endpoint, link.session.close_reason) from exc
            raise

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> QuicServer:
        """Bind and serve; raises ``ValueError`` without ``certificate_chain=`` +
        ``private_key=`` and ``ConnectError`` if the address cannot be bound."""
        config = server_configuration(options, extra)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                       flags=socket.AI_PASSIVE)
        family, addr = infos[0][0], infos[0][4]
        sock = make_socket(family, options.udp_socket_buffer)
        try:
            if extra.get("reuse_port"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"{host}:{port}",
                               f"cannot listen: {describe_connect_error(exc)}") from exc
        return QuicServer(sock, config, accept, options, auth_gate(extra))


def _closer(csock: ClientSocket) -> Callable[[QuicEvent], None]:
    def on_routing(event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            csock.close()
    return on_routing


def _abort(link: QuicLink | None, csock: ClientSocket | None) -> None:
    try:
        if link is not None:
            link.abort()
    finally:
        if csock is not None:
            csock.close()
