"""A group's failovers (:class:`Failover`): ejecting a member (its breaker opened, its
connection was given up or closed, the resolver dropped it), handing what it had not
confirmed to :class:`~.group_redelivery.Redelivery`, bringing it back, and the group events
of all this on the service's event stream (``MemberEjected``, ``MemberRejoined``,
``FailoverRedelivered``, ``MembersResolved``; :mod:`objtransport.events`).

:class:`~.group.Group` picks and sends; this part changes who may be picked. It is given
the group's :class:`~.group_members.Members`, balancer and redelivery, the service's
``forget``, and the event hub (never the service).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .connection import Connection
from .endpoint import Endpoint
from .events import (
    Event,
    EventHub,
    FailoverRedelivered,
    MemberEjected,
    MemberRejoined,
    MembersResolved,
)
from .group_members import GroupMember, Members
from .group_redelivery import Redelivery
from .sansio.balancer import Balancer
from .sansio.breaker import BreakerState

__all__ = ["Failover"]

log = logging.getLogger("objtransport.groups")


class Failover:
    """Who leaves the group's picking and how it comes back; the group events."""

    def __init__(self, group_id: int, target: str, transport: str, members: Members,
                 balancer: Balancer, redelivery: Redelivery, *,
                 forget: Callable[[int], None], timeout: float,
                 spawn: Callable[[Awaitable[None]], None], pulse: Callable[[], None],
                 events: EventHub | None) -> None:
        self.group_id = group_id
        self.target = target
        self.transport = transport
        self.members = members
        self.balancer = balancer
        self.redelivery = redelivery
        self.timeout = timeout
        self.closed = False
        self._forget = forget
        self._spawn = spawn
        self._pulse = pulse
        self._events = events
        self._loop = asyncio.get_running_loop()
        #: members ejected, in all; failovers under way; bumped at each ejection
        self.failovers = 0
        self.failing = 0
        self.generation = 0

    def publish(self, kind: type[Event], endpoint: str, **fields: Any) -> None:
        """Publish a group event (``conn_id`` is the group's id) if anybody listens."""
        hub = self._events
        if hub is not None and hub.active:
            hub.publish(kind(conn_id=self.group_id, endpoint=endpoint,
                             transport=self.transport, time=self._loop.time(), **fields))

    def _where(self, m: GroupMember) -> str:
        host = f"[{m.host}]" if ":" in m.host else m.host
        return f"{self.transport}://{host}:{m.port}"

    # -- what the members part tells ------------------------------------------------------------
    def member_up(self, m: GroupMember, conn: Connection) -> None:
        """A member connected (first time, or back after an ejection)."""
        if conn.task is not None:
            conn.task.add_done_callback(partial(self.member_ended, m, conn))
        if m.ejected:
            m.ejected = False
            self.publish(MemberRejoined, self._where(m), group=self.target, member_id=conn.id)
        self._pulse()

    def member_gone(self, m: GroupMember) -> None:
        """The resolver dropped ``m``'s address: it leaves in order."""
        self._spawn(self.fail(m, "removed by the resolver", orderly=True))

    def resolved(self, members: list[tuple[str, int]], added: list[tuple[str, int]],
                 removed: list[tuple[str, int]]) -> None:
        def names(keys: list[tuple[str, int]]) -> tuple[str, ...]:
            return tuple(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in keys)

        self.publish(MembersResolved, self.target, members=names(members),
                     added=names(added), removed=names(removed))

    # -- ejecting -------------------------------------------------------------------------------
    def on_breaker(self, endpoint: Endpoint, old: BreakerState, new: BreakerState,
                   now: float) -> None:
        """A breaker changed: an open one ejects its member (it fails over)."""
        if new is not BreakerState.OPEN or self.closed:
            return
        m = self.members.by_key.get((endpoint.host, endpoint.port))
        if m is not None and m.conn is not None:
            self._spawn(self.fail(m, "its circuit breaker opened"))

    def member_ended(self, m: GroupMember, conn: Connection, _task: object = None) -> None:
        """A member's supervising task ended: given up, or closed by the application
        (``disconnect(member_id)``); the group's own closes have let go of it already."""
        if m.conn is conn and not self.closed:
            self._spawn(self.fail(m, "its connection was closed" if conn.closed_by_user
                                  else "its connection was given up"))

    async def fail(self, m: GroupMember, why: str, orderly: bool = False) -> None:
        """Eject ``m``: close its connection, fail over what it had not confirmed, schedule
        its return (and a re-resolution after a fault)."""
        conn = m.conn
        if conn is None:
            return
        m.conn = None
        m.ejected = True
        self.balancer.unpin(m.key)
        self.failing += 1
        self.generation += 1
        self.failovers += 1
        try:
            self.members.retry_later(m, self._loop.time())
            log.warning("group %s: member %s:%s leaves (%s)", self.group_id, m.host, m.port,
                        why)
            self.publish(MemberEjected, self._where(m), group=self.target, member_id=conn.id,
                         reason=why)
            await conn.close(self.timeout if orderly else 0.01)
            lost = conn.confirmations.take_unacked()
            self._forget(conn.id)
            before = (self.redelivery.redelivered, self.redelivery.unconfirmed_total)
            await self.redelivery.redeliver_lost(lost)
            if lost:
                self.publish(FailoverRedelivered, self._where(m), group=self.target,
                             redelivered=self.redelivery.redelivered - before[0],
                             unconfirmed=self.redelivery.unconfirmed_total - before[1])
            if not orderly:
                self.members.resolve_soon()
        finally:
            self.failing -= 1
            self._pulse()
