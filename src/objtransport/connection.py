"""A logical connection with a stable id: its current link, its state, its counters.

A client connection's link is brought up and kept up by its :class:`~.reconnect.Supervisor`
(one task: it reconnects with the backoff policy when the link is lost unexpectedly, and ends
in DISCONNECTED when the attempts run out or the user disconnects). An accepted (server-side)
connection has exactly one link at a time and no task; a native one can be resumed by the
client on a new socket (:meth:`Connection.take_over`). Counters survive reconnections (the
sessions' figures are folded into :class:`~.counters.LinkTotals`).
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl as ssl_module
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from .accepted import AcceptedSide
from .acks import Confirmations
from .closing import Closing
from .config import Options
from .connection_counters import ConnectionCounters
from .counters import LinkTotals
from .drivers.base import Driver, Link
from .endpoint import ConnState, Endpoint
from .events import EventHub, Overloaded
from .events import SessionLost as SessionLostEvent
from .expiry import Expiry
from .info import ConnectionInfo
from .lifecycle import emit, state_changed
from .limits import Limits
from .link_events import LinkEvents
from .linkwait import LinkWait
from .offline import OfflineQueue
from .reconnect import Supervisor
from .sansio.breaker import CircuitBreaker
from .sansio.chunk_pool import SpareBudget
from .sansio.events import (
    Received,
)
from .sansio.framing import GoAwayCode
from .sansio.reliability import ResumeState, Unacked
from .sansio.session import ResumeLookup
from .sansio.throttle import TokenBucket

__all__ = ["ConnState", "Connection", "ConnectionInfo", "Endpoint", "Hooks"]

#: the jitter source of connections created without one (a Random is ~2.9 KB)
_RNG = random.Random()


class Hooks:
    """What a connection reports to its owner (the service)."""

    def __init__(self, deliver: Callable[[Connection, list[Received], int], None],
                 on_rtt: Callable[[float], None],
                 on_state: Callable[[Connection, ConnState], None],
                 on_error: Callable[[Connection, str], None],
                 on_detached: Callable[[Connection], None] | None = None,
                 events: EventHub | None = None) -> None:
        self.deliver = deliver
        #: where lifecycle events go (:mod:`.lifecycle` publishes them)
        self.events = events or EventHub()
        self.on_detached = on_detached or (lambda conn: None)
        self.on_rtt = on_rtt
        self.on_state = on_state
        self.on_error = on_error
        #: request/reply (:mod:`.requests`): answers that arrived, a session whose
        #: requests can no longer be answered, and what answers the requests received
        self.on_replies: Callable[[Connection, list[Any]], None] = lambda conn, r: None
        self.on_lost: Callable[[Connection, str], None] = lambda conn, why: None
        self.responder: Any = None
        #: ttl: the clock deadlines are on (Unix time unless the service was given one),
        #: and who counts the messages given up
        self.clock: Callable[[], float] = time.time
        self.on_expired: Callable[[list[Unacked]], None] = lambda lost: None
        #: the bound on the chunk pools' spares of all the service's sessions
        self.spare_chunks: SpareBudget | None = None


class Connection(ConnectionCounters):
    """One logical connection (client or accepted; its counters over every link:
    :class:`~.connection_counters.ConnectionCounters`)."""

    # slots, not an attribute dict: 10,000 idle connections on a listener (design.md)
    __slots__ = ("id", "driver", "extra", "endpoint", "transport_name", "peer_address",
                 "options", "breaker", "hooks", "role", "native", "ssl_context",
                 "server_hostname", "rng", "loop", "state", "task", "closed_by_user",
                 "_state_changed", "error_count", "reconnects", "resume_state",
                 "resume_lookup", "confirmations", "offline", "_unverified", "pooled",
                 "ever_connected", "pool_endpoint", "listener", "identity", "_reading_paused",
                 "last_error", "end_reason", "end_code", "resumed", "last_activity", "limits",
                 "_delivered_bytes", "server", "waiting", "link_events", "ending",
                 "expiry", "token", "deliver", "plain")

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
        #: no compression configured: send_data's fast path may queue straight on the link
        #: (``options`` is frozen and never replaced, so this never goes stale)
        self.plain = options.compression is None
        self.breaker = breaker
        self.hooks = hooks
        self.role = role
        self.native = native
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        #: reconnect jitter; accepted connections and those given none share one
        self.rng = rng or _RNG
        self.loop = asyncio.get_running_loop()
        self.state = ConnState.CONNECTING
        self.link: Link | None = None
        #: the supervising task of a client connection (None for accepted ones)
        self.task: asyncio.Task[None] | None = None
        #: ``close()`` was called: no more reconnections or resumes
        self.closed_by_user = False
        #: created by the first state_change() waiter (an Event costs ~900 bytes)
        self._state_changed: asyncio.Event | None = None
        self.error_count = 0
        self.reconnects = 0
        #: the session that survives reconnections (client) or waits to be resumed (server)
        self.resume_state = ResumeState(os.urandom(16), hooks.spare_chunks)
        self.resume_lookup: ResumeLookup | None = None
        #: messages whose delivery could not be confirmed, and who waits for ACKs
        self.confirmations = Confirmations()
        #: messages sent with a ttl: given up when it passes (counted, reported)
        self.expiry = Expiry(self)
        #: messages sent while a native client connection reconnects (for the next link)
        self.offline = OfflineQueue(options.max_pending_bytes)
        self._unverified = False  # the link's peer has not been heard from yet (raw UDP)
        self.pooled = False
        self.ever_connected = False
        self.pool_endpoint: Endpoint | None = None
        self.listener: Any = None  # the Listener that accepted it (server side)
        #: the peer's identity: what the listener's ``authenticate`` returned, or the
        #: subject of a client certificate (mutual TLS); None otherwise
        self.identity: str | None = None
        #: (client) the token of the current connection attempt (``token=`` or what
        #: ``credentials=`` gave for it)
        self.token: str | None = None
        self._reading_paused = False
        self.last_error = ""
        #: how the last link ended: (reason, by a fault)
        self.end_reason: tuple[str, bool] = ("closed", False)
        #: the GOAWAY code it ended with (-1: the transport was lost under it)
        self.end_code: int | None = None
        #: the last handshake resumed the session of an earlier link
        self.resumed = False
        self.last_activity = self.loop.time()
        # throttling: own buckets (from the options) plus shared ones (service, pool)
        self.limits = Limits(options, self.loop.time(), shared_buckets)
        #: what the links that ended carried
        self.totals = LinkTotals()
        self._delivered_bytes = 0  # bytes_received already reported to deliver()
        #: where its messages go (msgs, payload bytes): the owner's route until it binds
        #: the connection's own (its handler runner or inbox queue, ``Receivers.attach``)
        self.deliver: Callable[[list[Received], int], None] = partial(hooks.deliver, self)
        #: the accepted side's link handling (None for a client connection)
        self.server = AcceptedSide(self) if role == "server" else None
        #: what a send does while there is no open link; how the connection ends
        self.waiting = LinkWait(self)
        #: what the sessions of its links tell it (links call ``link_events.on_event``)
        self.link_events = LinkEvents(self)
        self.ending = Closing(self)

    def record_error(self, reason: str) -> None:
        """Count a failure of this connection (e.g. a refused reconnection)."""
        self.error_count += 1
        self.last_error = reason

    # -- links (a driver builds them from link_setup.make_parts) -------------------------
    def set_bandwidth(self, max_bandwidth: float | None = None, burst: float | None = None,
                      max_receive_bandwidth: float | None = None,
                      receive_burst: float | None = None) -> None:
        """Change the limits (bytes/s; 0 removes a limit; None leaves it). The live link
        follows at once."""
        self.limits.set(self.loop.time(), max_bandwidth, burst, max_receive_bandwidth,
                        receive_burst)
        link = self.link
        if link is not None and hasattr(link, "repace"):
            link.receive_bucket = self.limits.receive_bucket  # type: ignore[attr-defined]
            link.repace()

    def flow_control(self, pause: bool) -> None:
        """Pause or resume reading from the current link (receive backpressure)."""
        if pause is not self._reading_paused:
            emit(self, Overloaded, what="paused_reading" if pause else "resumed_reading")
        self._reading_paused = pause
        link = self.link
        if link is not None:
            if pause:
                link.pause_reading()
            else:
                link.resume_reading()

    def on_messages(self, msgs: list[Received], received: int, /) -> None:
        """A read's messages; ``received``: the link's session's ``delivered_bytes`` after
        it (every link hands it over: the connection's ``link`` is not set yet while a
        client link delivers what came with the peer's HELLO). What the link's
        earlier reads delivered was counted then, from 0 at its start (even before
        :meth:`up`): the difference is these messages' payload bytes."""
        if self._unverified:
            self._unverified = False
            self.breaker.record_success(self.loop.time())
        nbytes = received - self._delivered_bytes
        self._delivered_bytes = received
        self.last_activity = self.loop.time()
        self.deliver(msgs, nbytes)

    def set_state(self, state: ConnState) -> None:
        """The one place the state changes: wakes waiters and tells the owner."""
        old = self.state
        if state is old:
            return
        self.state = state
        state_changed(self, old, state)
        changed = self._state_changed
        if changed is not None:
            self._state_changed = None
            changed.set()
        self.confirmations.wake()  # flush()/wait_ack look again: the link may be gone
        if state is ConnState.DISCONNECTED:
            self.expiry.close()
        self.hooks.on_state(self, state)

    async def state_change(self) -> None:
        """Wait for the next change of state."""
        if self._state_changed is None:
            self._state_changed = asyncio.Event()
        await self._state_changed.wait()

    # -- server side (an AcceptedSide drives these) -------------------------------------------
    def attach(self, link: Link) -> None:
        """``link`` is now this connection's current link (an accepted or resumed one)."""
        self.link = link
        self._delivered_bytes = 0

    def fold_link(self, link: Link) -> None:
        """A link ended (:meth:`.ConnectionCounters.fold_link`): the next one's reads count
        their bytes from its start."""
        super().fold_link(link)
        self._delivered_bytes = 0

    def take_over(self, link: Link) -> None:
        """A new socket resumed this (server-side) connection's session: it is ours now."""
        assert self.server is not None, "only an accepted connection can be resumed"
        self.server.take_over(link)

    def expire(self) -> None:
        """A kept session was not resumed in time: the connection ends (server side)."""
        assert self.server is not None, "only an accepted connection is kept"
        self.server.expire()

    # -- client side (the Supervisor drives these) -------------------------------------------
    async def open_first(self) -> None:
        """Connect once (no retry): the caller learns at once if the endpoint is wrong; then
        the supervising task keeps the connection up.

        Raises ``CircuitOpenError`` without any network attempt when the breaker is open,
        ``ConnectError`` on failure (which feeds the breaker).
        """
        supervisor = Supervisor(self)
        self.up(await supervisor.attempt())
        self.task = asyncio.create_task(supervisor.run(), name=f"objtransport-conn-{self.id}")

    def up(self, link: Link) -> None:
        """A new link of this client connection is open."""
        self.link = link
        if self._reading_paused:
            link.pause_reading()
        # not `_delivered_bytes = 0`: messages that came with the peer's HELLO were
        # delivered (and counted) before this (fold_link starts each link's count)
        self.last_activity = self.loop.time()
        if len(self.offline):  # after what the resumed session resends: order is kept
            refused = self.offline.drain_into(link)
            if refused:
                self.session_lost(refused, "larger than the peer's max_message_size")
        self.set_state(ConnState.CONNECTED)

    def expect_first_message(self) -> None:
        """The link's peer is unverified (raw UDP): its first message scores the breaker."""
        self._unverified = True

    def give_up(self) -> None:
        """No more attempts: what the peer had not acknowledged is reported, never dropped
        (:meth:`.Closing.give_up`)."""
        self.ending.give_up()

    # -- acknowledgements -------------------------------------------------------------------
    @property
    def unconfirmed_total(self) -> int:
        """Messages in doubt since the peer lost the session (in all)."""
        return self.confirmations.total

    def session_lost(self, unconfirmed: list[Unacked],
                     why: str = "the peer lost the session") -> None:
        """The session's guarantee no longer holds: say so, loudly, and keep the list."""
        self.record_error(f"{why}: {len(unconfirmed)} message(s) not confirmed")
        self.hooks.on_error(self, self.last_error)
        emit(self, SessionLostEvent, unconfirmed=len(unconfirmed), reason=why)
        self.confirmations.add(unconfirmed)
        self.hooks.on_lost(self, why)

    def take_unconfirmed(self) -> list[bytes]:
        """Hand over (and forget) the payloads whose delivery could not be confirmed."""
        return self.confirmations.take()

    async def wait_acked(self, timeout: float, seq: int | None = None, *,
                         on_link: Link | None = None) -> None:
        """Wait until the peer acknowledged everything sent so far (or up to ``seq``).

        Raises ``SendTimeout`` after ``timeout`` s and ``SessionLost`` if the peer lost the
        session meanwhile. Without ACKs (raw framing) it waits until all is handed to the
        socket. With ``on_link``, it returns early once that link is lost
        (:meth:`.Confirmations.wait`).
        """
        await self.confirmations.wait(self, timeout, seq, on_link=on_link)

    # -- sending while there is no open link (LinkWait) ---------------------------------------
    def queue_offline(self, data: bytes | bytearray | memoryview, stream: int, priority: int,
                      text: bool) -> bool:
        """Keep one message for the next link while a native client connection
        reconnects; True if kept (:meth:`.LinkWait.queue_offline`)."""
        return self.waiting.queue_offline(data, stream, priority, text)

    async def ready_link(self, timeout: float) -> Link:
        """The open link, waiting up to ``timeout`` while (re)connecting
        (:meth:`.LinkWait.ready_link`)."""
        return await self.waiting.ready_link(timeout)

    @property
    def closing(self) -> bool:
        """Connected, but its session is ending (a close or GOAWAY is under way)."""
        return self.waiting.closing

    # -- closing ----------------------------------------------------------------------------
    async def close(self, timeout: float, code: int = GoAwayCode.NORMAL,
                    reason: str = "closed") -> None:
        """Orderly close: queued messages go out and are acknowledged (up to ``timeout``),
        GOAWAY, socket closed. What stays unacknowledged is reported as unconfirmed."""
        await self.ending.close(timeout, code, reason)
