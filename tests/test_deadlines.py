"""SharedDeadlines: many waits' deadlines on one loop timer (receive(timeout=...))."""

from __future__ import annotations

import asyncio

import pytest

from objtransport.deadlines import SharedDeadlines


async def test_each_wait_fails_at_its_own_deadline_and_one_that_ended_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    d = SharedDeadlines()
    now = loop.time()
    late, early, answered = (loop.create_future() for _ in range(3))
    d.add(loop, late, now + 0.08)
    d.add(loop, early, now + 0.02)  # earlier than the armed timer: it is armed again
    d.add(loop, answered, now + 0.01)
    answered.set_result("message")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(early, 5)
    assert not late.done()
    assert loop.time() >= now + 0.02 - 0.002  # uvloop runs a timer up to 1 ms early
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late, 5)
    assert loop.time() >= now + 0.08 - 0.002
    assert answered.result() == "message" and len(d) == 0
    d.close()


async def test_the_record_stays_bounded_by_the_live_waits() -> None:
    loop = asyncio.get_running_loop()
    d = SharedDeadlines()
    far = loop.time() + 60
    for _ in range(10_000):  # a request/response loop: each wait ends before its deadline
        fut = loop.create_future()
        d.add(loop, fut, far)
        fut.set_result(None)
    assert len(d) <= 64 + 1
    waiting = loop.create_future()
    d.add(loop, waiting, loop.time() + 0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiting, 5)
    d.close()
    assert len(d) == 0


async def test_receive_times_out_and_a_later_message_still_arrives() -> None:
    from objtransport import NetworkTransport
    from objtransport.exceptions import ReceiveTimeout

    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0)
        conn = await net.connect("127.0.0.1", listener.port)
        with pytest.raises(ReceiveTimeout):
            await net.receive(timeout=0.02)
        waits = [asyncio.create_task(net.receive(timeout=t)) for t in (0.01, 5.0)]
        done, _ = await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert waits[0] in done and isinstance(waits[0].exception(), ReceiveTimeout)
        await net.send_data(conn, b"hi")
        msg = await asyncio.wait_for(waits[1], 5)
        assert msg.data == b"hi"
