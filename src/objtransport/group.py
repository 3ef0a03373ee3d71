"""Many endpoints behind one id: one :class:`Group` (``NetworkTransport.connect_group``);
:mod:`.groups` holds them.

A group's members are normal connections (own session, breaker, metrics, ids listed by
``connections()``), opened through the service's ``open`` function. The group picks a member
per message (:class:`~.sansio.balancer.Balancer`), ejects a member whose breaker opens or
whose connection is given up, re-sends what that member had not confirmed through the others
(``redeliver=True``, within the :class:`~.sansio.balancer.RetryBudget`) or keeps it for
``unconfirmed(group)``, and brings the member back with a probe once its breaker lets one
through. A ``dns:///name:port`` target is resolved (an injectable resolver; by default
``loop.getaddrinfo``) every ``resolve_interval`` and soon after a member fails; every
address of the name is a member.

The group never sees the service: it is given ``open(host, port) -> Connection``,
``send(conn_id, data, ...)``, ``forget(conn_id)`` and a way to watch breakers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .connection import Connection
from .endpoint import ConnState, Endpoint
from .exceptions import (
    CircuitOpenError,
    ConnectError,
    ConnectionNotFound,
    ConnectionNotReady,
    RequestCancelled,
    SendTimeout,
    SessionLost,
    TransportError,
)
from .info import ConnectionInfo, connection_info
from .sansio.balancer import Balancer, MemberLoad, Policy, RetryBudget
from .sansio.breaker import BreakerState, CircuitBreaker
from .sansio.reliability import Unacked

__all__ = ["DNS_PREFIX", "Group", "GroupMember", "MemberInfo", "Opener", "Resolver", "Sender",
           "default_resolver", "parse_targets"]

log = logging.getLogger("objtransport.groups")
_T = TypeVar("_T")

DNS_PREFIX = "dns:///"
#: resolver(name, port) -> [(host, port), ...]: every address is a member
Resolver = Callable[[str, int], Awaitable[Sequence[tuple[str, int]]]]
#: open a member connection: (host, port, server_hostname) -> a connected Connection
Opener = Callable[[str, int, "str | None"], Awaitable[Connection]]
#: send on a member: (conn_id, data, priority, stream, text, timeout, wait_ack)
Sender = Callable[[int, "bytes | bytearray | memoryview", int, int, bool, float, bool],
                  Awaitable[None]]
#: a re-resolution after a failure waits at least this long after the previous one
MIN_RERESOLVE = 1.0


async def default_resolver(name: str, port: int) -> list[tuple[str, int]]:
    """Every A/AAAA record of ``name`` (``loop.getaddrinfo``), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    out: list[tuple[str, int]] = []
    for *_, addr in infos:
        pair = (str(addr[0]), int(addr[1]))
        if pair not in out:
            out.append(pair)
    return out


def _split(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a group endpoint is 'host:port', not {target!r}")
    return host.strip("[]"), int(port)


def parse_targets(endpoints: str | Sequence[str]
                  ) -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """``["h:p", ...]`` -> (static members, None); ``"dns:///name:port"`` -> ([], (name,
    port)); a single ``"h:p"`` string is a list of one."""
    if isinstance(endpoints, str):
        if endpoints.startswith(DNS_PREFIX):
            return [], _split(endpoints[len(DNS_PREFIX):])
        endpoints = [endpoints]
    members = [_split(e) for e in endpoints]
    if not members:
        raise ValueError("a group needs at least one endpoint")
    return members, None


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


class Group:
    """Members, picking, failover with redelivery, re-resolution (see the module doc)."""

    def __init__(self, group_id: int, target: str, members: list[tuple[str, int]],
                 dns: tuple[str, int] | None, *, open: Opener, send: Sender,
                 forget: Callable[[int], None], breaker_for: Callable[[str, int], CircuitBreaker],
                 policy: str | Policy = Policy.P2C, redeliver: bool = True,
                 resolver: Resolver | None = None, resolve_interval: float = 30.0,
                 retry_budget: tuple[float, float] = (0.2, 10.0),
                 pin_default_stream: bool = False, timeout: float = 5.0,
                 reconnect_interval: float = 1.0, reconnect_max_delay: float = 30.0,
                 rng: random.Random | None = None) -> None:
        if resolve_interval <= 0:
            raise ValueError("resolve_interval must be > 0")
        self.id = group_id
        self.target = target
        self.dns = dns
        self.redeliver = redeliver
        self.resolve_interval = resolve_interval
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.reconnect_max_delay = reconnect_max_delay
        self.balancer = Balancer(policy, rng, pin_default_stream)
        self._loop = asyncio.get_running_loop()
        self.budget = RetryBudget(*retry_budget, now=self._loop.time())
        self._open = open
        self._send = send
        self._forget = forget
        self._breaker_for = breaker_for
        self._resolver = resolver or default_resolver
        self._members: dict[tuple[str, int], GroupMember] = {
            (h, p): GroupMember(h, p) for h, p in members}
        self._unconfirmed: list[Unacked] = []
        #: messages redelivered through another member, reported unconfirmed, in all
        self.redelivered = 0
        self.unconfirmed_total = 0
        self.failovers = 0
        self.resolutions = 0
        self._resolve_at = self._loop.time() if dns is not None else float("inf")
        self._last_resolve = float("-inf")
        self._failing = 0
        self._generation = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        up = sum(m.healthy for m in self._members.values())
        return (f"<Group {self.id} {self.target} {self.balancer.policy.value} "
                f"{up}/{len(self._members)} healthy>")

    # -- membership ---------------------------------------------------------------------------
    def members(self) -> list[MemberInfo]:
        """The current members, in order."""
        return [MemberInfo(m.host, m.port, m.conn.id if m.conn is not None else None,
                           m.healthy, self._breaker_for(m.host, m.port).state.value)
                for m in self._members.values()]

    def member_ids(self) -> list[int]:
        """The ids of the members' live connections."""
        return [m.conn.id for m in self._members.values() if m.conn is not None]

    async def start(self) -> None:
        """Resolve (a ``dns:///`` target), connect every member at once, and return when one
        is up. Raises ``ConnectError`` (no member could connect; nothing is left behind)."""
        if self.dns is not None:
            await self.resolve()
            if not self._members:
                raise ConnectError(self.target, "the name resolved to no address")
        results = await asyncio.gather(*(self._connect(m) for m in self._members.values()),
                                       return_exceptions=True)
        if not any(m.conn is not None for m in self._members.values()):
            errors = [str(r) for r in results if isinstance(r, BaseException)]
            await self.close(0.01)
            raise ConnectError(self.target, "no member could connect: " + "; ".join(
                errors or ["no member"]))
        self._runner = asyncio.create_task(self._run(), name=f"objtransport-group-{self.id}")

    async def resolve(self) -> None:
        """Resolve the ``dns:///`` name now and make its addresses the members: new ones
        connect, gone ones are closed in order (what they had not confirmed fails over)."""
        if self.dns is None:
            return
        name, port = self.dns
        self._last_resolve = self._loop.time()
        self._resolve_at = self._last_resolve + self.resolve_interval
        try:
            answer = list(await self._resolver(name, port))
        except (OSError, TransportError) as exc:
            log.warning("group %s: resolving %s failed: %s (members kept)", self.id, name, exc)
            return
        self.resolutions += 1
        if not answer:
            log.warning("group %s: %s resolved to no address (members kept)", self.id, name)
            return
        wanted = [(str(h), int(p)) for h, p in answer]
        for key in [k for k in self._members if k not in wanted]:
            member = self._members.pop(key)
            member.removed = True
            self._spawn(self._fail(member, "removed by the resolver", orderly=True))
        for key in wanted:
            if key not in self._members:
                self._members[key] = GroupMember(*key, next_attempt=self._loop.time())
        self._wake.set()

    # -- picking and sending ----------------------------------------------------------------
    def _healthy(self) -> list[MemberLoad]:
        out = []
        for m in self._members.values():
            if m.healthy:
                conn = m.conn
                assert conn is not None and conn.link is not None
                link = conn.link
                out.append(MemberLoad(m.key, link.pending_bytes + conn.resume_state.unacked_bytes,
                                      getattr(link.session, "rtt_last", None)))
        return out

    def pick(self, stream: int = 0) -> int | None:
        """The id of the member connection for a message on ``stream`` now, or None when no
        member is healthy."""
        key = self.balancer.pick(self._healthy(), stream)
        if key is None:
            return None
        conn = self._members[key].conn  # type: ignore[index]
        return conn.id if conn is not None else None

    async def pick_member(self, stream: int = 0, timeout: float | None = None) -> int:
        """The id of the member connection to use for a message on ``stream``: a healthy
        one; else, up to ``timeout``, one that is reconnecting (sending on it waits), or the
        first that comes up. Raises ``ConnectionNotReady`` when none does in time."""
        deadline = self._loop.time() + (self.timeout if timeout is None else timeout)
        while True:
            if self._closed:
                raise ConnectionNotReady(self.id, "closed", self.target)
            conn_id = self.pick(stream)
            if conn_id is not None:
                return conn_id
            for m in self._members.values():
                c = m.conn
                if c is not None and c.state is ConnState.CONNECTING \
                        and c.breaker.state is not BreakerState.OPEN:
                    return c.id
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise ConnectionNotReady(self.id, "no healthy member", self.target)
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def send(self, data: bytes | bytearray | memoryview, priority: int, stream: int,
                   text: bool, timeout: float | None, wait_ack: bool = False,
                   first: bool = True) -> int:
        """Send one message through a member; return the member's connection id. A member
        that turns out to be down between the pick and the send is skipped."""
        timeout = self.timeout if timeout is None else timeout
        deadline = self._loop.time() + timeout
        while True:
            conn_id = await self.pick_member(stream, deadline - self._loop.time())
            try:
                await self._send(conn_id, data, priority, stream, text,
                                 max(0.0, deadline - self._loop.time()), wait_ack)
            except (ConnectionNotReady, CircuitOpenError, ConnectionNotFound):
                if self._loop.time() >= deadline:
                    raise
                self._drop_pin(conn_id)
                continue
            if first:
                self.budget.deposit()
            return conn_id

    async def request(self, ask: Callable[[int, float], Awaitable[_T]], stream: int,
                      timeout: float) -> _T:
        """``ask(member_id, time_left)`` on a member picked for ``stream``; when that member
        fails before answering (``RequestCancelled``: it was closed or given up, or it is
        not ready), ask another one, as long as the retry budget allows and time is left.
        The request may then run twice: requests through a group are at-least-once."""
        deadline = self._loop.time() + timeout
        while True:
            conn_id = await self.pick_member(stream, deadline - self._loop.time())
            try:
                return await ask(conn_id, max(0.0, deadline - self._loop.time()))
            except (RequestCancelled, ConnectionNotReady, CircuitOpenError):
                self._drop_pin(conn_id)
                if self._loop.time() >= deadline or not self.allow_retry():
                    raise

    def allow_retry(self) -> bool:
        """May a request be retried on another member now? Takes one retry from the group's
        budget (the one redeliveries draw from) if so."""
        return self.budget.try_withdraw(self._loop.time()) > 0

    def _drop_pin(self, conn_id: int) -> None:
        for m in self._members.values():
            if m.conn is not None and m.conn.id == conn_id:
                self.balancer.unpin(m.key)

    # -- confirmations ------------------------------------------------------------------------
    async def flush(self, timeout: float) -> None:
        """Wait until every member acknowledged what the group sent, failovers included.

        Raises ``SendTimeout`` after ``timeout`` s, and ``SessionLost`` if messages became
        unconfirmed meanwhile (``unconfirmed(group)`` hands them over)."""
        deadline = self._loop.time() + timeout
        lost_before = self.unconfirmed_total
        while True:
            generation = self._generation
            conns = [m.conn for m in self._members.values() if m.conn is not None]
            remaining = deadline - self._loop.time()
            results = await asyncio.gather(*(c.wait_acked(max(0.0, remaining))
                                             for c in conns), return_exceptions=True)
            for conn, res in zip(conns, results, strict=True):
                if isinstance(res, SessionLost):  # the peer lost it: fail it over
                    await self._redeliver(conn.confirmations.take_unacked())
                elif isinstance(res, BaseException) \
                        and not isinstance(res, ConnectionNotReady | SendTimeout):
                    raise res
            if self.unconfirmed_total != lost_before:
                raise SessionLost(self.target, self._unconfirmed)
            if self._failing == 0 and generation == self._generation \
                    and all(r is None for r in results):
                return
            if self._loop.time() >= deadline:
                raise SendTimeout(f"group {self.id} ({self.target}): not every message "
                                  f"acknowledged within {timeout:g} s")
            # a failover under way pulses when its redelivery is queued; a member that just
            # ended starts one within a loop turn
            wait = deadline - self._loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait if self._failing else min(wait, 0.05))):
                    await self._changed.wait()

    def take_unconfirmed(self) -> list[bytes]:
        """Hand over (and forget) the payloads the group could not confirm nor redeliver,
        and those its live members could not confirm."""
        for m in self._members.values():
            if m.conn is not None:
                self._report(m.conn.confirmations.take_unacked())
        out = [u[1] for u in self._unconfirmed]
        self._unconfirmed.clear()
        return out

    def _report(self, lost: Iterable[Unacked]) -> None:
        lost = list(lost)
        if lost:
            self._unconfirmed.extend(lost)
            self.unconfirmed_total += len(lost)
            log.warning("group %s (%s): %d message(s) could not be confirmed nor redelivered; "
                        "unconfirmed(%s) hands them over", self.id, self.target, len(lost),
                        self.id)

    async def _redeliver(self, lost: list[Unacked]) -> None:
        """Re-send what a failed member had not confirmed through the others (at least
        once: some may have arrived); what the budget or the members refuse is reported."""
        if not lost:
            return
        if not self.redeliver:
            self._report(lost)
            return
        granted = self.budget.try_withdraw(self._loop.time(), len(lost))
        self._report(lost[granted:])
        for i, (_seq, payload, stream, priority, text) in enumerate(lost[:granted]):
            try:
                await self.send(payload, priority, stream, text, self.timeout, first=False)
            except TransportError as exc:
                log.warning("group %s: redelivery failed (%s)", self.id, exc)
                self._report(lost[i:granted])
                return
            except BaseException:  # cancelled (the group closes): still reported
                self._report(lost[i:granted])
                raise
            self.redelivered += 1

    # -- failover and rejoin ------------------------------------------------------------------
    def on_breaker(self, endpoint: Endpoint, old: BreakerState, new: BreakerState,
                   now: float) -> None:
        """A breaker changed: an open one ejects its member (it fails over)."""
        if new is not BreakerState.OPEN or self._closed:
            return
        m = self._members.get((endpoint.host, endpoint.port))
        if m is not None and m.conn is not None:
            self._spawn(self._fail(m, "its circuit breaker opened"))

    def _member_ended(self, m: GroupMember, conn: Connection, _task: object = None) -> None:
        """A member's supervising task ended: given up, or closed by the application
        (``disconnect(member_id)``); the group's own closes have let go of it already."""
        if m.conn is conn and not self._closed:
            self._spawn(self._fail(m, "its connection was closed" if conn.closed_by_user
                                   else "its connection was given up"))

    async def _fail(self, m: GroupMember, why: str, orderly: bool = False) -> None:
        conn = m.conn
        if conn is None:
            return
        m.conn = None
        self.balancer.unpin(m.key)
        self._failing += 1
        self._generation += 1
        self.failovers += 1
        try:
            now = self._loop.time()
            retry = self._breaker_for(m.host, m.port).retry_after(now)
            m.next_attempt = now + max(self.reconnect_interval, retry)
            log.warning("group %s: member %s:%s leaves (%s)", self.id, m.host, m.port, why)
            await conn.close(self.timeout if orderly else 0.01)
            lost = conn.confirmations.take_unacked()
            self._forget(conn.id)
            await self._redeliver(lost)
            if not orderly:
                self._resolve_soon()
        finally:
            self._failing -= 1
            self._pulse()

    async def _connect(self, m: GroupMember) -> None:
        """One connection attempt for a down member (a breaker probe when it is open)."""
        m.connecting = True
        try:
            conn = await self._open(m.host, m.port, self.dns[0] if self.dns else None)
        except (ConnectError, CircuitOpenError) as exc:
            m.failures += 1
            now = self._loop.time()
            delay = min(self.reconnect_max_delay,
                        self.reconnect_interval * 2 ** min(m.failures - 1, 16))
            m.next_attempt = now + max(delay, self._breaker_for(m.host, m.port).retry_after(now))
            self._resolve_soon()
            raise ConnectError(f"{m.host}:{m.port}", str(exc)) from exc
        finally:
            m.connecting = False
            self._wake.set()
        if m.removed or self._closed:
            await conn.close(self.timeout)
            self._forget(conn.id)
            return
        m.conn = conn
        m.failures = 0
        if conn.task is not None:
            conn.task.add_done_callback(partial(self._member_ended, m, conn))
        self._pulse()

    def _resolve_soon(self) -> None:
        if self.dns is not None:
            self._resolve_at = min(self._resolve_at, self._last_resolve + MIN_RERESOLVE)
            self._wake.set()

    async def _run(self) -> None:
        """Re-resolve when due; give down members an attempt when theirs is due."""
        while not self._closed:
            now = self._loop.time()
            if now >= self._resolve_at:
                await self.resolve()
            deadlines = [self._resolve_at]
            for m in list(self._members.values()):
                if m.conn is None and not m.connecting and not m.removed:
                    if now >= m.next_attempt:
                        self._spawn(self._attempt(m))
                    else:
                        deadlines.append(m.next_attempt)
            self._wake.clear()
            wait = min(deadlines) - self._loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    async def _attempt(self, m: GroupMember) -> None:
        with contextlib.suppress(ConnectError):
            await self._connect(m)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._wake.set()

    # -- info and closing ---------------------------------------------------------------------
    def info(self, wall_offset: float) -> ConnectionInfo:
        """A snapshot summed over the live members (``host`` is the target, ``port`` 0)."""
        infos = [connection_info(m.conn, wall_offset) for m in self._members.values()
                 if m.conn is not None]
        up = any(m.healthy for m in self._members.values())
        transport = infos[0].transport if infos else "tcp"
        total: dict[str, Any] = {k: sum(getattr(i, k) for i in infos) for k in _SUMMED}
        breaker = self._breaker_for(*next(iter(self._members))).snapshot() \
            if self._members else CircuitBreaker().snapshot()
        return ConnectionInfo(
            id=self.id, transport=transport, host=self.target, port=0,
            state=ConnState.CONNECTED.value if up else ConnState.CONNECTING.value,
            last_activity=max((i.last_activity for i in infos), default=0.0),
            circuit_breaker=breaker, role="group",
            unconfirmed=self.unconfirmed_total + total.pop("unconfirmed"), **total)

    async def close(self, timeout: float) -> None:
        """Close every member in order (what stays unconfirmed is reported) and stop."""
        self._closed = True
        runner = self._runner
        tasks = [t for t in (runner, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        members = [m for m in self._members.values() if m.conn is not None]
        await asyncio.gather(*(m.conn.close(timeout) for m in members if m.conn is not None),
                             return_exceptions=True)
        for m in members:
            if m.conn is not None:
                self._report(m.conn.confirmations.take_unacked())
                self._forget(m.conn.id)
                m.conn = None
        self._pulse()


#: ConnectionInfo fields a group's snapshot sums over its members
_SUMMED = ("bytes_sent", "bytes_received", "message_count", "error_count", "messages_sent",
           "messages_received", "reconnects", "pending_bytes", "unacked_bytes",
           "unacked_messages", "unconfirmed", "duplicates_dropped", "resent", "bytes_queued")
