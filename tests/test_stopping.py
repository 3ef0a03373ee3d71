"""``drivers.stopping.stop_by``: a link's own task is waited for until one deadline, then
cancelled and given ``CANCEL_GRACE`` s and ``CANCEL_TURNS`` loop turns more; whether it
ended is the answer, and one that still runs after that is logged once, by its name. Real
tasks on the running loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from objtransport.drivers.stopping import CANCEL_GRACE, CANCEL_TURNS, stop_by

#: how long past its deadline and grace stop_by may return on a loaded machine: generous,
#: what is checked is that it returns at all (the waits it bounds are the tasks')
SLACK = 2.0


async def test_stop_by_lets_a_task_end_then_cancels_it_at_the_deadline() -> None:
    """A task that ends before the deadline is not cancelled; one still waiting at the
    deadline is cancelled and has ended when it returns; both answer True; cancelling
    the waiter cancels the task too."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()
    ending = loop.create_task(gate.wait())
    loop.call_soon(gate.set)
    assert await stop_by(ending, loop.time() + 5.0) is True
    assert ending.done() and not ending.cancelled()
    assert await stop_by(ending, loop.time()) is True  # already done: at once

    stuck = loop.create_task(asyncio.Event().wait())
    deadline = loop.time() + 0.05
    assert await stop_by(stuck, deadline) is True
    assert stuck.cancelled()
    assert loop.time() <= deadline + CANCEL_GRACE + SLACK

    stuck = loop.create_task(asyncio.Event().wait())
    waiter = loop.create_task(stop_by(stuck, loop.time() + 5.0))
    await asyncio.wait([waiter], timeout=0)  # the waiter waits on the task
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)
    await asyncio.wait([stuck], timeout=5)
    assert stuck.cancelled()


async def test_a_task_that_outlives_its_cancellation_is_reported_not_waited_for(
        caplog: pytest.LogCaptureFixture) -> None:
    """A task that swallows the first cancellation and goes on waiting: ``stop_by``
    returns False by its deadline plus ``CANCEL_GRACE`` (no longer), and logs one WARNING
    naming the task. The task is then let go and awaited here: nothing is left running."""
    caplog.set_level(logging.WARNING, logger="objtransport.drivers.stopping")
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()  # swallowed once: it goes on until released
        await release.wait()

    task = loop.create_task(stubborn(), name="objtransport-test-stubborn")
    try:
        async with asyncio.timeout(10):
            await asyncio.sleep(0)  # the task waits in its try block
            deadline = loop.time() + 0.02
            assert await stop_by(task, deadline) is False
            assert loop.time() <= deadline + CANCEL_GRACE + SLACK
            assert cancelled.is_set() and not task.done()
            warnings = [r for r in caplog.records if r.name == "objtransport.drivers.stopping"]
            assert len(warnings) == 1, warnings
            assert warnings[0].levelno == logging.WARNING
            assert "objtransport-test-stubborn" in warnings[0].getMessage()
    finally:
        release.set()
        await asyncio.wait_for(task, 5)
    assert task.done() and not task.cancelled()


class BusyLoad:
    """Load on the running loop, without sleeping: a callback that spins ``per_turn``
    seconds of wall time in every loop turn (it re-arms itself with ``call_soon``) until
    stopped. What a loaded machine does to a loop: each turn takes long."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: float) -> None:
        self.loop, self.per_turn = loop, per_turn
        self.turns = 0
        self._handle: asyncio.Handle | None = loop.call_soon(self._spin)

    def _spin(self) -> None:
        self.turns += 1
        end = time.monotonic() + self.per_turn
        while time.monotonic() < end:
            pass
        self._handle = self.loop.call_soon(self._spin)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


#: loop turns the reader below needs to end once cancelled (a grpc reader's ``finally``:
#: the call's cancellation reported back a few turns later); fewer than ``CANCEL_TURNS``,
#: more than the turns a loaded loop runs in ``CANCEL_GRACE``
READER_TURNS = 8
#: each loaded turn's wall time: ``CANCEL_GRACE`` passes within 3 such turns
PER_TURN = 0.02


async def test_a_reader_slowed_by_a_loaded_loop_is_not_counted_as_left_behind(
        caplog: pytest.LogCaptureFixture) -> None:
    """A reader that ends a few loop turns after its cancellation, on a loop where every
    turn takes 20 ms (busy callbacks, no sleep): ``CANCEL_GRACE`` of wall time passes
    within 3 turns, but the grace also lasts ``CANCEL_TURNS`` turns, so the reader is
    seen to end: True, no WARNING. (With the seconds alone it was reported left behind.)"""
    assert READER_TURNS < CANCEL_TURNS and 3 * PER_TURN > CANCEL_GRACE
    caplog.set_level(logging.WARNING, logger="objtransport.drivers.stopping")
    loop = asyncio.get_running_loop()
    cleaned = asyncio.Event()

    async def reader() -> None:
        try:
            await asyncio.Event().wait()  # the call's next message, never
        finally:
            for _ in range(READER_TURNS):  # the call's end reported turns later
                await asyncio.sleep(0)
            cleaned.set()

    task = loop.create_task(reader(), name="objtransport-grpc-reader")
    await asyncio.sleep(0)  # the reader waits in its try block
    load = BusyLoad(loop, PER_TURN)
    try:
        async with asyncio.timeout(10):
            ended = await stop_by(task, loop.time())
    finally:
        load.stop()
    assert ended is True and task.done() and cleaned.is_set()
    assert load.turns > READER_TURNS  # the loop was loaded throughout
    assert not [r for r in caplog.records if r.name == "objtransport.drivers.stopping"]
