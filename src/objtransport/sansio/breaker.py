"""A circuit breaker per endpoint: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, with the clock
passed in. Sends to an open circuit fail at once, without touching the network.

How long it stays open grows when it keeps re-opening (Finagle's failure accrual): the
first time ``reset_timeout``; each time a half-open probe fails and it opens again, twice
the last base, capped at ``max_reset_timeout``, then jittered down by up to half (never
below ``reset_timeout``) when a random source is given, so that many clients of one dead
endpoint do not probe it in step. Closing starts over from ``reset_timeout``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .backoff import RandomSource

__all__ = ["BreakerState", "CircuitBreaker", "CircuitBreakerState"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitBreakerState:
    """A snapshot: ``state`` ("closed", "open" or "half_open"), consecutive ``failure_count``,
    the time of the ``last_failure`` (None if none) and ``success_count``."""

    state: str
    failure_count: int
    last_failure: float | None
    success_count: int


_ALLOWED = {
    BreakerState.CLOSED: {BreakerState.OPEN},
    BreakerState.OPEN: {BreakerState.HALF_OPEN},
    BreakerState.HALF_OPEN: {BreakerState.CLOSED, BreakerState.OPEN},
}

StateCallback = Callable[[BreakerState, BreakerState, float], None]


class CircuitBreaker:
    """``failure_threshold`` consecutive failures open it; after ``open_for`` (first
    ``reset_timeout``, growing up to ``max_reset_timeout`` while it keeps re-opening) it
    admits up to ``half_open_max_probes`` probes; a probe's success closes it, a failure
    reopens it. ``rng`` jitters the grown open times (None: no jitter)."""

    __slots__ = ("failure_threshold", "reset_timeout", "max_reset_timeout", "rng", "open_for",
                 "reopens", "half_open_max_probes", "on_state_change", "_state",
                 "failure_count", "success_count", "last_failure", "_opened_at", "_probes")

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 30.0,
                 half_open_max_probes: int = 1,
                 on_state_change: StateCallback | None = None, *,
                 max_reset_timeout: float | None = None,
                 rng: RandomSource | None = None) -> None:
        if failure_threshold < 1 or half_open_max_probes < 1 or reset_timeout < 0:
            raise ValueError("invalid circuit breaker limits")
        if max_reset_timeout is not None and max_reset_timeout < reset_timeout:
            raise ValueError("max_reset_timeout must be >= reset_timeout")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = reset_timeout if max_reset_timeout is None \
            else max_reset_timeout
        self.rng = rng
        #: how long the current (or last) open state lasts
        self.open_for = reset_timeout
        #: times it re-opened since it last closed
        self.reopens = 0
        self.half_open_max_probes = half_open_max_probes
        self.on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self.failure_count = 0
        self.success_count = 0
        self.last_failure: float | None = None
        self._opened_at = 0.0
        self._probes = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    def _transition(self, new: BreakerState, now: float) -> None:
        old = self._state
        if new not in _ALLOWED[old]:
            raise RuntimeError(f"illegal breaker transition {old.value} -> {new.value}")
        self._state = new
        if new is BreakerState.OPEN:
            self._opened_at = now
            self._probes = 0
            if old is BreakerState.HALF_OPEN:
                self.reopens += 1
            self.open_for = self._open_time()
        elif new is BreakerState.CLOSED:
            self.failure_count = 0
            self._probes = 0
            self.reopens = 0
        if self.on_state_change is not None:
            self.on_state_change(old, new, now)

    def _open_time(self) -> float:
        """``reset_timeout * 2**reopens`` capped at ``max_reset_timeout``, jittered down by
        up to half but never below ``reset_timeout``."""
        base = self.reset_timeout
        cap = self.max_reset_timeout
        if cap <= base:
            return base
        grown = min(cap, base * 2.0 ** min(self.reopens, 64))
        if self.rng is not None and self.reopens:
            grown *= 1.0 - 0.5 * self.rng.random()
        return max(base, grown)

    def allow(self, now: float) -> bool:
        """May an attempt go out now? In HALF_OPEN a True counts as a probe in flight."""
        st = self._state
        if st is BreakerState.CLOSED:
            return True
        if st is BreakerState.OPEN:
            if now < self._opened_at + self.open_for:
                return False
            self._transition(BreakerState.HALF_OPEN, now)
        if self._probes < self.half_open_max_probes:
            self._probes += 1
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until an attempt would be admitted (0.0 if now)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.open_for - now)
        if self._state is BreakerState.HALF_OPEN and self._probes >= self.half_open_max_probes:
            return self.open_for
        return 0.0

    def record_success(self, now: float) -> None:
        self.success_count += 1
        if self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED, now)
        else:
            self.failure_count = 0

    def record_failure(self, now: float) -> None:
        self.last_failure = now
        self.failure_count += 1
        if self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.OPEN, now)
        elif self._state is BreakerState.CLOSED and self.failure_count >= self.failure_threshold:
            self._transition(BreakerState.OPEN, now)

    def release_probe(self) -> None:
        """A probe ended with neither success nor failure (e.g. cancelled)."""
        if self._probes:
            self._probes -= 1

    def next_deadline(self) -> float | None:
        if self._state is BreakerState.OPEN:
            return self._opened_at + self.open_for
        return None

    def snapshot(self) -> CircuitBreakerState:
        return CircuitBreakerState(self._state.value, self.failure_count, self.last_failure,
                                   self.success_count)
