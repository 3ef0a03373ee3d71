"""Groups: many endpoints behind one id (issue 16), over real sockets on loopback.

Three listeners, each behind a FaultProxy so that one can be killed (every socket reset,
the port refusing) and restarted on the same port.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from objtransport import (
    ConnectError,
    ConnectionNotFound,
    Message,
    NetworkTransport,
    SessionLost,
)
from objtransport.testing import FaultProxy, eventually

FAST = {"reconnect_interval": 0.05, "failure_threshold": 2, "reset_timeout": 0.3,
        "max_reconnect_attempts": 50, "timeout": 5.0}


@dataclass
class Cluster:
    """Three listeners (one service), each behind a proxy; what each one received."""

    server: NetworkTransport
    ports: list[int]  # the listeners'
    proxies: list[FaultProxy]
    got: list[list[bytes]] = field(default_factory=lambda: [[], [], []])

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{p.port}" for p in self.proxies]

    def received(self) -> Counter[bytes]:
        return Counter(m for per in self.got for m in per)

    async def kill(self, i: int) -> None:
        await self.proxies[i].close()

    async def restart(self, i: int) -> None:
        old = self.proxies[i]
        self.proxies[i] = await FaultProxy("127.0.0.1", self.ports[i], port=old.port).start()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with NetworkTransport(timeout=5.0) as server:
        c = Cluster(server, [], [])
        for i in range(3):
            def handler(msg: Message, i: int = i) -> None:
                c.got[i].append(msg.data)

            listener = await server.listen("127.0.0.1", 0, handler=handler)
            c.ports.append(listener.port)
            c.proxies.append(await FaultProxy("127.0.0.1", listener.port).start())
        try:
            yield c
        finally:
            for p in c.proxies:
                await p.close()


async def test_round_robin_spreads_within_20_percent(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin")
        assert len(net.group(gid).member_ids()) == 3
        for i in range(3000):
            await net.send_data(gid, b"%d" % i)
        await net.flush(gid, timeout=10)
        counts = [len(g) for g in cluster.got]
        assert sum(counts) == 3000
        assert all(800 <= n <= 1200 for n in counts), counts
        info = net.connection_info(gid)
        assert info.role == "group" and info.messages_sent == 3000
        assert info.state == "connected"


async def test_a_stream_stays_on_one_member(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin")
        for i in range(300):
            await net.send_data(gid, b"s%d" % i, stream=7)
        await net.flush(gid, timeout=10)
        per = [len(g) for g in cluster.got]
        assert sorted(per) == [0, 0, 300]
        # in order, on that member
        (only,) = [g for g in cluster.got if g]
        assert only == [b"s%d" % i for i in range(300)]


async def test_pick_first_uses_the_first_healthy_member(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="pick_first")
        first = await net.pick_member(gid)
        assert first == net.group(gid).member_ids()[0]
        for i in range(100):
            await net.send_data(gid, b"%d" % i)
        await net.flush(gid, timeout=10)
        assert [len(g) for g in cluster.got] == [100, 0, 0]


async def _send_through_a_kill(net: NetworkTransport, cluster: Cluster, gid: int, n: int,
                               kill_at: int) -> list[bytes]:
    sent = []
    for i in range(n):
        if i == kill_at:
            await cluster.kill(1)
        payload = b"%d" % i
        await net.send_data(gid, payload)
        sent.append(payload)
        if i % 100 == 0:
            await asyncio.sleep(0)  # let acknowledgements and failures come in
    return sent


async def test_killing_a_listener_loses_nothing_unreported(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin", redeliver=False)
        sent = await _send_through_a_kill(net, cluster, gid, 6000, 3000)
        await eventually(lambda: net.group(gid).failovers >= 1, timeout=10)
        try:
            await net.flush(gid, timeout=10)
        except SessionLost:
            pass
        reported = net.unconfirmed(gid)
        received = cluster.received()
        missing = [m for m in sent if m not in received]
        assert set(missing) <= set(reported)
        assert reported  # the kill left messages in doubt
        assert net.group(gid).redelivered == 0
        assert len(net.group(gid).member_ids()) == 2


async def test_redeliver_delivers_every_message_at_least_once(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin",
                                      retry_budget=(1.0, 10.0))
        sent = await _send_through_a_kill(net, cluster, gid, 6000, 3000)
        await eventually(lambda: net.group(gid).failovers >= 1, timeout=10)
        await net.flush(gid, timeout=10)
        received = cluster.received()
        assert [m for m in sent if m not in received] == []
        assert net.unconfirmed(gid) == []
        group = net.group(gid)
        assert group.redelivered == group.budget.granted
        assert group.redelivered > 0  # the kill left messages in doubt


async def test_a_restarted_listener_rejoins(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin")
        group = net.group(gid)
        await cluster.kill(1)
        await eventually(lambda: sum(m.healthy for m in group.members()) == 2, timeout=10)
        ejected = [m for m in group.members() if not m.healthy]
        assert ejected[0].port == cluster.proxies[1].port
        await cluster.restart(1)
        await eventually(lambda: sum(m.healthy for m in group.members()) == 3, timeout=10)
        before = len(cluster.got[1])
        for i in range(300):
            await net.send_data(gid, b"%d" % i)
        await net.flush(gid, timeout=10)
        assert len(cluster.got[1]) - before == 100


async def test_a_resolver_that_changes_its_answer_changes_the_members(
        cluster: Cluster) -> None:
    answer = [("127.0.0.1", cluster.proxies[0].port), ("127.0.0.1", cluster.proxies[1].port)]
    asked: list[tuple[str, int]] = []

    async def resolver(name: str, port: int) -> list[tuple[str, int]]:
        asked.append((name, port))
        return list(answer)

    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group("dns:///backend.test:7000", resolver=resolver,
                                      policy="round_robin")
        group = net.group(gid)
        assert asked == [("backend.test", 7000)]
        assert {m.port for m in group.members()} == {p.port for p in cluster.proxies[:2]}
        answer[:] = [("127.0.0.1", cluster.proxies[1].port),
                     ("127.0.0.1", cluster.proxies[2].port)]
        await group.resolve()
        await eventually(lambda: sorted(m.port for m in group.members() if m.healthy)
                         == sorted(p.port for p in cluster.proxies[1:]), timeout=5)
        for i in range(200):
            await net.send_data(gid, b"%d" % i)
        await net.flush(gid, timeout=10)
        assert [len(g) for g in cluster.got] == [0, 100, 100]


async def test_resolve_interval_re_resolves(cluster: Cluster) -> None:
    answers = [[("127.0.0.1", cluster.proxies[0].port)]]
    changed = asyncio.Event()

    async def resolver(name: str, port: int) -> list[tuple[str, int]]:
        if len(answers) > 1:
            changed.set()
        return answers[-1]

    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group("dns:///backend.test:1", resolver=resolver,
                                      resolve_interval=0.05)
        answers.append([("127.0.0.1", cluster.proxies[2].port)])
        await asyncio.wait_for(changed.wait(), 5)
        group = net.group(gid)
        await eventually(lambda: [m.port for m in group.members() if m.healthy]
                         == [cluster.proxies[2].port], timeout=5)


async def test_group_id_works_where_a_connection_id_does(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets[:2])
        members = net.group(gid).member_ids()
        assert set(members) <= set(net.connections())
        await net.send_data(gid, b"x", wait_ack=True)
        assert net.connection_info(gid).messages_sent == 1
        await net.disconnect(gid)
        with pytest.raises(ConnectionNotFound):
            net.connection_info(gid)
        assert not set(members) & set(net.connections())


async def test_send_to_takes_the_same_targets(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        used = {await net.send_to(cluster.targets, b"m%d" % i) for i in range(30)}
        assert len(used) == 1  # one group per target, made once
        (gid,) = used
        await net.flush(gid, timeout=10)
        assert sum(len(g) for g in cluster.got) == 30


async def test_a_group_no_member_of_which_connects_fails_cleanly() -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        free = []
        for _ in range(2):
            listener = await net.listen("127.0.0.1", 0)
            free.append(listener.port)
            await listener.close()
        with pytest.raises(ConnectError, match="no member could connect"):
            await net.connect_group([f"127.0.0.1:{p}" for p in free])
        assert net.connections() == []


async def test_request_retries_draw_from_the_group_budget(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, retry_budget=(0.5, 0.0))
        group = net.group(gid)
        assert not group.allow_retry()  # nothing sent, nothing earned
        for i in range(4):
            await net.send_data(gid, b"%d" % i)
        assert group.allow_retry() and group.allow_retry()  # 4 sent x 0.5
        assert not group.allow_retry()
        assert (group.budget.granted, group.budget.refused) == (2, 2)


async def test_p2c_sends_less_to_a_slow_member(cluster: Cluster) -> None:
    """A member behind 50 ms of latency each way holds its messages unacknowledged ~100 ms
    longer: p2c, which compares in-flight bytes, gives it far less than a third."""
    cluster.proxies[0].latency = 0.05
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="p2c")
        for i in range(3000):
            await net.send_data(gid, b"%d" % i)
            if i % 50 == 0:
                await asyncio.sleep(0.001)  # acknowledgements come back meanwhile
        await net.flush(gid, timeout=20)
        counts = [len(g) for g in cluster.got]
        assert sum(counts) == 3000
        assert counts[0] < 600, counts  # a third would be 1000


async def test_a_member_down_at_the_start_joins_when_it_comes_up(cluster: Cluster) -> None:
    await cluster.kill(2)
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin")
        group = net.group(gid)
        assert [m.healthy for m in group.members()] == [True, True, False]
        await cluster.restart(2)
        await eventually(lambda: all(m.healthy for m in group.members()), timeout=10)
        for i in range(30):
            await net.send_data(gid, b"%d" % i)
        await net.flush(gid, timeout=10)
        assert [len(g) for g in cluster.got] == [10, 10, 10]


async def test_a_member_the_application_disconnects_leaves_the_group(cluster: Cluster) -> None:
    async with NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        gid = await net.connect_group(cluster.targets, policy="round_robin")
        group = net.group(gid)
        first = group.member_ids()[0]
        await net.disconnect(first)
        await eventually(lambda: first not in group.member_ids(), timeout=5)
        for i in range(20):
            await net.send_data(gid, b"%d" % i)
        async with asyncio.timeout(10):
            await net.flush(gid, timeout=10)
        assert sum(len(g) for g in cluster.got) == 20
        await eventually(lambda: len(group.member_ids()) == 3, timeout=10)  # it rejoins


async def test_request_through_a_group_is_answered_by_its_members() -> None:
    async with NetworkTransport(timeout=5.0) as server, \
            NetworkTransport(**FAST) as net:  # type: ignore[arg-type]
        ports = []
        for i in range(3):
            def answer(msg: Message, i: int = i) -> bytes:
                return b"%d:" % i + msg.data

            ports.append((await server.listen("127.0.0.1", 0, handler=answer)).port)
        gid = await net.connect_group([f"127.0.0.1:{p}" for p in ports], policy="round_robin")
        replies = [(await net.request(gid, b"q%d" % i, timeout=5)).data for i in range(30)]
        assert Counter(r.split(b":")[0] for r in replies) == {b"0": 10, b"1": 10, b"2": 10}
        assert [r.split(b":")[1] for r in replies] == [b"q%d" % i for i in range(30)]
