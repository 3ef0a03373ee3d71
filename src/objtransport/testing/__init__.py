"""A public test kit for code built on objtransport (and for objtransport's own tests)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from .lossy import LossyDatagramProxy
from .proxy import FaultProxy

__all__ = ["FaultProxy", "LossyDatagramProxy", "ManualClock", "eventually"]


class ManualClock:
    """A clock that moves only when told: ``NetworkTransport(clock=ManualClock())`` makes
    message ttls pass with :meth:`advance` instead of waiting. Starts at the current Unix
    time (``start``), so the EXPIRES a peer receives stay meaningful."""

    def __init__(self, start: float | None = None) -> None:
        import time

        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(predicate: Callable[[], object], timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Wait until ``predicate()`` is true, checking every ``interval`` s.

    Raises ``TimeoutError`` naming the predicate after ``timeout`` s. For conditions that no
    event announces (a counter reaching a value on the far side of a socket).
    """
    for _ in range(max(1, math.ceil(timeout / interval))):
        if predicate():
            return
        await asyncio.sleep(interval)
    if not predicate():
        raise TimeoutError(f"condition {getattr(predicate, '__qualname__', predicate)} "
                           f"still false after {timeout:g} s")
