"""A lone plain message for a connection whose queue is empty goes straight to the
``receive()``/``get()`` waiting on it (inbox.py): nothing is lost or reordered when the
wait ends otherwise, and every other kind of delivery still goes through the queue."""

from __future__ import annotations

import asyncio
from typing import Any

from objtransport import NetworkTransport
from objtransport.inbox import Inbox


class _Conn:
    transport_name = "tcp"
    peer_address = ("127.0.0.1", 1)
    identity = "peer-a"


async def _waiting(task: asyncio.Task[Any]) -> None:
    """Until ``task`` waits on the inbox (a bounded number of loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_lone_message_is_handed_to_the_waiter_as_a_full_message() -> None:
    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    put = inbox.register(3, None, _Conn())
    task = asyncio.create_task(inbox.get(3, 5.0))
    await _waiting(task)
    put([b"one"], 3)
    assert inbox.size == 0  # handed over, not queued
    msg = await asyncio.wait_for(task, 5.0)
    assert (msg.data, msg.conn_id, msg.transport, msg.peer, msg.identity) == (
        b"one", 3, "tcp", ("127.0.0.1", 1), "peer-a")
    assert inbox.get_nowait(3) is None and inbox.get_many_nowait(None, 10) == []


async def test_a_cancelled_wait_puts_the_handed_message_back_first() -> None:
    """The waiter's task is cancelled after the message was handed to it and before it
    ran: the message goes back to the head of the queue, ahead of what came after."""
    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    put = inbox.register(3, None, _Conn())
    task = asyncio.create_task(inbox.get(3, 5.0))
    await _waiting(task)
    put([b"first"], 5)  # handed over; the task has not run since
    put([b"second"], 6)  # no waiter left: queued
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert inbox.size == 2
    assert [m.data for m in inbox.get_many_nowait(3, 10)] == [b"first", b"second"]
    assert inbox.size == 0


async def test_several_messages_or_a_full_queue_go_through_the_queue_in_order() -> None:
    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    put = inbox.register(3, None, _Conn())
    many = asyncio.create_task(inbox.get_many(3, 10, None))
    await _waiting(many)
    put([b"a", b"b"], 2)  # two in one read: queued, the waiter looks
    assert [m.data for m in await asyncio.wait_for(many, 5.0)] == [b"a", b"b"]
    put([b"c"], 1)  # no waiter: queued
    one = asyncio.create_task(inbox.get(3, 5.0))
    assert (await asyncio.wait_for(one, 5.0)).data == b"c"
    waiting = asyncio.create_task(inbox.get_many(3, 10, None))
    await _waiting(waiting)
    put([b"d"], 1)  # handed to get_many's wait; what is queued after it follows
    assert [m.data for m in await asyncio.wait_for(waiting, 5.0)] == [b"d"]


async def test_receive_over_tcp_takes_handed_messages_in_order_and_times_out() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"hello")
        first = await server.receive(timeout=5.0)  # from any connection: the queue's way
        cid = first.conn_id
        assert first.data == b"hello"
        for i in range(50):  # ping-pong: each reply finds receive() waiting
            await client.send_data(conn, b"ping %d" % i)
            msg = await server.receive(cid, timeout=5.0)
            assert (msg.data, msg.conn_id) == (b"ping %d" % i, cid)
            await server.send_data(cid, msg.data.upper())
            assert (await client.receive(conn, timeout=5.0)).data == b"PING %d" % i
        cancelled = asyncio.create_task(server.receive(cid))
        await _waiting(cancelled)
        cancelled.cancel()  # nothing came: nothing to give back
        try:
            await cancelled
        except asyncio.CancelledError:
            pass
        await client.send_data(conn, b"after")
        assert (await server.receive(cid, timeout=5.0)).data == b"after"
