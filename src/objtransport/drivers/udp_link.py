"""One datagram peer's link: a :class:`DatagramSession` pumped through a socket owner.

The owner (:mod:`.udp`: a connected endpoint or a listener) reads the socket and hands each
datagram to the link's session; the link sends what the session queued, straight away and at
most :data:`BURST` datagrams per loop turn (so a receiver in the same process, or a slower
one, drains its socket between bursts). When the socket is full the rest waits for the
owner's ``add_writer``. The sending half is :class:`~.udp_send.DatagramSender` (its base);
this module keeps the link's state, its events and timer, closing and read pausing. The
session's far deadlines (keepalive, the peer's silence) are filed in the loop's wheel, near
ones get a ``loop.call_at`` (:class:`~.wheel_timer.WheelTimer`): an idle peer's keepalive
round makes no timer object.
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
from ..sansio.events import Closed, Event, HandshakeComplete
from ..sansio.framing import GoAwayCode
from ..sansio.throttle import TokenBucket
from .base import LinkParts, OnMessages
from .link_wheel import wheel_for
from .pacing import PacedFlush, Pacer
from .udp_send import BURST, DatagramSender

__all__ = ["BURST", "DatagramLink", "LinkOwner"]

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

    def read_waiting(self) -> None:
        """Read what waits in the socket now (before a deadline judges the peer)."""
        ...

    def stop_reading(self) -> None: ...


class DatagramLink(DatagramSender):
    """One datagram peer bound to one :class:`DatagramSession`."""

    owner: LinkOwner

    def __init__(self, session: DatagramSession, parts: LinkParts, owner: LinkOwner,
                 peer: Any) -> None:
        self.session: AnySession = session  # the Link protocol's view
        self.ds = session
        self.owner = owner
        self.peer: Any = peer
        self.loop = asyncio.get_running_loop()
        self.on_messages: OnMessages = parts.on_messages
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
        self._paced = PacedFlush(self.pacer, self.loop, self._flush)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_for(self.loop).wheel  # far deadlines (keepalive) go there
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

    # -- events and time -------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.ds.take_events()
        for ev in events:
            if isinstance(ev, Closed):
                self._flush()  # what is left (a GOAWAY); the link ends once it is out
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self.closed_error())
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
        if not self.finished:  # a finished link is off the wheel and stays off it
            super()._rearm()

    def _timer_due(self, due: float) -> None:
        """The session's deadline came (its own ``call_at``, or the loop's wheel for a far
        one: keepalive, the peer's silence, a backed-off probe)."""
        if self.finished:
            return
        if not self.read_paused:
            # our loop may have been held up while the peer's datagrams waited in the
            # socket (uvloop runs timers before it polls): they are read before the verdict
            self.owner.read_waiting()
            if self.finished:
                return
        self.ds.handle_timer(max(monotonic(), due))
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
        if self._turn_handle is not None:
            self._turn_handle.cancel()
            self._turn_handle = None
        self._paced.cancel()
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

