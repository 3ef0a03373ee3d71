"""The facade part that holds the service's groups (:class:`Groups`): makes them from what
``connect_group`` / ``send_to(target, ...)`` asked (:class:`GroupSpec`) with what the service
gives (:class:`GroupDeps`), finds them by id, tells them of breaker transitions, closes them.
One group is :class:`~.group.Group`."""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .breakers import BreakerRegistry
from .config import Options
from .connection import Connection
from .drivers.tcp import client_ssl_context
from .endpoint import Endpoint
from .events import EventHub
from .group import Group, Resolver, Sender, parse_targets
from .sansio.balancer import Policy
from .sansio.breaker import BreakerState, CircuitBreaker
from .transports import DriverTable

__all__ = ["Group", "GroupDeps", "GroupSpec", "Groups"]


@dataclass(frozen=True)
class GroupSpec:
    """What ``connect_group`` (or ``send_to(target, ...)``) asked for."""

    endpoints: str | Sequence[str]
    transport: Any = "tcp"
    policy: str | Policy = Policy.P2C
    redeliver: bool = True
    resolver: Resolver | None = None
    resolve_interval: float = 30.0
    retry_budget: tuple[float, float] = (0.2, 10.0)
    pin_default_stream: bool = False
    ssl: bool | None = None
    ssl_context: ssl_module.SSLContext | None = None
    framing: Any = "native"
    handler: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)


#: the connector's ``open(host, port, transport, ssl, ssl_context, server_hostname,
#: framing, handler, options)``
ConnectorOpen = Callable[..., Awaitable[Connection]]


@dataclass(frozen=True)
class GroupDeps:
    """What the groups are given by the service (never the service itself)."""

    open: ConnectorOpen
    send: Sender
    forget: Callable[[int], None]
    breakers: BreakerRegistry
    drivers: DriverTable
    next_id: Callable[[], int]
    options: Options
    rng: random.Random
    #: where the groups publish their events (MemberEjected...)
    events: EventHub | None = None


class Groups:
    """The service's groups by id, and the groups ``send_to`` keeps per target."""

    def __init__(self, deps: GroupDeps) -> None:
        self._deps = deps
        deps.breakers.watchers.append(self.on_breaker)
        self._groups: dict[int, Group] = {}
        self._by_target: dict[tuple[Any, ...], int] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, group_id: int) -> Group | None:
        return self._groups.get(group_id)

    async def open(self, spec: GroupSpec) -> Group:
        """Make, register and start a group: returns once a member is up; raises
        ``ConnectError`` (nothing left behind) when none can connect."""
        d = self._deps
        members, dns = parse_targets(spec.endpoints)
        driver = d.drivers.get(spec.transport)
        rest, _extra = d.drivers.split_options(driver, spec.options)
        opts = d.options.for_call(**rest)
        tls = client_ssl_context(bool(opts.ssl if spec.ssl is None else spec.ssl),
                                 spec.ssl_context) is not None

        async def open_member(host: str, port: int, sni: str | None) -> Connection:
            return await d.open(host, port, spec.transport, spec.ssl, spec.ssl_context, sni,
                                spec.framing, spec.handler, spec.options)

        def breaker_for(host: str, port: int) -> CircuitBreaker:
            return d.breakers.for_endpoint(Endpoint(driver.kind, host, port, tls))

        group = Group(d.next_id(), str(spec.endpoints), members, dns, open=open_member,
                      send=d.send, forget=d.forget, breaker_for=breaker_for,
                      policy=spec.policy, redeliver=spec.redeliver, resolver=spec.resolver,
                      resolve_interval=spec.resolve_interval, retry_budget=spec.retry_budget,
                      pin_default_stream=spec.pin_default_stream, timeout=opts.timeout,
                      reconnect_interval=opts.reconnect_interval,
                      reconnect_max_delay=opts.reconnect_max_delay, rng=d.rng,
                      transport=driver.kind.value, events=d.events)
        self._groups[group.id] = group
        try:
            await group.start()
        except BaseException:
            self._groups.pop(group.id, None)
            raise
        return group

    def pop(self, group_id: int) -> Group | None:
        group = self._groups.pop(group_id, None)
        if group is not None:
            self._by_target = {k: v for k, v in self._by_target.items() if v != group_id}
        return group

    def on_breaker(self, endpoint: Endpoint, old: BreakerState, new: BreakerState,
                   now: float) -> None:
        """Every breaker transition, for the groups whose member it is."""
        for group in list(self._groups.values()):
            group.on_breaker(endpoint, old, new, now)

    async def for_target(self, key: tuple[Any, ...], spec: GroupSpec) -> Group:
        """The group ``send_to`` uses for a target (made and started on first use)."""
        async with self._lock:
            gid = self._by_target.get(key)
            group = self._groups.get(gid) if gid is not None else None
            if group is None:
                group = await self.open(spec)
                self._by_target[key] = group.id
            return group

    async def close(self, timeout: float) -> None:
        """Close every group (the service stops)."""
        groups = list(self._groups.values())
        self._groups.clear()
        self._by_target.clear()
        await asyncio.gather(*(g.close(timeout) for g in groups), return_exceptions=True)
