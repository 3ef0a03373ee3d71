"""``send_data``'s fast path (bytes, an open link, no compression, no option or
``priority`` alone): it follows the connection's current link and its session's state on
every call, takes ``priority`` without the general path, and leaves everything else (other
options, bad arguments) to the general path's checks and errors."""

from __future__ import annotations

import asyncio

import pytest

from objtransport import NetworkTransport, Priority
from objtransport.events import Connected, Disconnected, Event, Subscription
from objtransport.testing import FaultProxy


async def _until(sub: Subscription, kind: type[Event]) -> None:
    async with asyncio.timeout(10.0):
        while not isinstance(await sub.get(), kind):
            pass


async def test_send_data_follows_the_link_through_a_loss_and_a_resume() -> None:
    """Before the loss (the first link), while reconnecting (no link: kept for the next)
    and after (the resumed session's new link): every message arrives once, in order. A
    fast path holding on to the first link or its session would queue on a dead one."""
    async with NetworkTransport() as server, \
            NetworkTransport(reconnect_interval=0.01, reconnect_jitter=False) as client:
        listener = await server.listen("127.0.0.1", 0)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            async with client.events(maxsize=100) as sub:
                for i in range(100):
                    await client.send_data(conn, b"%d" % i)
                await client.flush(conn, timeout=10.0)
                proxy.reset_all()
                await _until(sub, Disconnected)
                for i in range(100, 200):  # no link now: kept for the next one
                    await client.send_data(conn, b"%d" % i)
                await _until(sub, Connected)
                for i in range(200, 300):  # on the new link
                    await client.send_data(conn, b"%d" % i)
            got = [(await server.receive(timeout=10.0)).data for _ in range(300)]
        assert got == [b"%d" % i for i in range(300)]
        assert server.get_metrics().total_connections == 1  # one session, resumed


async def test_priority_alone_is_sent_and_other_arguments_keep_their_errors() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"a", priority="high")
        await client.send_data(conn, b"b", priority=3)
        await client.send_data(conn, b"c", priority=Priority.NORMAL)
        await client.send_data(conn, b"d", priority="low", stream=2)  # the general path
        with pytest.raises(TypeError, match="stremm"):
            await client.send_data(conn, b"x", priority="high", stremm=1)  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="urgent"):
            await client.send_data(conn, b"x", priority="urgent")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="payload must be bytes"):
            await client.send_data(conn, "text", priority="high")  # type: ignore[arg-type]
        await client.send_data(conn, b"e")  # the connection is unharmed
        got = {}
        for _ in range(5):
            msg = await server.receive(timeout=10.0)
            got[msg.data] = (msg.priority, msg.stream)
        assert got == {b"a": ("high", 0), b"b": ("low", 0), b"c": ("normal", 0),
                       b"d": ("low", 2), b"e": ("normal", 0)}
        m = client.get_metrics()
        assert m.total_messages == 5
        assert {p: m.sent_messages_by_priority[p] for p in ("high", "normal", "low")} == {
            "high": 1, "normal": 2, "low": 2}


@pytest.mark.parametrize("bad", [True, False, 1.0, ["high"], None, 4, -1, "HIGHEST"])
async def test_a_value_that_is_not_a_priority_is_refused_on_every_path(bad: object) -> None:
    """``True == 1`` and ``hash(True) == hash(1)``: a dict of ints took a bool for a priority,
    and an unhashable value raised "unhashable type". Each is a ValueError that names the
    accepted priorities, on the fast path (priority alone), the general one (with another
    option), send_nowait and request; nothing is sent."""
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        with pytest.raises(ValueError, match="priority|Priority"):
            await client.send_data(conn, b"x", priority=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority|Priority"):
            await client.send_data(conn, b"x", priority=bad, stream=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority|Priority"):
            client.send_nowait(conn, b"x", priority=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority|Priority"):
            await client.request(conn, b"x", priority=bad, timeout=5.0)  # type: ignore[arg-type]
        await client.send_data(conn, b"ok", priority="HIGH")  # a name in any case still goes
        msg = await server.receive(timeout=10.0)
        assert (msg.data, msg.priority) == (b"ok", "high")
        assert client.get_metrics().total_messages == 1
