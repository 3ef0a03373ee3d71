"""drivers/eager.py: a coroutine started at once and driven from the futures it waits on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from objtransport.drivers import eager


async def test_runs_in_the_callers_step_then_on_from_each_future() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()
    steps: list[object] = []
    finished = asyncio.Event()

    async def work() -> None:
        steps.append("started")
        steps.append(await first)
        await asyncio.sleep(0)  # a bare yield: the next loop turn
        steps.append(await second)
        finished.set()

    eager.Eager(loop).start(work())
    assert steps == ["started"]  # before the caller gave up its step
    first.set_result(1)
    second.set_result(2)
    await asyncio.wait_for(finished.wait(), 5)
    assert steps == ["started", 1, 2]


async def test_cancelling_the_starting_task_does_not_reach_the_coroutine() -> None:
    """The caller's task is only where the coroutine started: cancelling it later leaves
    the coroutine waiting for its own future (a grpc write would cancel the call)."""
    loop = asyncio.get_running_loop()
    waited: asyncio.Future[str] = loop.create_future()
    ended: asyncio.Future[str] = loop.create_future()

    async def work() -> None:
        try:
            ended.set_result(await waited)
        except asyncio.CancelledError:
            ended.set_result("cancelled")
            raise

    async def caller() -> None:
        eager.Eager(loop).start(work())
        await asyncio.Event().wait()  # parked until cancelled

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not waited.cancelled() and not ended.done()
    waited.set_result("written")
    assert await asyncio.wait_for(ended, 5) == "written"


async def test_an_escaping_error_is_logged_and_a_cancelled_wait_ends_quietly(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[None] = loop.create_future()
    cancelled: asyncio.Future[None] = loop.create_future()
    done = asyncio.Event()
    raised = asyncio.Event()

    async def fails() -> None:
        await failing
        raised.set()  # its waiter runs after this step, so after the error is logged
        raise ValueError("boom")

    async def is_cancelled() -> None:
        try:
            await cancelled
        finally:
            done.set()

    with caplog.at_level(logging.ERROR, logger="objtransport.drivers"):
        eager.Eager(loop).start(fails())
        eager.Eager(loop).start(is_cancelled())
        failing.set_result(None)
        cancelled.cancel()
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.wait_for(raised.wait(), 5)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]


class _OddYield:
    """An awaitable that yields something no task accepts (as a foreign framework might)."""

    def __await__(self):  # type: ignore[no-untyped-def]
        yield "not a future"


async def test_anything_but_a_future_of_this_loop_goes_on_in_an_ordinary_task() -> None:
    """The fallback: what the coroutine yields is not a Future of this loop, so a task takes
    it over from there and does what a task does with it (here: throws its RuntimeError in);
    the coroutine goes on in that task, awaiting futures as usual, to its end."""
    loop = asyncio.get_running_loop()
    later: asyncio.Future[str] = loop.create_future()
    seen: list[object] = []
    ended: asyncio.Future[list[object]] = loop.create_future()

    async def work() -> None:
        seen.append(asyncio.current_task())  # the first step: the caller's task
        try:
            await _OddYield()
        except RuntimeError as exc:  # a task's answer to a bad yield
            seen.append("bad yield" in str(exc))
        task = asyncio.current_task()
        seen.append(task is not None and task is not seen[0])
        seen.append(await later)
        ended.set_result(seen)

    eager.Eager(loop).start(work())
    assert seen == [asyncio.current_task()]
    await asyncio.sleep(0)
    later.set_result("resumed")
    assert (await asyncio.wait_for(ended, 5))[1:] == [True, True, "resumed"]


async def test_a_future_of_another_loop_is_refused_as_a_task_refuses_it() -> None:
    loop = asyncio.get_running_loop()
    other = asyncio.new_event_loop()
    try:
        foreign: asyncio.Future[None] = other.create_future()
        ended: asyncio.Future[str] = loop.create_future()

        async def work() -> None:
            try:
                await foreign
            except RuntimeError as exc:
                ended.set_result("refused" if "different loop" in str(exc) else str(exc))

        eager.Eager(loop).start(work())
        assert await asyncio.wait_for(ended, 5) == "refused"
        assert not foreign.done()  # never waited on from this loop
    finally:
        other.close()


async def test_an_error_escaping_the_task_it_was_handed_to_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def fails() -> None:
        try:
            await _OddYield()
        finally:
            done.set()

    with caplog.at_level(logging.ERROR, logger="objtransport.drivers"):
        eager.Eager(loop).start(fails())
        await asyncio.wait_for(done.wait(), 5)
        for _ in range(3):  # the task ends in this step; its done-callback runs next turn
            await asyncio.sleep(0)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]


async def test_aclose_ends_what_its_owner_started_and_nothing_starts_after() -> None:
    """The owner (a link) stops: a coroutine still waiting is closed where it waits (its
    ``finally`` runs), one handed to a task has the task cancelled and awaited; no task is
    left pending, and what is started afterwards does not run."""
    loop = asyncio.get_running_loop()
    owner = eager.Eager(loop)
    never: asyncio.Future[None] = loop.create_future()
    ends: list[str] = []

    async def waits() -> None:
        try:
            await never
        finally:
            ends.append("closed")

    async def in_a_task() -> None:
        try:
            await _OddYield()
        except RuntimeError:  # the task's answer to the bad yield; then it waits
            await asyncio.Event().wait()
        finally:
            ends.append("cancelled")

    owner.start(waits())
    owner.start(in_a_task())
    assert len(owner.running) == 1 and len(owner.tasks) == 1
    tasks = list(owner.tasks)
    await asyncio.sleep(0)  # the task takes over
    await asyncio.wait_for(owner.aclose(), 5)
    assert sorted(ends) == ["cancelled", "closed"]
    assert not owner.running and not owner.tasks and all(t.cancelled() for t in tasks)
    never.set_result(None)  # what it waited on ends later: nothing left to resume
    await asyncio.sleep(0)

    async def late() -> None:
        ends.append("ran")

    owner.start(late())
    assert "ran" not in ends
