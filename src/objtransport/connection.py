"""A logical connection with a stable id: its current link, its reconnection, its counters.

A client connection owns one supervising task: it keeps a link up, reconnects with the
backoff policy when the link is lost unexpectedly, and ends in DISCONNECTED when the attempts
run out or the user disconnects. An accepted (server-side) connection has exactly one link
and no task. Counters survive reconnections (the sessions' figures are folded in).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
import ssl as ssl_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import Options, TransportKind
from .drivers.base import Driver, Link, LinkParts
from .drivers.pacing import Pacer, default_burst
from .exceptions import (
    CircuitOpenError,
    ConnectError,
    ConnectionNotReady,
    SendTimeout,
    SessionLost,
    TransportError,
)
from .sansio.backoff import backoff_delays
from .sansio.breaker import BreakerState, CircuitBreaker, CircuitBreakerState
from .sansio.events import (
    PRIORITY_NAMES,
    Acked,
    Closed,
    Event,
    HandshakeComplete,
    PongReceived,
    Received,
)
from .sansio.events import (
    SessionLost as SessionLostEvent,
)
from .sansio.framing import GoAwayCode
from .sansio.reliability import ResumeState
from .sansio.session import NativeSession, RawSession, ResumeLookup, Session
from .sansio.throttle import TokenBucket

__all__ = ["ConnState", "Connection", "ConnectionInfo", "Endpoint"]

log = logging.getLogger("objtransport.connection")


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a pool and a breaker are keyed by."""

    transport: TransportKind
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        scheme = self.transport.value + ("+tls" if self.tls else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one connection (``NetworkTransport.connection_info``)."""

    id: int
    transport: str
    host: str
    port: int
    state: str
    last_activity: float  # wall-clock time (time.time()) of the last send or receive
    bytes_sent: int
    bytes_received: int
    message_count: int  # messages sent + received
    error_count: int
    circuit_breaker: CircuitBreakerState
    messages_sent: int = 0
    messages_received: int = 0
    framing: str = "native"
    role: str = "client"
    reconnects: int = 0
    rtt_ms: float | None = None
    pending_bytes: int = 0
    tls: bool = False
    #: QoS and throttling, per priority name ("control", "high", "normal", "low")
    queued_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_bytes_by_priority: dict[str, int] = field(default_factory=dict)
    sent_messages_by_priority: dict[str, int] = field(default_factory=dict)
    send_rate: float = 0.0  # bytes/s over about the last second
    throttle_wait: float = 0.0  # seconds spent waiting for bandwidth tokens
    max_bandwidth: float = 0.0
    max_receive_bandwidth: float = 0.0
    #: lossless sessions (native framing)
    unacked_bytes: int = 0  # sent, not yet acknowledged by the peer
    unacked_messages: int = 0
    unconfirmed: int = 0  # messages in doubt since the peer lost the session (total)
    duplicates_dropped: int = 0  # resent messages we had already delivered
    resent: int = 0  # messages we sent again after a resume
    #: UDP: datagrams sent and received, and what was lost (see docs/protocol.md section 6)
    datagram: dict[str, int] = field(default_factory=dict)


class Hooks:
    """What a connection reports to its owner (the service)."""

    def __init__(self, deliver: Callable[[Connection, list[Received], int], None],
                 on_rtt: Callable[[float], None],
                 on_state: Callable[[Connection, ConnState], None],
                 on_error: Callable[[Connection, str], None],
                 on_detached: Callable[[Connection], None] | None = None) -> None:
        self.deliver = deliver
        self.on_detached = on_detached or (lambda conn: None)
        self.on_rtt = on_rtt
        self.on_state = on_state
        self.on_error = on_error


class Connection:
    """One logical connection (client or accepted)."""

    def __init__(self, conn_id: int, endpoint: Endpoint, options: Options,
                 breaker: CircuitBreaker, hooks: Hooks, driver: Driver, *,
                 role: str = "client", extra: dict[str, Any] | None = None,
                 native: bool = True, ssl_context: ssl_module.SSLContext | None = None,
                 server_hostname: str | None = None,
                 rng: random.Random | None = None,
                 shared_buckets: list[TokenBucket] | None = None) -> None:
        self.id = conn_id
        self.driver = driver
        self.extra = extra or {}
        self.endpoint = endpoint
        self.transport_name = endpoint.transport.value
        #: the remote address stamped on received messages
        self.peer_address: Any = (endpoint.host, endpoint.port)
        self.options = options
        self.breaker = breaker
        self.hooks = hooks
        self.role = role
        self.native = native
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.state = ConnState.CONNECTING
        self.link: Link | None = None
        self.task: asyncio.Task[None] | None = None
        self._user_closed = False
        self._state_changed = asyncio.Event()
        self.error_count = 0
        self.reconnects = 0
        #: the session that survives reconnections (client) or waits to be resumed (server)
        self.resume_state = ResumeState(os.urandom(16))
        self.resume_lookup: ResumeLookup | None = None
        #: messages whose delivery could not be confirmed (the peer lost the session)
        self.unconfirmed: list[tuple[int, bytes, int, int, bool]] = []
        self.unconfirmed_total = 0
        self._ack_waiters: list[asyncio.Future[None]] = []
        self._unverified = False  # the link's peer has not been heard from yet (raw UDP)
        self._state_changed_waiters: list[asyncio.Future[None]] = []
        self.pooled = False
        self.ever_connected = False
        self.pool_endpoint: Endpoint | None = None
        self.listener: Any = None  # the Listener that accepted it (server side)
        self._reading_paused = False
        self.last_error = ""
        self.last_activity = self.loop.time()
        # throttling: own buckets (from the options) plus shared ones (service, pool)
        self._shared_buckets = list(shared_buckets or [])
        self.send_bucket: TokenBucket | None = None
        self.receive_bucket: TokenBucket | None = None
        self.pacer = Pacer(list(self._shared_buckets))
        self.set_bandwidth(options.max_bandwidth, options.burst,
                           options.max_receive_bandwidth, options.receive_burst)
        # counters of links that ended
        self._base = [0, 0, 0, 0]  # bytes_sent, bytes_received, messages_sent, messages_received
        self._base_prio_bytes = [0, 0, 0, 0]
        self._base_prio_msgs = [0, 0, 0, 0]
        self._delivered_bytes = 0  # bytes_received already reported to deliver()
        self._base_datagram: dict[str, int] = {}  # loss counters of links that ended

    # -- counters ---------------------------------------------------------------------------
    def counters(self) -> tuple[int, int, int, int]:
        b = self._base
        link = self.link
        if link is None:
            return b[0], b[1], b[2], b[3]
        s = link.session
        return (b[0] + s.bytes_sent, b[1] + s.bytes_received, b[2] + s.messages_sent,
                b[3] + s.messages_received)

    def _fold(self, link: Link) -> None:
        s = link.session
        for i, n in enumerate(s.scheduler.sent_bytes):
            self._base_prio_bytes[i] += n
        for i, n in enumerate(s.messages_by_priority()):
            self._base_prio_msgs[i] += n
        self._base[0] += s.bytes_sent
        self._base[1] += s.bytes_received
        self._base[2] += s.messages_sent
        self._base[3] += s.messages_received
        counters = getattr(s, "loss_counters", None)
        if counters is not None:
            for name, n in counters().items():
                self._base_datagram[name] = self._base_datagram.get(name, 0) + n

    def datagram_counters(self) -> dict[str, int]:
        """UDP loss counters over every link of this connection (empty for streams)."""
        out = dict(self._base_datagram)
        link = self.link
        counters = getattr(link.session, "loss_counters", None) if link is not None else None
        if counters is not None:
            for name, n in counters().items():
                out[name] = out.get(name, 0) + n
        return out

    # -- links ------------------------------------------------------------------------------
    def make_parts(self, detect: bool = False) -> LinkParts:
        """What a driver needs to build a link for this connection.

        With ``detect`` the framing is chosen from the peer's first bytes (until then a
        native session that sends nothing holds the place, with its HELLO timeout).
        """
        return LinkParts(self._new_session, None if detect else self.native,
                         self._on_messages, self._on_event, self.options.max_pending_bytes,
                         self.extra, self.adopt if self.role == "server" else None,
                         self.pacer, self.receive_bucket)

    def set_bandwidth(self, max_bandwidth: float | None = None, burst: float | None = None,
                      max_receive_bandwidth: float | None = None,
                      receive_burst: float | None = None) -> None:
        """Change the limits (bytes/s; 0 removes a limit; None leaves it). The live link
        follows at once."""
        now = self.loop.time()
        if max_bandwidth is not None:
            self.send_bucket = _bucket(self.send_bucket, max_bandwidth, burst, now)
        if max_receive_bandwidth is not None:
            self.receive_bucket = _bucket(self.receive_bucket, max_receive_bandwidth,
                                          receive_burst, now)
        self.pacer.buckets = ([self.send_bucket] if self.send_bucket else []) + \
            self._shared_buckets
        link = self.link
        if link is not None and hasattr(link, "repace"):
            link.receive_bucket = self.receive_bucket  # type: ignore[attr-defined]
            link.repace()

    def _new_session(self, native: bool | None) -> Session:
        if native is not None:
            self.native = native
        now = self.loop.time()
        if native is False:
            return RawSession(self.options, self.id, self.transport_name, self.peer_address,
                              now)
        if self.role == "server":
            return NativeSession(self.options, self.id, self.transport_name,
                                 self.peer_address, now, self.resume_state.session_id,
                                 send_preface=False, role="server",
                                 resume_lookup=self.resume_lookup)
        return NativeSession(self.options, self.id, self.transport_name, self.peer_address,
                             now, self.resume_state.session_id, resume=self.resume_state,
                             role="client")

    def flow_control(self, pause: bool) -> None:
        """Pause or resume reading from the current link (receive backpressure)."""
        self._reading_paused = pause
        link = self.link
        if link is not None:
            if pause:
                link.pause_reading()
            else:
                link.resume_reading()

    def _on_messages(self, msgs: list[Received]) -> None:
        if self._unverified:
            self._unverified = False
            self.breaker.record_success(self.loop.time())
        link = self.link
        received = link.session.bytes_received if link is not None else 0
        nbytes = received - self._delivered_bytes
        self._delivered_bytes = received
        self.last_activity = self.loop.time()
        self.hooks.deliver(self, msgs, nbytes)

    def _on_event(self, link: Link, ev: Event) -> None:
        if isinstance(ev, PongReceived):
            self.hooks.on_rtt(ev.rtt)
        elif isinstance(ev, Acked):
            self._wake_ack_waiters()
        elif isinstance(ev, SessionLostEvent):
            self._session_lost(ev.unconfirmed)
        elif isinstance(ev, HandshakeComplete):
            if self.role == "server":
                self._set_state(ConnState.CONNECTED)
        elif isinstance(ev, Closed) and ev.error and not self._user_closed:
            self.error_count += 1
            self.last_error = ev.reason
            self.hooks.on_error(self, ev.reason)

    def adopt(self, link: Link) -> None:
        """Bind an accepted socket's link to this (server-side) connection."""
        self.link = link
        self._delivered_bytes = 0
        link.on_made = self._accepted_made
        link.closed.add_done_callback(lambda _f: self._accepted_link_closed(link))

    def _accepted_made(self, link: Link) -> None:
        peer = link.peer
        self.peer_address = peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.endpoint = Endpoint(self.endpoint.transport, str(peer[0]), int(peer[1]),
                                     self.endpoint.tls)

    def mark_connected(self) -> None:
        self._set_state(ConnState.CONNECTED)

    def _accepted_link_closed(self, link: Link) -> None:
        if self.link is not link:
            return  # the link moved to the connection whose session it resumed
        self._fold(link)
        self.link = None
        closed = link.closed.result() if link.closed.done() else None
        orderly = closed is not None and closed.by_peer and not closed.error
        if (link.session.acks if isinstance(link.session, NativeSession) else False) \
                and not orderly and not self._user_closed:
            # keep the session for the client to resume
            self._set_state(ConnState.CONNECTING)
            self.hooks.on_detached(self)
            return
        self._set_state(ConnState.DISCONNECTED)

    def take_over(self, link: Link) -> None:
        """A new socket resumed this (server-side) connection's session: it is ours now."""
        link.on_messages = self._on_messages
        link.on_event = self._on_event
        session = link.session
        session.conn_id = self.id
        session.set_peer(link.peer)
        decoder = getattr(session, "decoder", None)
        if decoder is not None:
            decoder.conn_id = self.id
        self.reconnects += 1
        self.adopt(link)
        self._accepted_made(link)

    def _set_state(self, state: ConnState) -> None:
        if state is self.state:
            return
        self.state = state
        if self._state_changed_waiters:
            waiters, self._state_changed_waiters = self._state_changed_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        if self._ack_waiters:  # flush()/wait_ack look again: the link may be gone for good
            self._wake_ack_waiters()
        self.hooks.on_state(self, state)

    # -- client side: connect, supervise, reconnect -----------------------------------------
    async def open_first(self) -> None:
        """Connect once (no retry): the caller learns at once if the endpoint is wrong.

        Raises ``CircuitOpenError`` without any network attempt when the breaker is open,
        ``ConnectError`` on failure (which feeds the breaker).
        """
        link = await self._attempt()
        self._up(link)
        self.task = asyncio.create_task(self._supervise(), name=f"objtransport-conn-{self.id}")

    async def _attempt(self) -> Link:
        now = self.loop.time()
        if not self.breaker.allow(now):
            raise CircuitOpenError(str(self.endpoint), self.breaker.retry_after(now))
        try:
            link = await self.driver.open(self.endpoint.host, self.endpoint.port,
                                          self.make_parts(), self.ssl_context, self.options,
                                          self.server_hostname)
        except ConnectError as exc:
            self.breaker.record_failure(self.loop.time())
            self.error_count += 1
            self.last_error = exc.reason
            raise
        except BaseException:
            self.breaker.release_probe()
            raise
        if getattr(link, "verified", True):
            self.breaker.record_success(self.loop.time())
        else:  # a raw datagram socket: a success once the peer is heard from, not before
            self.breaker.release_probe()
            self._unverified = True
        return link

    def _up(self, link: Link) -> None:
        self.link = link
        if self._reading_paused:
            link.pause_reading()
        self._delivered_bytes = 0
        self.last_activity = self.loop.time()
        self._set_state(ConnState.CONNECTED)

    async def _supervise(self) -> None:
        """Wait for the link to end; reconnect with backoff unless the user closed it.

        A link that fails before the peer sent or acknowledged anything (a server that
        accepts the socket, then refuses the session) counts as a failed attempt: the
        backoff schedule goes on instead of starting over, so such a peer is given up
        after ``max_reconnect_attempts`` like one that refuses the connection.
        """
        delays: Iterator[float] | None = None
        while True:
            link = self.link
            assert link is not None
            acked_before = self.resume_state.acked
            closed = await link.closed
            self._fold(link)
            self.link = None
            if self._user_closed:
                break
            if closed.error:
                self.breaker.record_failure(self.loop.time())
            if self.pooled and not closed.error:
                # closed in order (by the peer, or idle): a pooled connection leaves its
                # pool rather than reconnecting; the next send_to opens another
                self._given_up()
                break
            progressed = (link.session.bytes_received > 0
                          or self.resume_state.acked != acked_before)
            if not closed.error or progressed:
                delays = None
            log.info("connection %s to %s lost (%s); reconnecting", self.id, self.endpoint,
                     closed.reason)
            self._set_state(ConnState.CONNECTING)
            if delays is None:
                delays = self._delays()
            new = await self._reconnect(delays)
            if new is None:
                self._given_up()
                break
            self.reconnects += 1
            self._up(new)
        self._set_state(ConnState.DISCONNECTED)

    def _given_up(self) -> None:
        """No more attempts: what the peer had not acknowledged can no longer be confirmed.
        It is reported (``unconfirmed``, ``SessionLost`` in waiters), never dropped."""
        if self._user_closed or not self.resume_state.unacked_data:
            return
        lost = self.resume_state.take_unconfirmed()
        self._session_lost(lost, "the connection was given up")
        log.warning("connection %s to %s given up with %d message(s) not acknowledged",
                    self.id, self.endpoint, len(lost))

    def _delays(self) -> Iterator[float]:
        o = self.options
        return backoff_delays(o.reconnect_interval, o.reconnect_multiplier,
                              o.reconnect_max_delay, o.max_reconnect_attempts,
                              self.rng if o.reconnect_jitter else None)

    async def _reconnect(self, delays: Iterator[float]) -> Link | None:
        o = self.options
        for delay in delays:
            wait = max(delay, self.breaker.retry_after(self.loop.time()))
            await asyncio.sleep(wait)
            if self._user_closed:
                return None
            try:
                return await self._attempt()
            except (ConnectError, CircuitOpenError) as exc:
                log.debug("reconnect %s to %s failed: %s", self.id, self.endpoint, exc)
        if o.max_reconnect_attempts:
            log.warning("connection %s to %s: giving up after %d reconnect attempts (%s)",
                        self.id, self.endpoint, o.max_reconnect_attempts, self.last_error)
        else:
            log.info("connection %s to %s lost; it does not reconnect (%s)", self.id,
                     self.endpoint, self.last_error)
        return None

    # -- acknowledgements -------------------------------------------------------------------
    def _wake_ack_waiters(self) -> None:
        waiters = self._ack_waiters
        self._ack_waiters = []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _session_lost(self, unconfirmed: list[tuple[int, bytes, int, int, bool]],
                      why: str = "the peer lost the session") -> None:
        """The session's guarantee no longer holds: say so, loudly, and keep the list."""
        self.unconfirmed.extend(unconfirmed)
        self.unconfirmed_total += len(unconfirmed)
        self.error_count += 1
        self.last_error = f"{why}: {len(unconfirmed)} message(s) not confirmed"
        self.hooks.on_error(self, self.last_error)
        self._wake_ack_waiters()

    async def wait_acked(self, timeout: float, seq: int | None = None) -> None:
        """Wait until the peer acknowledged everything sent so far (or up to ``seq``).

        Raises ``SendTimeout`` after ``timeout`` s and ``SessionLost`` if the peer lost the
        session meanwhile. Without ACKs (raw framing) it waits until all is handed to the
        socket.
        """
        lost_before = self.unconfirmed_total
        rs = self.resume_state
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.unconfirmed_total != lost_before:
                        raise SessionLost(str(self.endpoint), self.unconfirmed)
                    link = self.link
                    if link is not None and not getattr(link.session, "acks", False) \
                            and link.session.open:
                        await link.wait_flushed(timeout)
                        return
                    if not rs.unacked_data or (seq is not None and rs.acked >= seq):
                        return
                    if self.state is ConnState.DISCONNECTED:
                        raise ConnectionNotReady(self.id, self.state.value, str(self.endpoint))
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._ack_waiters.append(fut)  # woken by ACKs and by state changes
                    await fut
        except TimeoutError:
            raise SendTimeout(f"{rs.unacked_count} message(s) to {self.endpoint} not "
                              f"acknowledged within {timeout:g} s") from None

    # -- sending ----------------------------------------------------------------------------
    async def ready_link(self, timeout: float) -> Link:
        """The open link, waiting up to ``timeout`` while (re)connecting."""
        link = self.link
        if link is not None and link.session.is_open:
            return link
        now = self.loop.time()
        if self.breaker.state is BreakerState.OPEN and self.breaker.retry_after(now) > 0:
            # the endpoint is down: fail at once instead of waiting for a reconnection
            raise CircuitOpenError(str(self.endpoint), self.breaker.retry_after(now))
        if self.state is ConnState.CONNECTING and not self._user_closed:
            try:
                async with asyncio.timeout(timeout):
                    while self.state is ConnState.CONNECTING:
                        await self._state_changed.wait()
            except TimeoutError:
                pass
            link = self.link
            if link is not None and link.session.is_open:
                return link
        now = self.loop.time()
        if self.breaker.state is BreakerState.OPEN and self.breaker.retry_after(now) > 0:
            raise CircuitOpenError(str(self.endpoint), self.breaker.retry_after(now))
        state = "closing" if self.closing else self.state.value
        raise ConnectionNotReady(self.id, state, str(self.endpoint))

    @property
    def closing(self) -> bool:
        """Connected, but its session is ending (a close or GOAWAY is under way)."""
        link = self.link
        return self._user_closed or (self.state is ConnState.CONNECTED and link is not None
                                     and not link.session.is_open)

    # -- closing ----------------------------------------------------------------------------
    async def close(self, timeout: float, code: int = GoAwayCode.NORMAL,
                    reason: str = "closed") -> None:
        """Orderly close: queued messages go out and are acknowledged (up to ``timeout``),
        GOAWAY, socket closed. What stays unacknowledged is reported as unconfirmed."""
        loop = self.loop
        deadline = loop.time() + timeout
        link = self.link
        if link is not None and getattr(link.session, "acks", False) and link.session.open:
            try:
                await self.wait_acked(timeout)
            except TransportError:
                pass  # reported below
        self._user_closed = True
        timeout = max(0.01, deadline - loop.time())
        link = self.link
        if link is not None:
            link.close(code, reason)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(link.lost)
            except TimeoutError:
                link.abort()
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self.link is not None:
            self._fold(self.link)
            self.link = None
        if self.resume_state.unacked_data:
            lost = self.resume_state.take_unconfirmed()
            self._session_lost(lost)
            log.warning("connection %s to %s closed with %d message(s) not acknowledged",
                        self.id, self.endpoint, len(lost))
        self._set_state(ConnState.DISCONNECTED)

    def info(self, wall_offset: float) -> ConnectionInfo:
        bs, br, ms, mr = self.counters()
        snap = self.breaker.snapshot()
        if snap.last_failure is not None:
            snap = CircuitBreakerState(snap.state, snap.failure_count,
                                       snap.last_failure + wall_offset, snap.success_count)
        link = self.link
        rtt = None
        if link is not None:
            last = getattr(link.session, "rtt_last", None)
            rtt = last * 1000.0 if last is not None else None
        return ConnectionInfo(
            id=self.id, transport=self.endpoint.transport.value, host=self.endpoint.host,
            port=self.endpoint.port, state=self.state.value,
            last_activity=self.last_activity + wall_offset, bytes_sent=bs, bytes_received=br,
            message_count=ms + mr, error_count=self.error_count, circuit_breaker=snap,
            messages_sent=ms, messages_received=mr,
            framing="native" if self.native else "raw", role=self.role,
            reconnects=self.reconnects, rtt_ms=rtt,
            pending_bytes=link.pending_bytes if link is not None else 0, tls=self.endpoint.tls,
            unacked_bytes=self.resume_state.unacked_bytes,
            unacked_messages=self.resume_state.unacked_count,
            unconfirmed=self.unconfirmed_total,
            duplicates_dropped=self.resume_state.duplicates, resent=self.resume_state.resent,
            datagram=self.datagram_counters(),
            **self._qos_info())

    def _qos_info(self) -> dict[str, Any]:
        names = PRIORITY_NAMES
        link = self.link
        queued = sent = msgs = [0, 0, 0, 0]
        if link is not None:
            sched = link.session.scheduler
            queued = sched.queued_by_priority()
            sent = sched.sent_bytes
            msgs = link.session.messages_by_priority()
        now = self.loop.time()
        return {
            "queued_bytes_by_priority": dict(zip(names, queued, strict=True)),
            "sent_bytes_by_priority": {n: a + b for n, a, b in
                                       zip(names, self._base_prio_bytes, sent, strict=True)},
            "sent_messages_by_priority": {n: a + b for n, a, b in
                                          zip(names, self._base_prio_msgs, msgs, strict=True)},
            "send_rate": self.pacer.rate(now),
            "throttle_wait": self.pacer.waited,
            "max_bandwidth": self.send_bucket.rate if self.send_bucket else 0.0,
            "max_receive_bandwidth": self.receive_bucket.rate if self.receive_bucket else 0.0,
        }


def make_session(native: bool | None, options: Options, conn_id: int, transport: str,
                 peer: Any, now: float, session_id: bytes) -> Session:
    """A session for a new link: native, raw, or (``None``) a native placeholder that sends
    nothing until the framing is detected."""
    if native is None:
        return NativeSession(options, conn_id, transport, peer, now, session_id,
                             send_preface=False)
    if native:
        return NativeSession(options, conn_id, transport, peer, now, session_id)
    return RawSession(options, conn_id, transport, peer, now)


def _bucket(current: TokenBucket | None, rate: float, burst: float | None,
            now: float) -> TokenBucket | None:
    """The bucket for a new limit: None for 0, the current one re-rated, or a new one."""
    if rate <= 0:
        return None
    b = burst or default_burst(rate)
    if current is None:
        return TokenBucket(rate, b, now)
    current.set_rate(rate, b, now)
    return current
