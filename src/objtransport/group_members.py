"""A group's members (:class:`Members`): its addresses and their connections, re-resolution
of a ``dns:///`` name and the reconnection schedule of the members that are down.

:class:`~.group.Group` picks among the healthy ones and fails over; this part tells which
are healthy and brings the others back. It is given the service's ``open`` and ``forget``
functions and told by callbacks what the group must know: a member came up (``on_up``), the
resolver dropped one (``on_gone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .connection import Connection
from .endpoint import ConnState
from .exceptions import CircuitOpenError, ConnectError, TransportError
from .info import ConnectionInfo, connection_info
from .sansio.balancer import MemberLoad
from .sansio.breaker import BreakerState, CircuitBreaker

__all__ = ["MIN_RERESOLVE", "GroupMember", "MemberInfo", "Members", "Opener", "Resolver"]

log = logging.getLogger("objtransport.groups")

#: resolver(name, port) -> [(host, port), ...]: every address is a member
Resolver = Callable[[str, int], Awaitable[Sequence[tuple[str, int]]]]
#: open a member connection: (host, port, server_hostname) -> a connected Connection
Opener = Callable[[str, int, "str | None"], Awaitable[Connection]]
#: a member's address
Key = tuple[str, int]
#: a re-resolution after a failure waits at least this long after the previous one
MIN_RERESOLVE = 1.0


@dataclass
class GroupMember:
    """One address of the group and its current connection (None while it is down)."""

    host: str
    port: int
    conn: Connection | None = None
    #: loop time of the next connection attempt while down
    next_attempt: float = 0.0
    failures: int = 0
    connecting: bool = False
    removed: bool = False
    #: it was ejected and has not come back yet
    ejected: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def healthy(self) -> bool:
        """Connected, session open, breaker not open: it may be picked."""
        conn = self.conn
        if conn is None or conn.state is not ConnState.CONNECTED:
            return False
        link = conn.link
        return (link is not None and link.session.open
                and conn.breaker.state is not BreakerState.OPEN)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What ``Group.members()`` reports for one member."""

    host: str
    port: int
    conn_id: int | None
    healthy: bool
    breaker: str


class Members:
    """The members by address, in order; DNS re-resolution; reconnection of those down."""

    def __init__(self, group_id: int, members: list[tuple[str, int]],
                 dns: tuple[str, int] | None, *, open: Opener, forget: Callable[[int], None],
                 breaker_for: Callable[[str, int], CircuitBreaker], resolver: Resolver,
                 resolve_interval: float, timeout: float, reconnect_interval: float,
                 reconnect_max_delay: float, spawn: Callable[[Awaitable[None]], None],
                 on_up: Callable[[GroupMember, Connection], None],
                 on_gone: Callable[[GroupMember], None],
                 on_resolved: Callable[[list[Key], list[Key], list[Key]], None] | None = None
                 ) -> None:
        self.group_id = group_id
        self.dns = dns
        self.resolve_interval = resolve_interval
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.reconnect_max_delay = reconnect_max_delay
        self.breaker_for = breaker_for
        self._open = open
        self._forget = forget
        self._resolver = resolver
        self._spawn = spawn
        self._on_up = on_up
        self._on_gone = on_gone
        #: told (members, added, removed) after each successful resolution
        self._on_resolved = on_resolved
        self._loop = asyncio.get_running_loop()
        #: the members by address, in order (the group reads it per message)
        self.by_key: dict[tuple[str, int], GroupMember] = {
            (h, p): GroupMember(h, p) for h, p in members}
        self.resolutions = 0
        self._resolve_at = self._loop.time() if dns is not None else float("inf")
        self._last_resolve = float("-inf")
        #: set to run the loop now (a member changed, an attempt or a resolution is due)
        self.wake = asyncio.Event()
        self.closed = False

    # -- reading --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[GroupMember]:
        return iter(self.by_key.values())

    def __len__(self) -> int:
        return len(self.by_key)

    def infos(self) -> list[MemberInfo]:
        """The current members, in order."""
        return [MemberInfo(m.host, m.port, m.conn.id if m.conn is not None else None,
                           m.healthy, self.breaker_for(m.host, m.port).state.value)
                for m in self.by_key.values()]

    def ids(self) -> list[int]:
        """The ids of the members' live connections."""
        return [m.conn.id for m in self.by_key.values() if m.conn is not None]

    def live(self) -> list[Connection]:
        return [m.conn for m in self.by_key.values() if m.conn is not None]

    def loads(self) -> list[MemberLoad]:
        """The healthy members and how loaded each is, for the balancer."""
        out = []
        for m in self.by_key.values():
            if m.healthy:
                conn = m.conn
                assert conn is not None and conn.link is not None
                link = conn.link
                out.append(MemberLoad(m.key, link.pending_bytes + conn.resume_state.unacked_bytes,
                                      getattr(link.session, "rtt_last", None)))
        return out

    def keys_of(self, conn_id: int) -> list[tuple[str, int]]:
        """The members whose connection is ``conn_id``."""
        return [m.key for m in self.by_key.values()
                if m.conn is not None and m.conn.id == conn_id]

    def connecting(self) -> int | None:
        """A member connection that is reconnecting, breaker not open (sending on it waits)."""
        for m in self.by_key.values():
            c = m.conn
            if c is not None and c.state is ConnState.CONNECTING \
                    and c.breaker.state is not BreakerState.OPEN:
                return c.id
        return None

    def info(self, group_id: int, target: str, unconfirmed: int,
             wall_offset: float) -> ConnectionInfo:
        """A snapshot summed over the live members (``host`` is the target, ``port`` 0)."""
        infos = [connection_info(c, wall_offset) for c in self.live()]
        up = any(m.healthy for m in self.by_key.values())
        transport = infos[0].transport if infos else "tcp"
        total: dict[str, Any] = {k: sum(getattr(i, k) for i in infos) for k in _SUMMED}
        breaker = self.breaker_for(*next(iter(self.by_key))).snapshot() \
            if self.by_key else CircuitBreaker().snapshot()
        return ConnectionInfo(
            id=group_id, transport=transport, host=target, port=0,
            state=ConnState.CONNECTED.value if up else ConnState.CONNECTING.value,
            last_activity=max((i.last_activity for i in infos), default=0.0),
            circuit_breaker=breaker, role="group",
            unconfirmed=unconfirmed + total.pop("unconfirmed"), **total)

    # -- resolving ------------------------------------------------------------------------------
    async def resolve(self) -> None:
        """Resolve the ``dns:///`` name now and make its addresses the members: new ones
        connect, gone ones are handed to ``on_gone``."""
        if self.dns is None:
            return
        name, port = self.dns
        self._last_resolve = self._loop.time()
        self._resolve_at = self._last_resolve + self.resolve_interval
        try:
            answer = list(await self._resolver(name, port))
        except (OSError, TransportError) as exc:
            log.warning("group %s: resolving %s failed: %s (members kept)", self.group_id,
                        name, exc)
            return
        self.resolutions += 1
        if not answer:
            log.warning("group %s: %s resolved to no address (members kept)", self.group_id,
                        name)
            return
        wanted = [(str(h), int(p)) for h, p in answer]
        removed = [k for k in self.by_key if k not in wanted]
        added = [k for k in wanted if k not in self.by_key]
        for key in removed:
            member = self.by_key.pop(key)
            member.removed = True
            self._on_gone(member)
        for key in added:
            self.by_key[key] = GroupMember(*key, next_attempt=self._loop.time())
        if self._on_resolved is not None:
            self._on_resolved(list(self.by_key), added, removed)
        self.wake.set()

    def resolve_soon(self) -> None:
        if self.dns is not None:
            self._resolve_at = min(self._resolve_at, self._last_resolve + MIN_RERESOLVE)
            self.wake.set()

    # -- reconnecting ---------------------------------------------------------------------------
    def retry_later(self, m: GroupMember, now: float) -> None:
        """A member left: its next attempt once the reconnect interval and its breaker allow."""
        retry = self.breaker_for(m.host, m.port).retry_after(now)
        m.next_attempt = now + max(self.reconnect_interval, retry)

    async def connect(self, m: GroupMember) -> None:
        """One connection attempt for a down member (a breaker probe when it is open)."""
        m.connecting = True
        try:
            conn = await self._open(m.host, m.port, self.dns[0] if self.dns else None)
        except (ConnectError, CircuitOpenError) as exc:
            m.failures += 1
            now = self._loop.time()
            delay = min(self.reconnect_max_delay,
                        self.reconnect_interval * 2 ** min(m.failures - 1, 16))
            m.next_attempt = now + max(delay, self.breaker_for(m.host, m.port).retry_after(now))
            self.resolve_soon()
            raise ConnectError(f"{m.host}:{m.port}", str(exc)) from exc
        finally:
            m.connecting = False
            self.wake.set()
        if m.removed or self.closed:
            await conn.close(self.timeout)
            self._forget(conn.id)
            return
        m.conn = conn
        m.failures = 0
        self._on_up(m, conn)

    async def run(self) -> None:
        """Re-resolve when due; give down members an attempt when theirs is due."""
        while not self.closed:
            now = self._loop.time()
            if now >= self._resolve_at:
                await self.resolve()
            deadlines = [self._resolve_at]
            for m in list(self.by_key.values()):
                if m.conn is None and not m.connecting and not m.removed:
                    if now >= m.next_attempt:
                        self._spawn(self._attempt(m))
                    else:
                        deadlines.append(m.next_attempt)
            self.wake.clear()
            wait = min(deadlines) - self._loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()

    async def _attempt(self, m: GroupMember) -> None:
        with contextlib.suppress(ConnectError):
            await self.connect(m)


#: ConnectionInfo fields a group's snapshot sums over its members
_SUMMED = ("bytes_sent", "bytes_received", "message_count", "error_count", "messages_sent",
           "messages_received", "reconnects", "pending_bytes", "unacked_bytes",
           "unacked_messages", "unconfirmed", "duplicates_dropped", "resent", "bytes_queued")
