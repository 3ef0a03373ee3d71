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
* **A connected endpoint** (``connect``) owns its socket. An ICMP port unreachable comes back
  as ``ConnectionRefusedError``: during ``open`` it is a ``ConnectError`` (a failure for the
  endpoint's breaker), later it ends the link with an error (also a breaker failure, then
  reconnection).
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
import socket
import ssl as ssl_module
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..config import Framing, Options, TransportKind
from ..exceptions import ConnectError, TransportError
from ..sansio.datagram import Datagram, DatagramSession, ReassemblyBudget, looks_native
from ..sansio.events import Closed, Event, HandshakeComplete, Received
from ..sansio.framing import GoAwayCode
from ..sansio.session import Session
from ..sansio.throttle import TokenBucket
from .base import LinkParts
from .flow import FlowControl
from .pacing import Pacer
from .tcp import describe_connect_error

__all__ = ["BATCH", "BURST", "DatagramLink", "UdpDriver", "UdpServer"]

#: datagrams read per wake-up at most
BATCH = 256
#: datagrams one link sends per loop turn at most
BURST = 128
_RECV_SIZE = 65_536
_REFUSED = "connection refused (ICMP port unreachable)"

_local = threading.local()


def _recv_buffer() -> bytearray:
    """This thread's receive buffer: every datagram is copied out before the next read."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(_RECV_SIZE)
    return buf


def _make_socket(family: int, options: Options) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    size = options.udp_socket_buffer
    if size:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:  # pragma: no cover - the OS caps it silently on Linux
                pass
    return sock


class _Owner:
    """A datagram socket and the links that use it."""

    def __init__(self, sock: socket.socket, options: Options) -> None:
        self.sock = sock
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.fd = sock.fileno()
        self.buf = _recv_buffer()
        self.view = memoryview(self.buf)
        self._reading = False
        self._writers: deque[DatagramLink] = deque()
        self._writing = False
        self.closed = False
        self.send_errors = 0

    def start_reading(self) -> None:
        if not self._reading and not self.closed:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    def stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def _on_readable(self) -> None:
        raise NotImplementedError

    def transmit(self, link: DatagramLink, dgram: Datagram) -> bool:
        """Send one datagram; False if the socket is full (the caller keeps it)."""
        raise NotImplementedError

    def want_write(self, link: DatagramLink) -> None:
        """``link`` has datagrams waiting for room in the socket."""
        if link not in self._writers:
            self._writers.append(link)
        if not self._writing and not self.closed:
            self._writing = True
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        writers = self._writers
        for _ in range(len(writers)):
            link = writers.popleft()
            link.writable()
            if link.blocked:
                writers.append(link)
                break
        if not writers and self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    def detach(self, link: DatagramLink) -> None:
        raise NotImplementedError

    def close_socket(self) -> None:
        if self.closed:
            return
        self.stop_reading()
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self.closed = True
        self.sock.close()


class UdpEndpoint(_Owner):
    """A connected socket for one client link."""

    def __init__(self, sock: socket.socket, options: Options) -> None:
        super().__init__(sock, options)
        self.link: DatagramLink | None = None

    def _on_readable(self) -> None:
        link = self.link
        if link is None:
            return
        receive = link.ds.receive_datagram
        recv_into = self.sock.recv_into
        view = self.view
        now = self.loop.time()
        failure = ""
        try:
            for _ in range(BATCH):
                receive(view[:recv_into(self.buf)], now)
        except (BlockingIOError, InterruptedError):
            pass
        except ConnectionRefusedError:
            failure = _REFUSED
        except OSError as exc:
            failure = f"socket error: {describe_connect_error(exc)}"
        link.after_receive()
        if failure:
            link.fail(failure)

    def transmit(self, link: DatagramLink, dgram: Datagram) -> bool:
        try:
            if isinstance(dgram, tuple):
                self.sock.sendmsg(dgram)
            else:
                self.sock.send(dgram)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionRefusedError:
            link.fail(_REFUSED)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            self.send_errors += 1
            link.fail(f"send failed: {describe_connect_error(exc)}")
        return True

    def detach(self, link: DatagramLink) -> None:
        self.link = None
        self.close_socket()


class UdpServer(_Owner):
    """A listener: one socket, one link per remote address."""

    def __init__(self, sock: socket.socket, options: Options,
                 accept: Callable[[], LinkParts | None]) -> None:
        super().__init__(sock, options)
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

    def counters(self) -> dict[str, int]:
        """The listener's own figures (the peers' are on their connections)."""
        return {"unknown_peer_datagrams": self.unknown_peer_datagrams,
                "refused_datagrams": self.refused_datagrams,
                "receive_errors": self.receive_errors, "send_errors": self.send_errors,
                "reassembly_bytes": self.budget.used, "reassembly_peak": self.budget.peak,
                "peers": len(self.links)}

    def _on_readable(self) -> None:
        links = self.links
        recvfrom_into = self.sock.recvfrom_into
        buf = self.buf
        view = self.view
        now = self.loop.time()
        touched: list[DatagramLink] = []
        last_addr: Any = None
        link: DatagramLink | None = None
        for _ in range(BATCH):
            try:
                n, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.receive_errors += 1
                continue
            if addr != last_addr or link is None or link.finished:
                link = links.get(addr)
                last_addr = addr
                if link is None:
                    link = self._admit(view[:n], addr, now)
                    if link is None:
                        continue
            if link.read_paused:
                link.ds.overrun += 1
                continue
            link.ds.receive_datagram(view[:n], now)
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
        self.links[addr] = link
        if parts.on_link is not None:
            parts.on_link(link)
        if link.on_made is not None:
            link.on_made(link)
        link.start()
        return link

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


class DatagramLink(FlowControl):
    """One datagram peer bound to one :class:`DatagramSession`."""

    def __init__(self, session: DatagramSession, parts: LinkParts, owner: _Owner,
                 peer: Any) -> None:
        self.session: Session = session  # the Link protocol's view
        self.ds = session
        self.owner = owner
        self.peer: Any = peer
        self.loop = asyncio.get_running_loop()
        self.on_messages: Callable[[list[Received]], None] = parts.on_messages
        self.on_event: Callable[[Any, Event], None] = parts.on_event
        self.max_pending = parts.max_pending
        self.pacer: Pacer = parts.pacer
        self.receive_bucket: TokenBucket | None = parts.receive_bucket  # not applied (UDP)
        self.on_made: Callable[[Any], None] | None = None
        self.last_seq = 0
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[Closed] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.dirty = False  # has messages or events to hand over after this read batch
        self.read_paused = False
        self.blocked = False  # datagrams wait for room in the socket
        self.finished = False
        self.verified = True  # the peer has answered (see UdpDriver.open)
        #: open() is waiting for the first PONG: a failure now is open()'s ConnectError,
        #: not a link event for the owner
        self.opening = False
        self._read_pauses: set[str] = set()
        self._held: deque[Datagram] = deque()
        self._turn = 0  # datagrams sent this loop turn
        self._turn_handle: asyncio.Handle | None = None
        self._pace_handle: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain_waiters: list[tuple[asyncio.Future[None], int]] = []
        self._flushed_waiters: list[asyncio.Future[None]] = []
        #: a connected socket's send(), for the lone-message fast path
        self._sock_send: Callable[[bytes], object] | None = (
            owner.sock.send if isinstance(owner, UdpEndpoint) else None)

    def start(self) -> None:
        """Hand over the first events, send what is queued (a client's PING), arm the
        timer."""
        self._process_events()
        self._flush()
        self._rearm()

    # -- receiving -------------------------------------------------------------------------
    def after_receive(self) -> None:
        """A read batch went to the session: deliver, handle events, answer, re-arm."""
        self._delivered(self.ds.take_messages())

    def _answer(self) -> None:
        self._flush()

    def fail(self, reason: str) -> None:
        """The socket failed (e.g. ICMP port unreachable): the link ends with an error,
        discarding what is queued."""
        if self.finished:
            return
        self._held.clear()
        self.ds.scheduler.clear()
        self.ds.connection_lost(reason)
        self._finish()
        self._process_events()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message and send what the turn allows; True when the caller should
        wait (``wait_writable``). Raises ``ConnectionNotReady`` / ``MessageTooLarge``."""
        session = self.ds
        if self._turn < BURST and not self.blocked and not self.pacer.buckets:
            dgram = session.encode_direct(data, stream, priority, text)
            if dgram is not None:  # nothing queued: straight to the socket
                self.last_seq = session.messages_sent
                direct = self._sock_send
                try:
                    if direct is None:
                        raise BlockingIOError
                    direct(dgram)
                    ok = True
                except OSError:  # the owner maps the error (or says: full)
                    ok = self.owner.transmit(self, dgram)
                if ok:
                    session.datagrams_sent += 1
                    self._turn += 1
                    if self._turn_handle is None:
                        self._turn_handle = self.loop.call_soon(self._next_turn)
                else:
                    self._held.append(dgram)
                    self._block()
                return False
        self.last_seq = session.send_message(data, stream, priority, text)
        if not self.blocked:
            self._flush()
        return session.scheduler.pending_bytes > self.max_pending

    def _flush(self) -> None:
        """Send queued datagrams: at most BURST per loop turn, within the pacer's tokens."""
        if self.finished:
            return
        owner = self.owner
        held = self._held
        while held:
            if not owner.transmit(self, held[0]):
                self._block()
                return
            held.popleft()
            self.ds.datagrams_sent += 1
            self._turn += 1
        session = self.ds
        sched = session.scheduler
        pacer = self.pacer
        piece = session.options.max_datagram_payload + 28
        while (sched.pending_bytes or session.has_final) and not self.finished:
            if self._turn >= BURST:
                if self._turn_handle is None:
                    self._turn_handle = self.loop.call_soon(self._next_turn)
                break
            budget = (BURST - self._turn) * piece
            now = self.loop.time()
            strict = bool(pacer.buckets)
            if strict:
                if self._pace_handle is not None:
                    break
                allowed = pacer.allowance(now)
                if allowed <= 0:
                    self._pace_handle = self.loop.call_at(now + pacer.delay(now),
                                                          self._paced)
                    break
                budget = min(budget, int(allowed))
            dgrams = session.datagrams_to_send(now, budget, strict)
            if not dgrams:
                break
            if strict:
                pacer.consume(sum(_size(d) for d in dgrams), now)
            for i, d in enumerate(dgrams):
                if not owner.transmit(self, d):
                    held.extend(dgrams[i:])
                    session.datagrams_sent += i
                    self._turn += i
                    self._block()
                    return
            session.datagrams_sent += len(dgrams)
            self._turn += len(dgrams)
        if self._turn and self._turn_handle is None:
            self._turn_handle = self.loop.call_soon(self._next_turn)
        self._after_flush()

    def _after_flush(self) -> None:
        if self._drain_waiters:
            self._wake_drain_waiters()
        session = self.ds
        if not session.scheduler.pending_bytes and not self._held:
            if self._flushed_waiters:
                self._wake_flushed()
            if session.closed and not session.has_final:
                self._finish()

    def _next_turn(self) -> None:
        self._turn_handle = None
        self._turn = 0
        if not self.blocked and (self.ds.scheduler.pending_bytes
                                 or self.ds.has_final):
            self._flush()

    def _paced(self) -> None:
        self._pace_handle = None
        self._flush()

    def repace(self) -> None:
        """The limits changed: drop a pending pacing wait and send under the new ones."""
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
        self._flush()

    def _block(self) -> None:
        self.blocked = True
        self.owner.want_write(self)

    def writable(self) -> None:
        """The socket has room again (called by the owner)."""
        self.blocked = False
        self._flush()

    @property
    def pending_bytes(self) -> int:
        return self.ds.scheduler.pending_bytes + sum(_size(d) for d in self._held)

    def _queued(self) -> int:
        return self.ds.scheduler.pending_bytes + len(self._held)

    # -- events and time -------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.ds.take_events()
        for ev in events:
            if isinstance(ev, Closed):
                self._flush()  # what is left (a GOAWAY); the link ends once it is out
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self._closed_error())
                    self.ready.exception()  # retrieved: the owner reads `closed`
                if self.opening:
                    continue
            elif isinstance(ev, HandshakeComplete):
                if not self.ready.done():
                    self.ready.set_result(None)
            self.on_event(self, ev)
        if events and not self.finished:
            self._rearm()

    def _rearm(self) -> None:
        deadline = self.ds.next_deadline()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and not self.finished:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.finished:
            return
        self.ds.handle_timer(self.loop.time())
        self.ds.timer_changed = False
        self._process_events()
        self._flush()
        self._rearm()

    # -- closing ---------------------------------------------------------------------------
    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: what is queued goes out, then GOAWAY (native), then the link ends."""
        self.ds.close(code, reason)
        self._process_events()

    def abort(self) -> None:
        """End at once, discarding what is queued."""
        self.fail("aborted")

    def _finish(self) -> None:
        """The link is over: timers off, off the socket, ``lost`` resolved."""
        if self.finished:
            return
        self.finished = True
        self._cancel_timer()
        for h in (self._turn_handle, self._pace_handle):
            if h is not None:
                h.cancel()
        self._turn_handle = self._pace_handle = None
        self.owner.detach(self)
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_drain_waiters(everyone=True)
        self._wake_flushed()

    def pause_reading(self, reason: str = "consumer") -> None:
        """Stop taking messages for ``reason``. A connected endpoint stops reading its
        socket; a listener's peer has its datagrams dropped (counted as ``overrun``)."""
        self._read_pauses.add(reason)
        self.read_paused = True
        if isinstance(self.owner, UdpEndpoint):
            self.owner.stop_reading()

    def resume_reading(self, reason: str = "consumer") -> None:
        self._read_pauses.discard(reason)
        if not self._read_pauses and self.read_paused:
            self.read_paused = False
            if isinstance(self.owner, UdpEndpoint) and not self.finished:
                self.owner.start_reading()


def _size(d: Datagram) -> int:
    if isinstance(d, tuple):
        return len(d[0]) + len(d[1])
    return len(d)


class UdpDriver:
    """Datagram sockets, native or raw framing (one :class:`DatagramLink` per peer)."""

    kind = TransportKind.UDP
    extra_options: frozenset[str] = frozenset()

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
                sock = _make_socket(family, options)
                try:
                    sock.connect(addr)
                except OSError:
                    sock.close()
                    raise
                owner = UdpEndpoint(sock, options)
                native = parts.native is not False
                session = DatagramSession.like(parts.make_session(native), loop.time(),
                                               native=native, role="client")
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
            sock = _make_socket(family, options)
            try:
                sock.bind(addr)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise ConnectError(where, f"cannot listen: {describe_connect_error(exc)}") from exc
        server = UdpServer(sock, options, accept)
        server.start_reading()
        return server
