"""``GroupsAPI``: ``connect_group``, ``group`` and ``pick_member`` of
:class:`~objtransport.NetworkTransport`.

The groups themselves live in :class:`~.groups.Groups` (one :class:`~.group.Group` each);
``send_data``, ``request``, ``flush``, ``unconfirmed``, ``connection_info`` and
``disconnect`` also take a group id. A mixin over :class:`~.api_parts.ServiceParts`.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Sequence
from typing import Literal, Unpack

from .api_parts import ServiceParts
from .dispatch import Handler
from .exceptions import ConnectionNotFound
from .group import Group, Resolver
from .groups import GroupSpec
from .params import ClientFraming, ConnectOptions, TransportArg
from .sansio.balancer import Policy

__all__ = ["GroupsAPI"]


class GroupsAPI(ServiceParts):
    """Many endpoints behind one id."""

    async def connect_group(self, endpoints: str | Sequence[str], *,
                            transport: TransportArg = "tcp",
                            policy: Literal["p2c", "round_robin", "pick_first"] | Policy = "p2c",
                            redeliver: bool = True, resolver: Resolver | None = None,
                            resolve_interval: float = 30.0,
                            retry_budget: tuple[float, float] = (0.2, 10.0),
                            pin_default_stream: bool = False, ssl: bool | None = None,
                            ssl_context: ssl_module.SSLContext | None = None,
                            framing: ClientFraming = "native", handler: Handler | None = None,
                            **options: Unpack[ConnectOptions]) -> int:
        """Connect to many endpoints behind one id, usable wherever a connection id is.

        ``endpoints``: ``["host:port", ...]`` or ``"dns:///name:port"`` (every address of
        the name is a member; re-resolved every ``resolve_interval`` s and soon after a member
        fails, through ``resolver(name, port) -> [(host, port)]``, by default
        ``loop.getaddrinfo``). Each member is a normal connection (``group(gid).members()``).
        ``policy`` picks a member per message; a stream other than 0 stays on its member
        while it is healthy. A member whose breaker opens or that is given up is ejected; what
        it had not confirmed is re-sent through another member (``redeliver=True``: at least
        once, within ``retry_budget`` = (share of traffic, per second)) or kept for
        ``unconfirmed(gid)``. Returns once one member is up; raises ``ConnectError`` if none
        can connect.
        """
        self._check_running()
        return (await self._groups.open(GroupSpec(
            endpoints, transport, policy, redeliver, resolver, resolve_interval, retry_budget,
            pin_default_stream, ssl, ssl_context, framing, handler, options))).id

    def group(self, group_id: int) -> Group:
        """A group by id: ``members()``, ``resolve()``, ``redelivered``, ``budget``..."""
        group = self._groups.get(group_id)
        if group is None:
            raise ConnectionNotFound(group_id)
        return group

    async def pick_member(self, group_id: int, stream: int = 0,
                          timeout: float | None = None) -> int:
        """The id of the member connection a group would use now for ``stream`` (waits up
        to ``timeout`` for one to be healthy; raises ``ConnectionNotReady``)."""
        return await self.group(group_id).pick_member(stream, timeout)
