"""QUIC (``transport="quic"``) on aioquic's sans-I/O ``QuicConnection``.

:class:`~.quic_driver.QuicDriver` opens connections (a :class:`~.quic_conn.ClientSocket` of
their own each) and serves them (:class:`QuicServer`, here: one UDP socket, connections
routed by connection id).
Each connection is a :class:`~.quic_conn.QuicPump` under a :class:`~.quic_link.QuicLink`.
The ALPN chooses the framing per connection: ``objtransport/1`` native, ``objtransport-raw/1``
raw ``{packet, 4}`` on stream 0; a listener offers both.

The listener defends itself like the UDP one: datagrams that are not QUIC for a known
connection or a well-formed Initial are counted and dropped; a connection must finish its
handshake within ``timeout``; while more than ``RETRY_ABOVE`` handshakes are under way, a new
Initial must carry a Retry token (the client proves its address first, costing us no state);
``max_connections`` is enforced when the ALPN is known (CONNECTION_REFUSED).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
)
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from ..config import Options
from .authgate import AuthGate
from .base import LinkParts
from .quic_config import (
    ALPN_NATIVE,
    ALPN_RAW,
    ServerTickets,
)
from .quic_conn import READ_BATCH, QuicPump, recv_buffer
from .quic_link import QuicLink
from .sockpeek import read_first

__all__ = ["ALPN_NATIVE", "ALPN_RAW", "RETRY_ABOVE", "QuicLink", "QuicServer"]

#: handshakes under way above which a new Initial needs a Retry token
RETRY_ABOVE = 32
#: smallest datagram carrying a client Initial (RFC 9000 section 14.1)
_MIN_INITIAL = 1200


class QuicServer:
    """One UDP socket serving QUIC connections, routed by destination connection id."""

    def __init__(self, sock: socket.socket, config: QuicConfiguration,
                 accept: Callable[[], LinkParts | None], options: Options,
                 auth: AuthGate | None = None) -> None:
        self.sock = sock
        self.auth = auth  # HELLO tokens (listen(..., authenticate=...)); None: none
        self.config = config
        self.accept = accept
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.port: int = sock.getsockname()[1]
        self._routes: dict[bytes, QuicPump] = {}
        self._pumps: set[QuicPump] = set()
        self._handshaking: dict[QuicPump, asyncio.TimerHandle] = {}
        self._retry = QuicRetryTokenHandler()
        self._tickets = ServerTickets()
        self._closing = False
        self._closed = asyncio.Event()
        #: everything the listener refused or dropped, by reason
        self.garbage = 0  # not QUIC, or not for a connection we know
        self.retries = 0  # Retry packets sent (busy)
        self.bad_tokens = 0
        self.refused = 0  # over max_connections, or closing
        self.handshake_timeouts = 0
        self.version_negotiations = 0
        self.retry_always = False  # tests and paranoid listeners: Retry every new client
        #: each pump's read_first: the waiting datagrams, read before a deadline judges
        self._read_first = partial(read_first, sock.fileno(), self._on_readable)
        self.loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def connections(self) -> int:
        return len(self._pumps)

    @property
    def handshaking(self) -> int:
        return len(self._handshaking)

    def counters(self) -> dict[str, int]:
        return {"garbage": self.garbage, "retries": self.retries, "bad_tokens": self.bad_tokens,
                "refused": self.refused, "handshake_timeouts": self.handshake_timeouts,
                "version_negotiations": self.version_negotiations}

    # -- receiving -------------------------------------------------------------------------
    def _on_readable(self) -> None:
        buf = recv_buffer()
        sock = self.sock
        now = monotonic()
        dirty: dict[QuicPump, None] = {}
        for _ in range(READ_BATCH):
            try:
                n, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # an ICMP error for some peer: nothing to do here
            pump = self._datagram(bytes(buf[:n]), addr, now)
            if pump is not None:
                dirty[pump] = None
        for pump in dirty:
            pump.pump()

    def _datagram(self, data: bytes, addr: Any, now: float) -> QuicPump | None:
        if data and not data[0] & 0x80:  # a short header: our connection id comes first
            pump = self._routes.get(data[1:1 + self.config.connection_id_length])
            if pump is None:
                self.garbage += 1
                return None
            pump.feed(data, addr, now)
            return pump
        try:
            header = pull_quic_header(Buffer(data=data),
                                      host_cid_length=self.config.connection_id_length)
        except ValueError:
            self.garbage += 1
            return None
        if (header.packet_type != QuicPacketType.VERSION_NEGOTIATION
                and header.version is not None
                and header.version not in self.config.supported_versions):
            if len(data) >= _MIN_INITIAL:  # never amplify: answer only full-size packets
                self.version_negotiations += 1
                self._send(encode_quic_version_negotiation(
                    source_cid=header.destination_cid, destination_cid=header.source_cid,
                    supported_versions=self.config.supported_versions), addr)
            return None
        pump = self._routes.get(header.destination_cid)
        if pump is None:
            if header.packet_type != QuicPacketType.INITIAL or len(data) < _MIN_INITIAL:
                self.garbage += 1
                return None
            pump = self._new_connection(header, addr, now)
            if pump is None:
                return None
        pump.feed(data, addr, now)
        return pump

    def _new_connection(self, header: Any, addr: Any, now: float) -> QuicPump | None:
        if self._closing:
            self.refused += 1
            return None
        odcid: bytes = header.destination_cid
        retry_scid: bytes | None = None
        busy = self.retry_always or len(self._handshaking) >= RETRY_ABOVE
        if header.token:
            try:
                odcid = self._retry.validate_token(address=addr,
                                                   destination_cid=header.destination_cid,
                                                   token=header.token, now=now)
                retry_scid = header.destination_cid
            except ValueError:
                self.bad_tokens += 1
                if busy:
                    return None
                odcid = header.destination_cid
        elif busy:
            scid = os.urandom(8)
            self.retries += 1
            self._send(encode_quic_retry(
                version=header.version, source_cid=scid, destination_cid=header.source_cid,
                original_destination_cid=header.destination_cid,
                retry_token=self._retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=scid, now=now)), addr)
            return None
        quic = QuicConnection(configuration=self.config,
                              original_destination_connection_id=odcid,
                              retry_source_connection_id=retry_scid,
                              session_ticket_fetcher=self._tickets.pop,
                              session_ticket_handler=self._tickets.add)
        pump = QuicPump(quic, self._send)
        pump.read_first = self._read_first
        pump.on_routing = lambda ev: self._routing(pump, ev)
        pump.on_closing = self._check_closed
        pump.handler = lambda ev: self._before_link(pump, addr, ev)
        self._routes[header.destination_cid] = pump
        self._routes[quic.host_cid] = pump
        self._pumps.add(pump)
        self._handshaking[pump] = self.loop.call_at(now + self.options.timeout,
                                                    self._handshake_expired, pump)
        return pump

    def _routing(self, pump: QuicPump, event: QuicEvent) -> None:
        if isinstance(event, ConnectionIdIssued):
            self._routes[event.connection_id] = pump
        elif isinstance(event, ConnectionIdRetired):
            if self._routes.get(event.connection_id) is pump:
                del self._routes[event.connection_id]
        elif isinstance(event, ConnectionTerminated):
            self._forget(pump)

    def _forget(self, pump: QuicPump) -> None:
        pump.stop()
        handle = self._handshaking.pop(pump, None)
        if handle is not None:
            handle.cancel()
        self._pumps.discard(pump)
        for cid in [c for c, p in self._routes.items() if p is pump]:
            del self._routes[cid]
        self._check_closed()

    def _check_closed(self) -> None:
        """Closing, every connection has sent its CONNECTION_CLOSE (or ended): the listener
        need not wait out aioquic's closing periods (3 PTO each, seconds on a slow path)."""
        if self._closing and all(p.closing for p in self._pumps):
            self._closed.set()

    def _handshake_expired(self, pump: QuicPump) -> None:
        if self._handshaking.pop(pump, None) is None:
            return
        self.handshake_timeouts += 1
        pump.close(QuicErrorCode.CONNECTION_REFUSED,
                   f"no handshake within {self.options.timeout:g} s", QuicFrameType.PADDING)
        pump.process_events()
        self._forget(pump)  # no draining period for a peer that never finished

    def _handshake_done(self, pump: QuicPump) -> None:
        handle = self._handshaking.pop(pump, None)
        if handle is not None:
            handle.cancel()

    def _before_link(self, pump: QuicPump, addr: Any, event: QuicEvent) -> None:
        """Events of a connection with no link yet: the ALPN makes one (or refuses)."""
        if not isinstance(event, ProtocolNegotiated):
            return
        parts = None if self._closing else self.accept()
        if parts is None:
            self.refused += 1
            pump.close(QuicErrorCode.CONNECTION_REFUSED,
                       "too many connections" if not self._closing
                       else "the listener is closing", QuicFrameType.PADDING)
            return
        native = event.alpn_protocol == ALPN_NATIVE
        if self.auth is not None and not native:  # a raw peer has no HELLO, no token
            self.refused += 1
            pump.close(QuicErrorCode.CONNECTION_REFUSED, "this listener authenticates: raw "
                       "QUIC cannot present a token", QuicFrameType.PADDING)
            return
        session = parts.make_session(native)
        link = QuicLink(pump, session, parts, client=False, peer=addr)
        if self.auth is not None:
            link.use_auth(self.auth)
        link.handshake_done.add_done_callback(lambda _f: self._handshake_done(pump))
        if parts.on_link is not None:
            parts.on_link(link)
        if link.on_made is not None:
            link.on_made(link)
        link.start()

    def _send(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass  # full buffer or an unreachable peer: QUIC recovers or times out

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Accept no new connection (the service closes the accepted ones in order)."""
        self._closing = True
        if self.auth is not None:
            self.auth.close()
        self._check_closed()

    async def wait_closed(self) -> None:
        """Wait (at most ``timeout``) until every connection has ended or sent its
        CONNECTION_CLOSE, then stop them all (no closing periods waited out) and free the
        port."""
        try:
            async with asyncio.timeout(self.options.timeout):
                await self._closed.wait()
        except TimeoutError:
            pass
        for pump in list(self._pumps):
            self._forget(pump)
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
