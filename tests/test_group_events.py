"""Group events on the service's event stream (issue 16): a member ejected and rejoined, the
failover's redelivery, the members a resolution gives. Real sockets on loopback; three
listeners behind proxies (tests/test_groups.py's cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from objtransport import NetworkTransport, UnsupportedFeature
from objtransport.events import (
    Event,
    FailoverRedelivered,
    MemberEjected,
    MemberRejoined,
    MembersResolved,
    Subscription,
)
from objtransport.testing import eventually

from .test_groups import FAST, Cluster, _send_through_a_kill, cluster  # noqa: F401

pytestmark = pytest.mark.timeout(60)


async def _until(sub: Subscription, seen: list[Event],
                 done: Callable[[list[Event]], bool], timeout: float = 10.0) -> None:
    """Read events into ``seen`` until ``done(seen)``."""
    async with asyncio.timeout(timeout):
        while not done(seen):
            seen.append(await sub.get())


async def test_ejected_failover_and_rejoined_are_published(cluster: Cluster) -> None:  # noqa: F811
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        sub = net.events()
        gid = await net.connect_group(cluster.targets, policy="round_robin",
                                      retry_budget=(1.0, 10.0))
        group = net.group(gid)
        killed = cluster.proxies[1].port
        await _send_through_a_kill(net, cluster, gid, 3000, 1500)
        seen: list[Event] = []
        await _until(sub, seen, lambda s: any(isinstance(e, FailoverRedelivered) for e in s))
        ejected = [e for e in seen if isinstance(e, MemberEjected)]
        assert len(ejected) == 1
        ev = ejected[0]
        assert (ev.conn_id, ev.endpoint, ev.group, ev.transport) == (
            gid, f"tcp://127.0.0.1:{killed}", group.target, "tcp")
        assert ev.reason in ("its circuit breaker opened", "its connection was given up")
        redone = next(e for e in seen if isinstance(e, FailoverRedelivered))
        assert redone.endpoint == ev.endpoint and redone.conn_id == gid
        assert redone.redelivered == group.redelivered > 0  # the kill left messages in doubt
        assert redone.unconfirmed == group.unconfirmed_total == 0
        await net.flush(gid, timeout=10)
        await cluster.restart(1)
        await _until(sub, seen, lambda s: any(isinstance(e, MemberRejoined) for e in s))
        back = next(e for e in seen if isinstance(e, MemberRejoined))
        assert back.endpoint == ev.endpoint and back.member_id in group.member_ids()
        await eventually(lambda: sum(m.healthy for m in group.members()) == 3)


async def test_a_resolution_publishes_the_members_and_what_changed(
        cluster: Cluster) -> None:  # noqa: F811
    ports = [p.port for p in cluster.proxies]
    answer = [("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])]

    async def resolver(name: str, port: int) -> list[tuple[str, int]]:
        return list(answer)

    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        sub = net.events()
        gid = await net.connect_group("dns:///backend.test:7000", resolver=resolver)
        seen: list[Event] = []
        await _until(sub, seen, lambda s: any(isinstance(e, MembersResolved) for e in s))
        first = next(e for e in seen if isinstance(e, MembersResolved))
        assert (first.conn_id, first.endpoint) == (gid, "dns:///backend.test:7000")
        assert first.members == first.added == (f"127.0.0.1:{ports[0]}",
                                                f"127.0.0.1:{ports[1]}")
        assert first.removed == ()
        answer[:] = [("127.0.0.1", ports[1]), ("127.0.0.1", ports[2])]
        seen.clear()
        await net.group(gid).resolve()
        await _until(sub, seen, lambda s: any(isinstance(e, MemberEjected) for e in s)
                     and any(isinstance(e, MembersResolved) for e in s))
        changed = next(e for e in seen if isinstance(e, MembersResolved))
        assert changed.members == (f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[2]}")
        assert (changed.added, changed.removed) == ((f"127.0.0.1:{ports[2]}",),
                                                    (f"127.0.0.1:{ports[0]}",))
        gone = next(e for e in seen if isinstance(e, MemberEjected))
        assert (gone.endpoint, gone.reason) == (f"tcp://127.0.0.1:{ports[0]}",
                                                "removed by the resolver")


async def test_headers_and_ttl_on_a_group_id_are_refused_not_dropped(
        cluster: Cluster) -> None:  # noqa: F811
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets)
        with pytest.raises(UnsupportedFeature, match="pick_member"):
            await net.send_data(gid, b"x", ttl=5.0)
        with pytest.raises(UnsupportedFeature):
            await net.send_data(gid, b"x", headers={"k": "v"})
        member = await net.pick_member(gid)  # what the error says to do instead
        await net.send_data(member, b"kept", ttl=60.0, headers={"k": "v"})
        await net.flush(gid, timeout=10)
        await eventually(lambda: b"kept" in cluster.received())
        assert cluster.received()[b"x"] == 0  # the refused ones went nowhere
