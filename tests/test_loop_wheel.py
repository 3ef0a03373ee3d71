"""LoopWheel (drivers/link_wheel.py) on a real event loop: closing it never strands a filed
item, and a BaseException out of one item's ``deadline_came`` loses none of the items due
after it in its bucket (docs/design.md, "Keepalive without garbage")."""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import pytest

from objtransport.drivers.link_wheel import LoopWheel

pytestmark = pytest.mark.timeout(60)


class _Waiting:
    """Resolves ``came`` with the wheel's time when its deadline comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.came: asyncio.Future[float] = loop.create_future()

    def deadline_came(self, now: float) -> None:
        if not self.came.done():
            self.came.set_result(now)


class _Raising:
    """Raises ``exc`` the first time its deadline comes."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def deadline_came(self, now: float) -> None:
        self.calls += 1
        raise self.exc


async def test_closing_a_wheel_with_items_filed_is_refused_and_their_deadlines_still_come(
        ) -> None:
    """A wheel whose items (live links) are filed refuses to close, leaving them as they
    were: their deadlines still come, on time; once empty it closes (its timer off)."""
    loop = asyncio.get_running_loop()
    lw = LoopWheel(loop)
    waiting = _Waiting(loop)
    at = monotonic() + 0.05
    lw.wheel.file(waiting, at)
    with pytest.raises(RuntimeError, match="1 items filed"):
        lw.close()
    assert waiting in lw.wheel and lw.armed_at <= at + lw.wheel.resolution
    now = await asyncio.wait_for(waiting.came, 10.0)
    assert now >= at
    assert len(lw.wheel) == 0
    lw.close()
    assert lw.armed_at == float("inf")
    # closed, it still serves what is filed later (a new link of the loop)
    later = _Waiting(loop)
    lw.wheel.file(later, monotonic() + 0.02)
    await asyncio.wait_for(later.came, 10.0)
    lw.close()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3),
                                 asyncio.CancelledError()], ids=type)
def test_a_base_exception_in_one_item_loses_none_of_the_items_due_after_it(
        exc: BaseException) -> None:
    """Three items due in one bucket, the first raising a BaseException out of its
    ``deadline_came``: it goes on up (out of the loop for KeyboardInterrupt and SystemExit,
    to the loop's exception handler for CancelledError, as asyncio does with any callback),
    and the two after it are still served, not before their deadline, once each."""
    loop = asyncio.new_event_loop()
    seen: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx.get("exception")))
    lw = LoopWheel(loop)
    try:
        at = monotonic() + 0.03
        raising = _Raising(exc)
        b, c = _Waiting(loop), _Waiting(loop)
        for item in (raising, b, c):  # one bucket, served in this order
            lw.wheel.file(item, at)
        if isinstance(exc, asyncio.CancelledError):
            came = loop.run_until_complete(asyncio.wait_for(asyncio.gather(b.came, c.came),
                                                            10.0))
            assert len(seen) == 1 and isinstance(seen[0], asyncio.CancelledError)
        else:
            with pytest.raises(type(exc)):
                loop.run_until_complete(asyncio.sleep(10.0))
            assert raising.calls == 1 and not b.came.done() and not c.came.done()
            assert b in lw.wheel and c in lw.wheel and raising not in lw.wheel
            came = loop.run_until_complete(asyncio.wait_for(asyncio.gather(b.came, c.came),
                                                            10.0))
        assert min(came) >= at
        assert raising.calls == 1 and len(lw.wheel) == 0
        lw.close()
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
