"""Lifecycle events of a :class:`~objtransport.NetworkTransport`, and the hub that fans them
out to subscribers.

::

    async with NetworkTransport(on_event=print) as net:      # a plain callback, or
        async for ev in net.events(maxsize=1024):            # a bounded subscription
            match ev:
                case Reconnecting(attempt=n, delay=d): ...
                case Connected(resumed=True): ...

Every event is a frozen, slotted dataclass deriving from :class:`Event`: it carries the
connection id (``None`` for listener and breaker events), the endpoint (``"tcp://host:port"``),
the transport name and ``time``, the event loop's monotonic clock when it happened.

Each subscription has a bounded queue. A subscriber that lags loses the *oldest* events and
the loss is counted (:attr:`Subscription.dropped`); publishing never blocks, and costs one
attribute test when nobody listens. These events are not the per-message path: messages go
through ``receive()``/``messages()`` or a handler.

The sans-I/O core has its own internal events (``objtransport.sansio.events``); these are the
public ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = [
    "Accepted",
    "BreakerChanged",
    "Connected",
    "Disconnected",
    "Event",
    "EventHub",
    "FailoverRedelivered",
    "GivenUp",
    "HandlerFailed",
    "ListenerClosed",
    "Listening",
    "MemberEjected",
    "MemberRejoined",
    "MembersResolved",
    "Overloaded",
    "Reconnecting",
    "RttMeasured",
    "SessionLost",
    "SessionResumed",
    "Subscription",
]

log = logging.getLogger("objtransport.events")

#: the default bound of a subscription's queue
DEFAULT_MAXSIZE = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event carries."""

    #: the connection's id, or None (listener and breaker events)
    conn_id: int | None
    #: ``"tcp://127.0.0.1:9000"``: the peer for connections, the address for listeners
    endpoint: str
    #: ``"tcp"``, ``"udp"``, ``"websocket"``, ``"grpc"``
    transport: str
    #: the event loop's clock (``loop.time()``, monotonic) when it happened
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening(Event):
    """A listener started (``endpoint`` has the port it got)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerClosed(Event):
    """A listener stopped accepting; its connections are being closed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Event):
    """A listener accepted a connection and its session is open (``endpoint``: the peer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(Event):
    """A connection is ready to carry messages: the first time (``connect()``), or again
    after a loss. ``resumed``: the session went on where it was (nothing lost)."""

    resumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected(Event):
    """A connection's link ended. ``final`` is False while it will reconnect (client) or
    waits to be resumed (listener side)."""

    reason: str
    #: it ended because of a fault, not an orderly close
    error: bool
    final: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting(Event):
    """A client connection waits ``delay`` s before reconnection attempt ``attempt`` (1, 2...)."""

    attempt: int
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResumed(Event):
    """A new link resumed the connection's session; ``resent`` messages were sent again."""

    resent: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RttMeasured(Event):
    """A keepalive PING (or a UDP PING) was answered after ``rtt`` seconds: one sample of
    the round-trip time (exporters build their RTT histograms from these)."""

    rtt: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLost(Event):
    """The session's guarantee no longer holds: ``unconfirmed`` messages may or may not have
    arrived (``NetworkTransport.unconfirmed(conn_id)`` hands them over)."""

    unconfirmed: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GivenUp(Event):
    """A client connection stopped reconnecting after ``attempts`` attempts; it ends."""

    attempts: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerChanged(Event):
    """The circuit breaker of ``endpoint`` changed state (``"closed"``, ``"open"``,
    ``"half_open"``)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Overloaded(Event):
    """Backpressure: the consumer (inbox or handler) is behind so reading from the
    connection paused (``"paused_reading"``) and later resumed (``"resumed_reading"``); a
    peer that sends but does not read our answers was dropped (``"dropped_slow_consumer"``);
    or a connection was dropped for passing a memory budget (``"dropped_over_budget"``,
    e.g. ``max_total_reassembly_bytes``). ``reason`` says more for the drops."""

    what: Literal["paused_reading", "resumed_reading", "dropped_slow_consumer",
                  "dropped_over_budget"]
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerFailed(Event):
    """The connection's handler raised (the connection goes on)."""

    error: BaseException


# -- groups (``connect_group``): ``conn_id`` is the group's id -----------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEjected(Event):
    """A group member stopped being picked (``endpoint`` is the member's): its circuit
    breaker opened, its connection was given up or closed, or the resolver dropped its
    address. ``member_id`` was its connection's id; what it had not confirmed fails over
    (``FailoverRedelivered`` follows)."""

    group: str
    member_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRejoined(Event):
    """A member that had been ejected is connected again (``member_id``, its new
    connection) and may be picked."""

    group: str
    member_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MembersResolved(Event):
    """The group's ``dns:///`` name was resolved (``endpoint`` is the target): ``members``
    (``"host:port"``, in order) are the group now; ``added`` and ``removed`` say what
    changed (both empty when nothing did)."""

    members: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverRedelivered(Event):
    """The failover of an ejected member (``endpoint``) is done: of what it had not
    confirmed, ``redelivered`` messages were sent again through the other members and
    ``unconfirmed`` were reported (``unconfirmed(group)``: no redelivery asked, the retry
    budget refused, or no member took them)."""

    group: str
    redelivered: int
    unconfirmed: int


# -- the hub --------------------------------------------------------------------------------------
class Subscription:
    """A bounded queue of events: ``async for ev in sub``, or ``await sub.get()``.

    Iteration ends when the service stops (after the queued events). ``close()`` (or leaving
    ``async with``) unsubscribes.
    """

    __slots__ = ("_hub", "_queue", "maxsize", "dropped", "_waiters", "_closed")

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._hub = hub
        self.maxsize = maxsize
        self._queue: deque[Event] = deque()
        #: events this subscriber lost because it lagged (the oldest go first)
        self.dropped = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, event: Event) -> None:
        """Queue an event (the hub calls this); never blocks."""
        q = self._queue
        if len(q) >= self.maxsize:
            q.popleft()
            self.dropped += 1
        q.append(event)
        if self._waiters:
            self._wake()

    def get_nowait(self) -> Event | None:
        """The oldest queued event, or None."""
        return self._queue.popleft() if self._queue else None

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; raises ``TimeoutError`` after ``timeout`` s and
        ``StopAsyncIteration`` once closed and drained."""
        async with asyncio.timeout(timeout):
            while not self._queue:
                if self._closed:
                    raise StopAsyncIteration
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                try:
                    await fut
                finally:
                    if fut in self._waiters:
                        self._waiters.remove(fut)
        return self._queue.popleft()

    def close(self) -> None:
        """Unsubscribe; a waiting ``get()`` ends after the queued events."""
        if not self._closed:
            self._closed = True
            self._hub.unsubscribe(self)
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()


class EventHub:
    """Fans events out to subscriptions and callbacks. ``active`` is False when nobody
    listens: publishers test it before building an event."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._callbacks: list[Callable[[Event], object]] = []
        self._failed: set[int] = set()  # callbacks whose exception was logged already
        self.active = False
        self.published = 0

    def subscribe(self, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """A new subscription that gets every event from now on."""
        sub = Subscription(self, maxsize)
        self._subs.append(sub)
        self.active = True
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        self.active = bool(self._subs or self._callbacks)

    def add_callback(self, fn: Callable[[Event], object]) -> None:
        """Call ``fn(event)`` for every event, synchronously. An exception in it is logged
        once per callback and otherwise ignored."""
        self._callbacks.append(fn)
        self.active = True

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber and callback; never blocks."""
        self.published += 1
        for sub in self._subs:
            sub.put(event)
        for fn in self._callbacks:
            try:
                fn(event)
            except Exception:
                if id(fn) not in self._failed:
                    self._failed.add(id(fn))
                    log.exception("on_event callback %r raised (logged once; events go on)",
                                  fn)

    def close(self) -> None:
        """End every subscription (after what they have queued)."""
        for sub in list(self._subs):
            sub.close()
