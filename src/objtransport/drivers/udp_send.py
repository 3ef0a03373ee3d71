"""The sending half of a :class:`~.udp_link.DatagramLink` (:class:`DatagramSender`, its base).

A message goes straight to the socket when nothing is queued (the lone-message fast path of
:meth:`DatagramSender.queue`); the turn's later ones are held and leave at its end, packed
several frames to a datagram when the peer takes it (``peer_packs``); otherwise the session
queues it and :meth:`_flush` sends at most :data:`BURST` datagrams per loop turn, within the
pacer's tokens, several per system call when the owner can (``UDP_SEGMENT``). When the
socket is full the rest is held until the owner calls :meth:`DatagramSender.writable`.
Like :class:`~.flow.FlowControl` it declares the link attributes it uses; the link sets
them in its ``__init__``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..sansio.datagram import Datagram, DatagramSession
from .flow import FlowControl
from .pacing import PacedFlush, Pacer

__all__ = ["BURST", "DatagramSender", "SendOwner"]

#: datagrams one link sends per loop turn at most
BURST = 128


class SendOwner(Protocol):
    """What sending needs from the link's socket owner (part of
    :class:`~.udp_link.LinkOwner`; ``link`` is the :class:`~.udp_link.DatagramLink`)."""

    #: UDP_SEGMENT sends work here: a turn's datagrams are held and sent together
    gso: bool

    def transmit(self, link: Any, dgram: Datagram) -> bool: ...

    def transmit_many(self, link: Any, dgrams: list[Datagram]) -> int: ...

    def want_write(self, link: Any) -> None: ...


class DatagramSender(FlowControl):
    """``send`` / ``queue``, the per-turn burst and pacing, and the held datagrams."""

    ds: DatagramSession
    owner: SendOwner
    loop: asyncio.AbstractEventLoop
    pacer: Pacer
    last_seq: int
    blocked: bool
    finished: bool
    _held: deque[Datagram]
    _turn: int
    _turn_handle: asyncio.Handle | None
    _paced: PacedFlush
    #: a connected socket's send(), for the lone-message fast path
    _sock_send: Callable[[bytes], object] | None
    _finish: Callable[[], None]

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
                if held or (self._turn and (self.owner.gso or session.peer_packs)):
                    # not the turn's first: they leave together at its end, packed into
                    # fewer datagrams and/or in one UDP_SEGMENT send
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
            if self.ds.peer_packs and not owner.gso:  # (UDP_SEGMENT: one call already)
                batch = self.ds.pack(batch)
            held.clear()
            self._transmit(batch)  # not charged: nothing paced them, or they were
            if self.blocked:
                return
        self._paced.run(self._more, self._room, self.ds.datagrams_to_send, self._out)
        if self.blocked:
            return
        if self._turn and self._turn_handle is None:
            self._turn_handle = self.loop.call_soon(self._next_turn)
        self._after_flush()

    def _more(self) -> bool:
        session = self.ds
        return (bool(session.scheduler.pending_bytes or session.has_final)
                and not self.finished and not self.blocked)

    def _room(self) -> int:
        """Bytes this turn may still send (0: the turn's burst is spent, the next goes on)."""
        if self._turn >= BURST:
            if self._turn_handle is None:
                self._turn_handle = self.loop.call_soon(self._next_turn)
            return 0
        return (BURST - self._turn) * (self.ds.options.max_datagram_payload + 28)

    def _out(self, dgrams: list[Datagram]) -> int:
        """Send a batch of the paced loop; its bytes to charge (0 when nothing paces: the
        sizes cost a call per datagram, as much as the rest of the fast path)."""
        self._transmit(dgrams)
        return sum(_size(d) for d in dgrams) if self.pacer.buckets else 0

    def _transmit(self, dgrams: list[Datagram]) -> None:
        """Send a batch; what the socket did not take is held (blocked)."""
        k = self.owner.transmit_many(self, dgrams)
        self.ds.datagrams_sent += k
        self._turn += k
        if k < len(dgrams):
            self._held.extend(dgrams[k:])
            self._block()

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

    def repace(self) -> None:
        """The limits changed: drop a pending pacing wait and send under the new ones."""
        self._paced.cancel()
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


def _size(d: Datagram) -> int:
    if isinstance(d, tuple):
        return len(d[0]) + len(d[1])
    return len(d)
