"""Many endpoints behind one id: one :class:`Group` (``NetworkTransport.connect_group``);
:mod:`.groups` holds them.

A group's members are normal connections (own session, breaker, metrics, ids listed by
``connections()``), opened through the service's ``open`` function. The group picks a member
per message (:class:`~.sansio.balancer.Balancer`), ejects a member whose breaker opens or
whose connection is given up, re-sends what that member had not confirmed through the others
(``redeliver=True``, within the :class:`~.sansio.balancer.RetryBudget`) or keeps it for
``unconfirmed(group)``, and brings the member back with a probe once its breaker lets one
through. A ``dns:///`` target is resolved (an injectable resolver; by default
``loop.getaddrinfo``) every ``resolve_interval`` and soon after a member fails; every
address of the name is a member.

Its parts: :class:`~.group_members.Members` (the addresses and their connections,
re-resolution, reconnecting), :class:`~.group_failover.Failover` (ejecting and bringing back
members, the group events) and :class:`~.group_redelivery.Redelivery` (the retry budget and
the messages in doubt). The group never sees the service: it is given ``open(host, port)
-> Connection``, ``send(conn_id, data, ...)``, ``forget(conn_id)`` and a way to watch
breakers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .endpoint import Endpoint
from .events import EventHub
from .exceptions import (
    CircuitOpenError,
    ConnectError,
    ConnectionNotFound,
    ConnectionNotReady,
    RequestCancelled,
    SendTimeout,
    SessionLost,
)
from .group_failover import Failover
from .group_members import GroupMember, MemberInfo, Members, Opener, Resolver
from .group_redelivery import Redelivery
from .info import ConnectionInfo
from .sansio.balancer import Balancer, Policy, RetryBudget
from .sansio.breaker import BreakerState, CircuitBreaker

__all__ = ["DNS_PREFIX", "Group", "GroupMember", "MemberInfo", "Opener", "Resolver", "Sender",
           "default_resolver", "parse_targets"]

_T = TypeVar("_T")

DNS_PREFIX = "dns:///"
#: send on a member: (conn_id, data, priority, stream, text, timeout, wait_ack)
Sender = Callable[[int, "bytes | bytearray | memoryview", int, int, bool, float, bool],
                  Awaitable[None]]


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


class Group:
    """Picking, sending, failover (see the module doc); members and redelivery are parts."""

    def __init__(self, group_id: int, target: str, members: list[tuple[str, int]],
                 dns: tuple[str, int] | None, *, open: Opener, send: Sender,
                 forget: Callable[[int], None], breaker_for: Callable[[str, int], CircuitBreaker],
                 policy: str | Policy = Policy.P2C, redeliver: bool = True,
                 resolver: Resolver | None = None, resolve_interval: float = 30.0,
                 retry_budget: tuple[float, float] = (0.2, 10.0),
                 pin_default_stream: bool = False, timeout: float = 5.0,
                 reconnect_interval: float = 1.0, reconnect_max_delay: float = 30.0,
                 rng: random.Random | None = None, transport: str = "tcp",
                 events: EventHub | None = None) -> None:
        if resolve_interval <= 0:
            raise ValueError("resolve_interval must be > 0")
        self.id = group_id
        self.target = target
        self.dns = dns
        self.timeout = timeout
        self.balancer = Balancer(policy, rng, pin_default_stream)
        self._loop = asyncio.get_running_loop()
        self._send = send
        self._forget = forget
        self._members = Members(
            group_id, members, dns, open=open, forget=forget, breaker_for=breaker_for,
            resolver=resolver or default_resolver, resolve_interval=resolve_interval,
            timeout=timeout, reconnect_interval=reconnect_interval,
            reconnect_max_delay=reconnect_max_delay, spawn=self._spawn,
            on_up=lambda m, conn: self._failover.member_up(m, conn),
            on_gone=lambda m: self._failover.member_gone(m),
            on_resolved=lambda *keys: self._failover.resolved(*keys))
        self._by_key = self._members.by_key  # one dict lookup per message in pick()
        self._redelivery = Redelivery(group_id, target, redeliver, retry_budget,
                                      self._resend)
        self._failover = Failover(group_id, target, transport, self._members, self.balancer,
                                  self._redelivery, forget=forget, timeout=timeout,
                                  spawn=self._spawn, pulse=self._pulse, events=events)
        self._changed = asyncio.Event()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        up = sum(m.healthy for m in self._members)
        return (f"<Group {self.id} {self.target} {self.balancer.policy.value} "
                f"{up}/{len(self._members)} healthy>")

    # -- figures --------------------------------------------------------------------------------
    @property
    def budget(self) -> RetryBudget:
        """The retry budget redeliveries and request retries draw from."""
        return self._redelivery.budget

    @property
    def redeliver(self) -> bool:
        return self._redelivery.redeliver

    @property
    def redelivered(self) -> int:
        """Messages redelivered through another member, in all."""
        return self._redelivery.redelivered

    @property
    def unconfirmed_total(self) -> int:
        """Messages reported unconfirmed, in all."""
        return self._redelivery.unconfirmed_total

    @property
    def failovers(self) -> int:
        """Members ejected, in all."""
        return self._failover.failovers

    @property
    def resolutions(self) -> int:
        """Successful resolutions of the ``dns:///`` name."""
        return self._members.resolutions

    # -- membership ---------------------------------------------------------------------------
    def members(self) -> list[MemberInfo]:
        """The current members, in order."""
        return self._members.infos()

    def member_ids(self) -> list[int]:
        """The ids of the members' live connections."""
        return self._members.ids()

    async def start(self) -> None:
        """Resolve (a ``dns:///`` target), connect every member at once, and return when one
        is up. Raises ``ConnectError`` (no member could connect; nothing is left behind)."""
        if self.dns is not None:
            await self.resolve()
            if not len(self._members):
                raise ConnectError(self.target, "the name resolved to no address")
        results = await asyncio.gather(*(self._members.connect(m) for m in self._members),
                                       return_exceptions=True)
        if not self._members.live():
            errors = [str(r) for r in results if isinstance(r, BaseException)]
            await self.close(0.01)
            raise ConnectError(self.target, "no member could connect: " + "; ".join(
                errors or ["no member"]))
        self._runner = asyncio.create_task(self._members.run(),
                                           name=f"objtransport-group-{self.id}")

    async def resolve(self) -> None:
        """Resolve the ``dns:///`` name now and make its addresses the members: new ones
        connect, gone ones are closed in order (what they had not confirmed fails over)."""
        await self._members.resolve()

    # -- picking and sending ----------------------------------------------------------------
    def pick(self, stream: int = 0) -> int | None:
        """The id of the member connection for a message on ``stream`` now, or None when no
        member is healthy."""
        key = self.balancer.pick(self._members.loads(), stream)
        if key is None:
            return None
        conn = self._by_key[key].conn  # type: ignore[index]
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
            conn_id = self._members.connecting()
            if conn_id is not None:
                return conn_id
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
        return self._redelivery.allow_retry()

    def _drop_pin(self, conn_id: int) -> None:
        for key in self._members.keys_of(conn_id):
            self.balancer.unpin(key)

    async def _resend(self, payload: bytes, priority: int, stream: int, text: bool) -> None:
        await self.send(payload, priority, stream, text, self.timeout, first=False)

    # -- confirmations ------------------------------------------------------------------------
    async def flush(self, timeout: float) -> None:
        """Wait until every member acknowledged what the group sent, failovers included.

        Raises ``SendTimeout`` after ``timeout`` s, and ``SessionLost`` if messages became
        unconfirmed meanwhile (``unconfirmed(group)`` hands them over)."""
        deadline = self._loop.time() + timeout
        lost_before = self.unconfirmed_total
        while True:
            generation = self._failover.generation
            conns = self._members.live()
            remaining = deadline - self._loop.time()
            results = await asyncio.gather(*(c.wait_acked(max(0.0, remaining))
                                             for c in conns), return_exceptions=True)
            for conn, res in zip(conns, results, strict=True):
                if isinstance(res, SessionLost):  # the peer lost it: fail it over
                    await self._redelivery.redeliver_lost(conn.confirmations.take_unacked())
                elif isinstance(res, BaseException) \
                        and not isinstance(res, ConnectionNotReady | SendTimeout):
                    raise res
            if self.unconfirmed_total != lost_before:
                raise SessionLost(self.target, self._redelivery.unconfirmed)
            failing = self._failover.failing
            if failing == 0 and generation == self._failover.generation \
                    and all(r is None for r in results):
                return
            if self._loop.time() >= deadline:
                raise SendTimeout(f"group {self.id} ({self.target}): not every message "
                                  f"acknowledged within {timeout:g} s")
            # a failover under way pulses when its redelivery is queued; a member that just
            # ended starts one within a loop turn
            wait = deadline - self._loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait if failing else min(wait, 0.05))):
                    await self._changed.wait()

    def take_unconfirmed(self) -> list[bytes]:
        """Hand over (and forget) the payloads the group could not confirm nor redeliver,
        and those its live members could not confirm."""
        for conn in self._members.live():
            self._redelivery.report(conn.confirmations.take_unacked())
        return self._redelivery.take()

    # -- failover ------------------------------------------------------------------------------
    def on_breaker(self, endpoint: Endpoint, old: BreakerState, new: BreakerState,
                   now: float) -> None:
        """A breaker changed: an open one ejects its member (it fails over)."""
        self._failover.on_breaker(endpoint, old, new, now)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._members.wake.set()

    # -- info and closing ---------------------------------------------------------------------
    def info(self, wall_offset: float) -> ConnectionInfo:
        """A snapshot summed over the live members (``host`` is the target, ``port`` 0)."""
        return self._members.info(self.id, self.target, self.unconfirmed_total, wall_offset)

    async def close(self, timeout: float) -> None:
        """Close every member in order (what stays unconfirmed is reported) and stop."""
        self._closed = self._members.closed = self._failover.closed = True
        runner = self._runner
        tasks = [t for t in (runner, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        members = [m for m in self._members if m.conn is not None]
        await asyncio.gather(*(m.conn.close(timeout) for m in members if m.conn is not None),
                             return_exceptions=True)
        for m in members:
            if m.conn is not None:
                self._redelivery.report(m.conn.confirmations.take_unacked())
                self._forget(m.conn.id)
                m.conn = None
        self._pulse()

