"""One QUIC connection bound to one session: :class:`QuicLink` (docs/protocol.md section 8).

* **raw** (ALPN ``objtransport-raw/1``): the client's bidirectional stream 0 carries the
  ``{packet, 4}`` byte stream both ways, exactly as a TCP socket would;
* **native** (ALPN ``objtransport/1``): stream 0 carries the preface, HELLO, ACK, PING/PONG,
  GOAWAY and the DATA of objtransport stream 0; the DATA of objtransport stream N >= 1 goes
  on a unidirectional QUIC stream of its own, opened by the sender on first use. A lost
  packet then delays only its own QUIC stream. The link routes what the session queues frame
  by frame (each frame names its stream), and feeds the session whole frames only, so frames
  of different QUIC streams never interleave inside the session's decoder.

The session's scheduler decides the order (priorities, QoS): the link hands aioquic only
about ``QUIC_HIGH`` bytes ahead of what has left in packets, refilled after each transmit.
Unreliable messages (``send_datagram``) go as DATAGRAM frames (RFC 9221).

Closing: a native side that sends GOAWAY ends its data streams (FIN) first, then the
control stream, and waits (at most ``timeout``) for the peer to end its control stream
before closing the connection, so nothing in flight is cut off. A side that receives GOAWAY
holds it until every data stream of the peer is complete, then ends its control stream and
closes the connection. Raw: FIN on stream 0; whoever sees the other's FIN after sending its
own closes the connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from time import monotonic
from typing import Any

from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from ..sansio.core import AnySession
from ..sansio.events import (
    Acked,
    AuthenticationRequested,
    Closed,
    Event,
    HandshakeComplete,
)
from ..sansio.framing import GoAwayCode
from ..sansio.reliability import ResumeState
from ..sansio.session import NativeSession
from ..sansio.throttle import TokenBucket
from .authgate import AuthGate
from .base import LinkParts, OnMessages
from .link_wheel import wheel_for
from .pacing import PacedFlush, Pacer
from .quic_conn import ClientSocket, QuicPump
from .quic_datagrams import QuicDatagrams
from .quic_end import QuicEnded
from .quic_inbound import Inbound, QuicInbound
from .quic_send import QUIC_HIGH, QuicSending
from .tcp import describe_connect_error

__all__ = ["QUIC_HIGH", "QuicEnded", "QuicLink"]

_uids = itertools.count(1)


class QuicLink(QuicInbound, QuicDatagrams, QuicSending):
    """One QUIC connection bound to one session (native or raw); what it sends, receives,
    its DATAGRAM frames and its ending are its bases' (quic_send, quic_inbound,
    quic_datagrams, quic_end)."""

    def __init__(self, pump: QuicPump, session: AnySession, parts: LinkParts, client: bool,
                 peer: Any) -> None:
        self.pump = pump
        self.quic = pump.quic
        self.client = client
        self.session = session
        self.native = isinstance(session, NativeSession)
        self._sched = session.scheduler
        self._rs: ResumeState | None = getattr(session, "rs", None)
        self.max_unacked = session.options.max_unacked_bytes
        self.timeout = session.options.timeout
        self.last_seq = 0
        self.on_messages: OnMessages = parts.on_messages
        self.on_event: Callable[[Any, Event], None] = parts.on_event
        self.max_pending = parts.max_pending
        self.pacer: Pacer = parts.pacer
        self.receive_bucket: TokenBucket | None = parts.receive_bucket
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[Closed] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.on_made: Callable[[Any], None] | None = None
        self.peer: Any = peer
        session.set_peer(peer)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_for(self.loop).wheel  # far deadlines (keepalive) go there
        self._drain_waiters: list[tuple[asyncio.Future[None], int]] = []
        self._flushed_waiters: list[asyncio.Future[None]] = []
        self._read_pauses: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._paced = PacedFlush(self.pacer, self.loop, self._flush)
        self._linger: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._flushing = False
        # streams
        self.control = 0  # the client's first bidirectional stream
        self._control_open = client  # a server may send on stream 0 once the client opened it
        self._out: dict[int, int] = {}  # objtransport stream -> our unidirectional stream
        self._in: dict[int, Inbound] = {self.control: Inbound(4 if self.native else 0)}
        self._peer_uni = 3 if client else 2  # the peer's first unidirectional stream id
        self._early: list[bytes | bytearray] = []  # data-stream frames before the HELLO
        self._route_left = 0  # bytes of the current outgoing frame still to route
        self._route_sid = 0
        self._route_magic = 4 if self.native else 0
        self._held_goaway = False
        # closing
        self._final_sent = False  # our GOAWAY / FIN is out
        self._peer_final = False  # the peer's control stream (raw: stream 0) ended
        self._quic_closed = False
        self._closed_by_peer = False
        # figures
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_dropped = 0
        self.quic_pings = 0  # raw keepalive: QUIC PING frames sent
        self.early_data_accepted: bool | None = None
        self.session_resumed = False
        self.alpn: str | None = None
        self.handshake_done: asyncio.Future[None] = self.loop.create_future()
        #: a client's own socket (``rebind()`` migrates the connection to a new port)
        self.socket: ClientSocket | None = None
        #: what the listener's ``authenticate`` said the peer is; its gate (listener)
        self.identity: str | None = None
        self.auth: AuthGate | None = None
        pump.handler = self.on_quic_event
        pump.on_transmitted = self._refill
        # senders queue straight into the session (one call per message, as on TCP); it
        # wakes the link when its queue was empty
        session.on_wake = self._wake
        session.send_high = self.max_pending
        self.queue = session.queue  # type: ignore[method-assign]
        self.queue_many = session.queue_many  # type: ignore[method-assign]

    # -- authentication (listener) --------------------------------------------------------------
    def use_auth(self, gate: AuthGate) -> None:
        """The client's HELLO token must pass ``gate`` before the session opens."""
        self.auth = gate
        if isinstance(self.session, NativeSession):
            self.session.require_authentication()

    def authenticated(self, identity: str | None) -> None:
        """The gate's answer: the session opens (``identity``) or is refused (None)."""
        session = self.session
        if self.closed.done() or not isinstance(session, NativeSession):
            return
        self.identity = identity
        session.authenticated(identity, monotonic())
        self._process_events()
        self._flush()

    # -- starting ----------------------------------------------------------------------------
    def start(self) -> None:
        """Write what the session queued at creation (the client's preface and HELLO: in
        0-RTT when a ticket allows) and arm the timers."""
        self._process_events()
        self._flush()
        self._rearm()
        if not self.native:
            self._keepalive = self.loop.call_later(self.session.options.keepalive_interval,
                                                   self._ping)

    def _ping(self) -> None:
        self._keepalive = None
        if self.lost.done() or self._quic_closed:
            return
        self.quic.send_ping(next(_uids))
        self.quic_pings += 1
        self.pump.transmit()
        self._keepalive = self.loop.call_later(self.session.options.keepalive_interval,
                                               self._ping)

    def socket_error(self, exc: OSError) -> None:
        """The client's socket failed (e.g. ICMP port unreachable): the link is lost."""
        session = self.session
        if not session.closed:
            session.connection_lost(describe_connect_error(exc))
            self._process_events()
        self._close_quic(GoAwayCode.PROTOCOL_ERROR, "socket error")

    def rebind(self) -> Any:
        """Client: move the connection to a new local UDP port (connection migration: no
        reconnect, nothing lost); return the new local address."""
        if self.socket is None:
            raise RuntimeError("only a client's connection can move to a new port")
        local = self.socket.rebind()
        self.quic.send_ping(next(_uids))  # the server validates the new path at once
        self.pump.transmit()
        return local

    # -- QUIC events -------------------------------------------------------------------------
    def on_quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._on_stream(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, HandshakeCompleted):
            self.alpn = event.alpn_protocol
            self.early_data_accepted = event.early_data_accepted
            self.session_resumed = event.session_resumed
            if not self.handshake_done.done():
                self.handshake_done.set_result(None)
        elif isinstance(event, ConnectionTerminated):
            self._terminated(event)
        elif isinstance(event, StreamReset):
            if event.stream_id == self.control or event.stream_id in self._in:
                self.fail(f"the peer reset QUIC stream {event.stream_id} "
                          f"(code {event.error_code})", GoAwayCode.PROTOCOL_ERROR)

    def _answer(self) -> None:
        self._schedule_flush()

    # -- events and time ---------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.session.take_events()
        if not events:
            return
        for ev in events:
            if isinstance(ev, Acked):
                self._rs = getattr(self.session, "rs", None)
                if self._drain_waiters:
                    self._wake_drain_waiters(everyone=True)
            elif isinstance(ev, Closed):
                self._closed_by_peer = ev.by_peer
                self._schedule_flush()
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self.closed_error())
                    self.ready.exception()
            elif isinstance(ev, HandshakeComplete):
                self._rs = getattr(self.session, "rs", None)
                if not self.ready.done():
                    self.ready.set_result(None)
            elif isinstance(ev, AuthenticationRequested) and self.auth is not None:
                self.auth.start(self, ev.token)
            self.on_event(self, ev)
        if not self.closed.done():
            self._rearm()

    def _rearm(self) -> None:
        if not self.lost.done():  # a lost link is off the wheel and stays off it
            super()._rearm()

    def _timer_due(self, due: float) -> None:
        """The session's deadline came (its own ``call_at``, or the loop's wheel for a far
        one: the native keepalive, the pong and HELLO timeouts). aioquic's own timer
        (``get_timer()``) is the pump's (:class:`~.quic_conn.QuicPump`), on the same
        wheel when far."""
        if self.lost.done():
            return
        self.pump.read_waiting()  # the peer's datagrams waiting in the socket, before the
        if self.lost.done():  # verdict (uvloop runs timers before it polls the sockets)
            return
        self.session.handle_timer(max(monotonic(), due))
        self._process_events()
        self._flush()
        if not self.closed.done():
            self._rearm()
