"""Reconnection delays: exponential growth, a cap, optional full jitter, a bounded count.

Retry is data: the driver iterates the delays and sleeps; this module never sleeps and takes
its randomness from the caller (a seeded ``random.Random`` makes it deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["BackoffPolicy", "RandomSource", "backoff_delays"]


class RandomSource(Protocol):
    def random(self) -> float: ...


def backoff_delays(initial: float, multiplier: float = 2.0, max_delay: float = 30.0,
                   max_attempts: int | None = 5,
                   rng: RandomSource | None = None) -> Iterator[float]:
    """Yield the delay before each attempt n = 0, 1, ...: ``min(max_delay, initial *
    multiplier**n)``, times ``rng.random()`` when an ``rng`` is given (full jitter).

    Stops after ``max_attempts`` delays (``None``: never).
    """
    if initial < 0 or max_delay < 0:
        raise ValueError("delays must be >= 0")
    if multiplier < 1.0:
        raise ValueError("multiplier must be >= 1")
    if max_attempts is not None and max_attempts < 0:
        raise ValueError("max_attempts must be >= 0")
    n = 0
    base = initial
    while max_attempts is None or n < max_attempts:
        capped = min(max_delay, base)
        yield rng.random() * capped if rng is not None else capped
        n += 1
        if base < max_delay:
            base *= multiplier


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    max_attempts: int | None = 5
    jitter: bool = True

    def delays(self, rng: RandomSource | None = None) -> Iterator[float]:
        return backoff_delays(self.initial, self.multiplier, self.max_delay, self.max_attempts,
                              rng if self.jitter else None)
