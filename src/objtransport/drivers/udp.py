"""UDP: connected datagram endpoints and listeners; one :class:`DatagramLink` per peer.

* **Receiving** drains the socket on every wake-up: ``loop.add_reader`` and then
  ``recv_into`` / ``recvfrom_into`` into one reused buffer until ``BlockingIOError`` (at most
  :data:`BATCH` datagrams per wake-up, to stay fair to the rest of the loop). asyncio's
  ``DatagramProtocol`` reads one datagram per loop turn into a fresh 256 KiB buffer and loses
  most of a fast sender's traffic. Messages are handed over once per link per wake-up.
* **Sending** calls ``send`` / ``sendto`` (``sendmsg`` for a fragment header and its piece)
  straight away; at most :data:`BURST` datagrams per link per loop turn, so a receiver in the
  same process (or a slower one) gets to drain its socket between bursts. On
  ``BlockingIOError`` the rest waits for ``add_writer``.
* **Segmentation offload** (Linux, ``udp_offload``): the datagrams a link holds at the end
  of a loop turn leave in one ``sendmsg`` per run of equal-sized ones (``UDP_SEGMENT``, at
  most :data:`GSO_SEGMENTS` and 64 KiB), and the socket receives such runs coalesced
  (``UDP_GRO``: one ``recvmsg_into`` with the segment size in its control message, split
  here). A kernel that refuses either is asked once; then one call per datagram. The socket
  side both owners share (reading on and off, writers, offload) is :mod:`.udp_socket`'s
  :class:`~.udp_socket.DatagramSocket`.
* **A connected endpoint** (``connect``; :class:`~.udp_endpoint.UdpEndpoint`) owns its
  socket. An ICMP port unreachable comes back as ``ConnectionRefusedError``: during
  ``open`` it is a ``ConnectError`` (a failure for the endpoint's breaker), later it ends
  the link with an error (also a breaker failure, then reconnection).
* **A listener** has one socket; each remote address gets its own link and connection id
  (through ``accept()``). An unknown address is admitted in native framing only if its first
  datagram is a valid native DATA or PING frame (:func:`looks_native`); in raw framing any
  datagram admits it; ``auto`` picks per address. Everything else from unknown addresses is
  counted (``unknown_peer_datagrams``) and dropped. ``max_connections`` caps the peers
  (``accept()`` refuses); idle peers are forgotten by their session's timer.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl as ssl_module
from collections.abc import Callable
from time import monotonic
from typing import Any

from ..auth import AUTH_OPTIONS
from ..config import Framing, Options, TransportKind
from ..exceptions import AuthenticationError, ConnectError, TransportError
from ..sansio.admission import Admission, EvictionBudget, ReturnCheck, encode_credential
from ..sansio.datagram import Datagram, DatagramSession, ReassemblyBudget, looks_native
from ..sansio.framing import GoAwayCode
from .authgate import AuthGate
from .base import LinkParts
from .tcp import describe_connect_error
from .udp_auth import UdpAuth, udp_gate
from .udp_endpoint import BATCH, UdpEndpoint
from .udp_link import BURST, DatagramLink
from .udp_socket import ANC_SIZE, DatagramSocket, make_socket, segments

__all__ = ["BATCH", "BURST", "DatagramLink", "UdpDriver", "UdpServer"]


class UdpServer(DatagramSocket):
    """A listener: one socket, one link per remote address."""

    def __init__(self, sock: socket.socket, options: Options,
                 accept: Callable[[], LinkParts | None], gate: AuthGate | None = None) -> None:
        super().__init__(sock, options, self.on_readable)
        self.accept = accept
        self.port: int = sock.getsockname()[1]
        self.links: dict[Any, DatagramLink] = {}
        self.budget = ReassemblyBudget(options.max_total_reassembly_bytes)
        self.closing = False
        self._closed_event = asyncio.Event()
        #: datagrams from unknown addresses that were not a valid native frame
        self.unknown_peer_datagrams = 0
        #: datagrams from unknown addresses that accept() refused (max_connections)
        self.refused_datagrams = 0
        self.receive_errors = 0
        #: native: no state for an address until it echoes a cookie (None: admit at once)
        self.check = (ReturnCheck(os.urandom(16))
                      if options.udp_return_check and options.framing is not Framing.RAW
                      else None)
        #: PONGs with a cookie sent to unknown addresses
        self.cookies_sent = 0
        #: peers forgotten to make room for a new one (the listener was full), how fast
        self.evicted_peers = 0
        self.evictions = EvictionBudget(options.max_connections, monotonic())
        #: ``authenticate``: the token after the cookie is checked before a link is made
        self.auth = None if gate is None else UdpAuth(gate, options.hello_timeout,
                                                       self._send_to, self._readmit)

    def counters(self) -> dict[str, int]:
        """The listener's own figures (the peers' are on their connections)."""
        return {"unknown_peer_datagrams": self.unknown_peer_datagrams,
                "refused_datagrams": self.refused_datagrams,
                "receive_errors": self.receive_errors, "send_errors": self.send_errors,
                "reassembly_bytes": self.budget.used, "reassembly_peak": self.budget.peak,
                "peers": len(self.links), "gso_sends": self.gso_sends,
                "cookies_sent": self.cookies_sent, "evicted_peers": self.evicted_peers,
                "evictions_refused": self.evictions.refused,
                "coalesced_reads": self.coalesced_reads,
                **(self.auth.counters() if self.auth is not None else {})}

    def on_readable(self) -> None:
        links = self.links
        recvfrom_into = self.sock.recvfrom_into
        buf = self.buf
        view = self.view
        now = monotonic()
        touched: list[DatagramLink] = []
        last_addr: Any = None
        link: DatagramLink | None = None
        recvmsg_into = self.sock.recvmsg_into if self.gro else None
        bufs = [buf]
        got = 0
        while got < BATCH:
            try:
                if recvmsg_into is None:
                    n, addr = recvfrom_into(buf)
                    seg = n
                else:
                    n, anc, _, addr = recvmsg_into(bufs, ANC_SIZE)
                    seg = segments(n, anc) if anc else n
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.receive_errors += 1
                got += 1
                continue
            got += 1 if seg >= n else -(-n // seg)
            if addr != last_addr or link is None or link.finished:
                link = links.get(addr)
                last_addr = addr
                if link is None:
                    link = self._admit(view[:min(seg, n)], addr, now)
                    if link is None:
                        continue
            if link.read_paused:
                link.ds.overrun += 1 if seg >= n else -(-n // seg)
                continue
            if seg >= n:
                link.ds.receive_datagram(view[:n], now)
            else:  # a run of datagrams coalesced by GRO
                self.coalesced_reads += 1
                link.ds.receive_run(view[:n], seg, now)
            if not link.dirty:
                link.dirty = True
                touched.append(link)
        for t in touched:
            t.dirty = False
            t.after_receive()

    def _admit(self, data: memoryview, addr: Any, now: float) -> DatagramLink | None:
        """A datagram from an address without a link: admit the peer, or count and drop."""
        if self.closing:
            return None
        native = looks_native(data)
        framing = self.options.framing
        if framing is Framing.NATIVE and not native:
            self.unknown_peer_datagrams += 1
            return None
        if native and self.check is not None and not self._returned(data, addr, now):
            return None
        identity = None
        if self.auth is not None:  # its token first (a raw peer has none: dropped)
            identity = self.auth.check(data, addr) if native else None
            if identity is None:
                return None
        if len(self.links) >= self.options.max_connections and not self._evict(now):
            self.refused_datagrams += 1
            return None
        parts = self.accept()
        if parts is None:
            self.refused_datagrams += 1
            return None
        if parts.native is not None:
            native = parts.native
        base = parts.make_session(native)
        session = DatagramSession.like(base, now, native=native, role="server",
                                       budget=self.budget)
        session.set_peer(addr)
        link = DatagramLink(session, parts, self, addr)
        link.identity = identity
        self.links[addr] = link
        if parts.on_link is not None:
            parts.on_link(link)
        if link.on_made is not None:
            link.on_made(link)
        link.start()
        return link

    def _readmit(self, ping: bytes, addr: Any) -> None:
        """An authenticated address: admitted now, and its PING answered."""
        now = monotonic()
        link = self._admit(memoryview(ping), addr, now)
        if link is not None:
            link.ds.receive_datagram(ping, now)
            link.after_receive()

    def _send_to(self, datagram: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(datagram, addr)
        except OSError:
            self.send_errors += 1

    def _returned(self, data: memoryview, addr: Any, now: float) -> bool:
        """Has ``addr`` echoed our cookie? Else answer a PING with one (no state kept)."""
        check = self.check
        assert check is not None
        verdict = check.screen(data, addr, now)
        if verdict is Admission.ADMIT:
            return True
        if verdict is Admission.ANSWER:
            try:
                self.sock.sendto(check.answer(data, addr, now), addr)
                self.cookies_sent += 1
            except OSError:
                self.send_errors += 1
        else:
            self.unknown_peer_datagrams += 1
        return False

    def _evict(self, now: float) -> bool:
        """The listener is full: forget the peer silent the longest (a raw peer nobody
        answered first), so that a new one is not refused while a stale one holds a slot;
        proven peers only as fast as :class:`EvictionBudget` allows (False: refuse)."""
        def idle_key(link: DatagramLink) -> tuple[bool, float]:
            return (link.ds.messages_sent > 0, link.ds.last_receive)
        victim = min(self.links.values(), key=idle_key, default=None)
        if victim is not None:
            if not self.evictions.allow(victim.ds.native or victim.ds.messages_sent > 0, now):
                return False
            self.evicted_peers += 1
            victim.forget("evicted: the listener is full and this peer was idle the longest")
        return True

    def transmit(self, link: DatagramLink, dgram: Datagram) -> bool:
        if self.closed:
            return True
        try:
            if isinstance(dgram, tuple):
                self.sock.sendmsg(dgram, (), 0, link.peer)
            else:
                self.sock.sendto(dgram, link.peer)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            self.send_errors += 1  # best effort: the datagram is lost, the peer stays
        return True

    def detach(self, link: DatagramLink) -> None:
        if self.links.get(link.peer) is link:
            del self.links[link.peer]
        if self.closing and not self.links:
            self._shut()

    def close(self) -> None:
        """Stop admitting and reading; the socket stays open while links send their
        goodbyes, and closes with the last one (or in :meth:`wait_closed`)."""
        if self.closing:
            return
        self.closing = True
        self.stop_reading()
        if self.auth is not None:
            self.auth.close()
        if not self.links:
            self._shut()

    def _shut(self) -> None:
        self.close_socket()
        self._closed_event.set()

    async def wait_closed(self) -> None:
        """Abort the links still open and close the socket."""
        self.close()
        for link in list(self.links.values()):
            link.abort()
        self._shut()
        await self._closed_event.wait()


class UdpDriver:
    """Datagram sockets, native or raw framing (one :class:`DatagramLink` per peer)."""

    kind = TransportKind.UDP
    extra_options: frozenset[str] = AUTH_OPTIONS
    #: ``listen(reuse_port=True)``: SO_REUSEPORT; the kernel keeps each peer on one socket
    reuse_port = True

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> DatagramLink:
        """A connected socket; in native framing, wait for the answer to the first PING.

        Raises ``ConnectError``: refused (ICMP port unreachable), no answer within
        ``timeout`` (native), unresolvable, or TLS asked for (UDP has no TLS here).
        """
        endpoint = f"{host}:{port}"
        if ssl_context is not None:
            raise ConnectError(endpoint, "TLS is not available over UDP (no DTLS)")
        loop = asyncio.get_running_loop()
        link: DatagramLink | None = None
        try:
            async with asyncio.timeout(options.timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                family, _, _, _, addr = infos[0]
                sock = make_socket(family, options)
                try:
                    sock.connect(addr)
                except OSError:
                    sock.close()
                    raise
                owner = UdpEndpoint(sock, options)
                native = parts.native is not False
                session = DatagramSession.like(parts.make_session(native), monotonic(),
                                               native=native, role="client")
                session.credential = encode_credential(parts.extra.get("token"))
                peer = sock.getpeername()
                session.set_peer(peer)
                link = DatagramLink(session, parts, owner, peer)
                link.opening = True
                owner.link = link
                owner.start_reading()
                link.start()
                await asyncio.shield(link.ready)
            link.opening = False
            # native: the peer answered a PING. Raw: nothing came back yet, so opening the
            # socket proves nothing about the peer (the owner counts a success once it is
            # heard from)
            link.verified = native
            return link
        except (OSError, TimeoutError) as exc:
            if link is not None:
                link.abort()
            reason = "timed out: no answer to PING" if isinstance(exc, TimeoutError) else \
                describe_connect_error(exc)
            raise ConnectError(endpoint, reason) from exc
        except TransportError as exc:
            if link is not None:
                link.abort()
            reason = link.ds.close_reason if link is not None else str(exc)
            if link is not None and link.ds.close_code == GoAwayCode.UNAUTHENTICATED:
                raise AuthenticationError(endpoint, reason) from exc
            raise ConnectError(endpoint, reason or str(exc)) from exc

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> UdpServer:
        """Bind and start reading; raises ``ConnectError`` if the address cannot be bound."""
        where = f"{host}:{port}"
        if ssl_context is not None:
            raise ConnectError(where, "TLS is not available over UDP (no DTLS)")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                           flags=socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            sock = make_socket(family, options)
            try:
                if extra.get("reuse_port"):  # peers spread by address over the sockets
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(addr)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise ConnectError(where, f"cannot listen: {describe_connect_error(exc)}") from exc
        try:
            gate = udp_gate(extra, options)
        except ValueError:
            sock.close()
            raise
        server = UdpServer(sock, options, accept, gate)
        server.start_reading()
        return server
