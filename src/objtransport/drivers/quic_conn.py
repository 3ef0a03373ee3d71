"""One QUIC connection pumped between a UDP socket and aioquic's sans-I/O
:class:`~aioquic.quic.connection.QuicConnection`: :class:`QuicPump`.

The pump does what ``aioquic.asyncio.QuicConnectionProtocol`` does, with the public API of
``QuicConnection`` only: datagrams in (``receive_datagram``), events out (``next_event``,
handed to one ``handler``), datagrams out (``datagrams_to_send``, written by the socket's
owner), one timer at ``get_timer()``: a ``loop.call_at`` when near, the loop's wheel of
link deadlines when :data:`~.link_wheel.NEAR` s or more away (an idle connection's idle
timeout, moved by every packet: no timer object per keepalive round; a PTO that far, before
an RTT sample, is served at most a 1/64 s bucket late). Datagrams that arrive together are
fed together and answered with one ``transmit`` (fewer ACK-only packets).

The pump also estimates how many stream bytes aioquic holds unsent (``unsent``): bytes
handed to ``send_stream_data`` less the packet payload that left since. aioquic has no
public figure for it, and the link needs one to keep aioquic's buffers small so that its own
scheduler (priorities, QoS) decides what goes next.

:class:`ClientSocket` is a client's own socket, connected to the server (ICMP errors
arrive), drained on each wake-up; ``rebind()`` moves the connection to a new local port
(connection migration).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    QuicEvent,
)

from .link_wheel import NEAR, wheel_for
from .sockpeek import read_first

__all__ = ["ClientSocket", "QuicPump"]

#: the least a 1-RTT packet adds to its stream bytes (flags, an 8-byte connection id, a
#: 2-byte packet number, the AEAD tag): ``unsent`` may err low (aioquic then holds a little
#: more than the link aims at), never high (a link would wait for bytes that already left)
PACKET_OVERHEAD = 27
#: datagrams read per wake-up at most (then the loop runs other callbacks)
READ_BATCH = 256
#: the shortest sleep the event loop can take: epoll (and libuv) wait whole milliseconds, so
#: a timer closer than this costs a full millisecond idle
LOOP_RESOLUTION = 0.001

Sender = Callable[[bytes, Any], None]
_ROUTING = (ConnectionIdIssued, ConnectionIdRetired, ConnectionTerminated)


class QuicPump:
    """A ``QuicConnection`` with its timer, fed by a socket owner, events to ``handler``."""

    def __init__(self, quic: QuicConnection, send: Sender) -> None:
        self.quic = quic
        self.loop = asyncio.get_running_loop()
        self._send = send
        self.handler: Callable[[QuicEvent], None] = lambda ev: None
        #: told first about connection ids and the end (the socket's owner routes by them)
        self.on_routing: Callable[[QuicEvent], None] | None = None
        #: called after each transmit (the link refills aioquic's buffers from it)
        self.on_transmitted: Callable[[], None] | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_for(self.loop).wheel  # a far get_timer() goes there
        self._soon: asyncio.Handle | None = None
        self.handed = 0  # stream bytes given to aioquic
        self.left = 0  # packet payload that left (clamped to ``handed``)
        self.datagrams_sent = 0
        self.transmits = 0
        self.datagrams_received = 0
        self.terminated = False
        #: we sent CONNECTION_CLOSE (``close``): aioquic only drains from here on
        self.closing = False
        #: told once, when ``closing`` turns True (a stopping listener waits for it)
        self.on_closing: Callable[[], None] | None = None
        self.paused = False  # reading paused: datagrams are dropped (the peer resends)
        self.overrun = 0
        #: the socket owner's ``read_waiting``: reads what waits in the socket before a
        #: deadline judges the peer (uvloop runs timers before it polls the sockets)
        self.read_first: Callable[[], None] | None = None

    # -- input -------------------------------------------------------------------------------
    def feed(self, data: bytes, addr: Any, now: float) -> None:
        """One datagram for this connection (call :meth:`pump` after a batch)."""
        if self.paused:
            self.overrun += 1
            return
        self.datagrams_received += 1
        self.quic.receive_datagram(data, addr, now)

    def pump(self) -> None:
        """After input or a timer: hand the events over, then send what is due (unless a
        handler already transmitted: that call sent the ACKs too, and an empty
        ``datagrams_to_send`` still costs aioquic tens of µs)."""
        before = self.transmits
        self.process_events()
        if self.transmits == before:
            self.transmit()

    def process_events(self) -> None:
        quic = self.quic
        event = quic.next_event()
        while event is not None:
            if isinstance(event, _ROUTING):
                if isinstance(event, ConnectionTerminated):
                    self.terminated = True
                if self.on_routing is not None:
                    self.on_routing(event)
            self.handler(event)
            event = quic.next_event()

    # -- output ------------------------------------------------------------------------------
    def transmit_soon(self) -> None:
        if self._soon is None:
            self._soon = self.loop.call_soon(self.transmit)

    def transmit(self) -> None:
        """Send the datagrams aioquic has ready; re-arm the timer."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self.terminated:
            return
        self.transmits += 1
        send = self._send
        left = 0
        n = 0
        for data, addr in self.quic.datagrams_to_send(now=monotonic()):
            send(data, addr)
            n += 1
            left += len(data) - PACKET_OVERHEAD
        if n:
            self.datagrams_sent += n
            self.left = min(self.handed, self.left + max(0, left))
        self._rearm()
        if self.on_transmitted is not None:
            self.on_transmitted()

    @property
    def unsent(self) -> int:
        """Stream bytes aioquic probably still holds (an estimate, see the module doc)."""
        return self.handed - self.left

    def close(self, error_code: int, reason: str, frame_type: int | None = None) -> None:
        """Close the connection: CONNECTION_CLOSE goes out now. aioquic then keeps the
        connection for its closing period (3 PTO) to answer late packets; whoever holds the
        pump may ``stop()`` it sooner (a stopping listener does not wait that out)."""
        self.quic.close(error_code=error_code, frame_type=frame_type,
                        reason_phrase=reason[:200])
        self.transmit()
        if not self.closing:
            self.closing = True
            if self.on_closing is not None:
                self.on_closing()

    def send_stream(self, stream_id: int, data: Any, end: bool = False) -> None:
        self.handed += len(data)
        self.quic.send_stream_data(stream_id, data, end_stream=end)

    # -- time --------------------------------------------------------------------------------
    def _rearm(self) -> None:
        at = self.quic.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is None:
            self._wheel.drop(self)
            return
        if self.handed > self.left and at - monotonic() < LOOP_RESOLUTION:
            # aioquic holds stream data and paces it out in bursts microseconds apart: a
            # timer would sleep a whole millisecond per burst (a sender idled ~40 % of its
            # time so); go on at the next loop turn instead
            self._timer = self.loop.call_soon(self._on_paced)
        elif at - monotonic() >= NEAR:
            # far (an idle connection's idle timeout, moved by every packet): the loop's
            # wheel, as the links' keepalive; a near one (loss detection, PTO, ACK delay)
            # keeps a call_at of its own and leaves the wheel's entry as it is
            self._wheel.file(self, at)
        else:
            self._timer = self.loop.call_at(at, self._on_timer)

    def read_waiting(self) -> None:
        """Before a deadline (aioquic's idle timeout, the session's liveness): feed what
        waits unread in the socket, so that a held-up loop does not judge the peer silent."""
        if self.read_first is not None and not self.paused:
            self.read_first()

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        self._timer_due(at or 0.0)

    def deadline_came(self, now: float) -> None:
        """The wheel's bucket for this pump came (``now``, monotonic): aioquic's far
        timer, unless a nearer one has the pump's own timer."""
        if self._timer is not None:
            return
        self._timer_at = None
        self._timer_due(now)

    def _timer_due(self, at: float) -> None:
        if self.terminated:
            return
        self.read_waiting()
        if self.terminated:
            return
        self.quic.handle_timer(now=max(at, monotonic()))
        self.pump()

    def _on_paced(self) -> None:
        """A loop turn after a transmit that left paced data: once the timer is due, it
        fires and whatever the pacer allows goes (before that, only the loop turns: an
        empty ``datagrams_to_send`` costs more)."""
        now = monotonic()
        at = self._timer_at
        if at is not None and now < at and not self.terminated:
            self._timer = self.loop.call_soon(self._on_paced)
            return
        self._timer = None
        self._timer_at = None
        if self.terminated:
            return
        self.quic.handle_timer(now=now)
        self.pump()

    def stop(self) -> None:
        """The connection is over: no more timers or sends."""
        self.terminated = True
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
        self._timer_at = None
        self._wheel.drop(self)  # an ended connection is not kept by the wheel


_local = threading.local()


def recv_buffer() -> bytearray:
    """A receive buffer shared by this thread's QUIC sockets (copied out at once)."""
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(65_536)
    return buf


def make_socket(family: int, bufsize: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, bufsize)
        except OSError:  # pragma: no cover - platform limits
            pass
    return sock


class ClientSocket:
    """A client's UDP socket connected to the server, feeding one pump."""

    def __init__(self, family: int, server: Any, bufsize: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.family = family
        self.server = server
        self.bufsize = bufsize
        self.pump: QuicPump | None = None
        self.error: OSError | None = None
        self.on_error: Callable[[OSError], None] | None = None
        self.sock = self._open()

    def _open(self) -> socket.socket:
        sock = make_socket(self.family, self.bufsize)
        sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0))
        sock.connect(self.server)
        self.loop.add_reader(sock.fileno(), self._on_readable)
        return sock

    @property
    def local(self) -> Any:
        return self.sock.getsockname()

    def send(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass  # dropped: QUIC's loss recovery sends it again
        except OSError as exc:
            self._failed(exc)

    def _on_readable(self) -> None:
        pump = self.pump
        buf = recv_buffer()
        sock = self.sock
        now = monotonic()
        got = 0
        for _ in range(READ_BATCH):
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._failed(exc)
                return
            if pump is not None:
                pump.feed(bytes(buf[:n]), self.server, now)
                got += 1
        if got and pump is not None:
            pump.pump()

    def read_waiting(self) -> None:
        """Read the datagrams waiting in the socket now (the pump's ``read_first``)."""
        if self.sock.fileno() >= 0:
            read_first(self.sock.fileno(), self._on_readable)

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc
            if self.on_error is not None:
                self.on_error(exc)

    def rebind(self) -> Any:
        """Move to a new local port (the server sees a new address: connection migration);
        return the new local address."""
        old = self.sock
        self.sock = self._open()
        self.loop.remove_reader(old.fileno())
        old.close()
        return self.local

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
