"""One datagram peer's link: a :class:`DatagramSession` pumped through a socket owner.

The owner (:mod:`.udp`: a connected endpoint or a listener) reads the socket and hands each
datagram to the link's session; the link sends what the session queued, straight away and at
most :data:`BURST` datagrams per loop turn (so a receiver in the same process, or a slower
one, drains its socket between bursts). When the socket is full the rest waits for the
owner's ``add_writer``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any, Protocol

from ..sansio.core import AnySession
from ..sansio.datagram import Datagram, DatagramSession
from ..sansio.events import Closed, Event, HandshakeComplete, Received
from ..sansio.framing import GoAwayCode
from ..sansio.throttle import TokenBucket
from .base import LinkParts
from .flow import FlowControl
from .pacing import Pacer

__all__ = ["BURST", "DatagramLink", "LinkOwner"]

#: datagrams one link sends per loop turn at most
BURST = 128


class LinkOwner(Protocol):
    """What a :class:`DatagramLink` needs from the socket it sends through."""

    sock: socket.socket
    #: a connected socket with this one link: pausing the link stops reading the socket
    connected: bool
    #: UDP_SEGMENT sends work here: a turn's datagrams are held and sent together
    gso: bool

    def transmit(self, link: DatagramLink, dgram: Datagram) -> bool:
        """Send one datagram; False if the socket is full (the caller keeps it)."""
        ...

    def transmit_many(self, link: DatagramLink, dgrams: list[Datagram]) -> int:
        """Send datagrams in order (several per system call where it can); return how
        many went."""
        ...

    def want_write(self, link: DatagramLink) -> None:
        """``link`` has datagrams waiting for room in the socket."""
        ...

    def detach(self, link: DatagramLink) -> None:
        """``link`` is over."""
        ...

    def start_reading(self) -> None: ...

    def stop_reading(self) -> None: ...


class DatagramLink(FlowControl):
    """One datagram peer bound to one :class:`DatagramSession`."""

    def __init__(self, session: DatagramSession, parts: LinkParts, owner: LinkOwner,
                 peer: Any) -> None:
        self.session: AnySession = session  # the Link protocol's view
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
        #: what the listener's ``authenticate`` said the peer is (None: not authenticated)
        self.identity: str | None = None
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
            owner.sock.send if owner.connected else None)

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
        self.ds.drop_queued()
        self.ds.connection_lost(reason)
        self._finish()
        self._process_events()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message and send what the turn allows; True when the caller should
        wait (``wait_writable``). Raises ``ConnectionNotReady`` / ``MessageTooLarge``."""
        wait = self.queue(data, stream, priority, text)
        self.last_seq = self.ds.messages_sent
        return wait

    def queue(self, data: bytes | bytearray | memoryview, stream: int = 0,
              priority: int = 2, text: bool = False) -> bool:
        """:meth:`send` without the message's number (the senders' one call per message)."""
        session = self.ds
        held = self._held
        if self._turn + len(held) < BURST and not self.blocked and not self.pacer.buckets:
            dgram = session.encode_direct(data, stream, priority, text)
            if dgram is not None:  # nothing queued: straight to the socket
                if held or (self._turn and self.owner.gso):
                    # not the turn's first: they leave together at its end (UDP_SEGMENT)
                    held.append(dgram)
                    if self._turn_handle is None:
                        self._turn_handle = self.loop.call_soon(self._next_turn)
                    return False
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
                    held.append(dgram)
                    self._block()
                return False
        session.send_message(data, stream, priority, text)
        if not self.blocked:
            self._flush()
        return session.scheduler.pending_bytes > self.max_pending

    def _flush(self) -> None:
        """Send queued datagrams: at most BURST per loop turn, within the pacer's tokens."""
        if self.finished:
            return
        owner = self.owner
        held = self._held
        if held:
            batch = list(held)
            k = owner.transmit_many(self, batch)
            held.clear()
            self.ds.datagrams_sent += k
            self._turn += k
            if k < len(batch):
                held.extend(batch[k:])
                self._block()
                return
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
            now = monotonic()
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
            k = owner.transmit_many(self, dgrams)
            if k < len(dgrams):
                held.extend(dgrams[k:])
                session.datagrams_sent += k
                self._turn += k
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
        if not self.blocked and (self._held or self.ds.scheduler.pending_bytes
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
        self.ds.handle_timer(monotonic())
        self.ds.timer_changed = False
        self._process_events()
        self._flush()
        self._rearm()

    # -- closing ---------------------------------------------------------------------------
    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: what is queued goes out, then GOAWAY (native), then the link ends."""
        self.ds.close(code, reason)
        self._process_events()

    def forget(self, reason: str) -> None:
        """A listener's peer is dropped without a word (as an idle one is), not an error."""
        if self.finished:
            return
        self._held.clear()
        self.ds.forget(reason)
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
        if self.owner.connected:
            self.owner.stop_reading()

    def resume_reading(self, reason: str = "consumer") -> None:
        self._read_pauses.discard(reason)
        if not self._read_pauses and self.read_paused:
            self.read_paused = False
            if self.owner.connected and not self.finished:
                self.owner.start_reading()


def _size(d: Datagram) -> int:
    if isinstance(d, tuple):
        return len(d[0]) + len(d[1])
    return len(d)
