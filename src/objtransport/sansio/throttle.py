"""Token bucket for bandwidth throttling, with the clock passed in."""

from __future__ import annotations

__all__ = ["TokenBucket"]

_EPSILON = 1e-6  # of a token: absorbs float rounding so waiting time_until() always suffices


class TokenBucket:
    """``rate`` tokens (bytes) per second, at most ``burst`` saved up; starts full.

    A request larger than ``burst`` is granted when the bucket is full and leaves it in debt,
    so a huge frame is never blocked for ever and the long-run rate still holds.
    """

    __slots__ = ("_rate", "_burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._check(rate, burst)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    @staticmethod
    def _check(rate: float, burst: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def try_acquire(self, n: float, now: float) -> bool:
        """Take ``n`` tokens if available now (see the class note for ``n > burst``)."""
        self._refill(now)
        need = min(n, self._burst)
        if self._tokens + _EPSILON >= need:  # float refill must not leave a 1e-16 gap
            self._tokens -= n
            return True
        return False

    def time_until(self, n: float, now: float) -> float:
        """Seconds until ``try_acquire(n)`` would succeed (0.0 if it would now)."""
        self._refill(now)
        missing = min(n, self._burst) - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self._rate

    def consume(self, n: float, now: float) -> None:
        """Take ``n`` tokens unconditionally (the bytes went out); the bucket may go into
        debt, which later waits repay."""
        self._refill(now)
        self._tokens -= n

    def set_rate(self, rate: float, burst: float, now: float) -> None:
        """Change the limits from ``now`` on; saved tokens are clamped to the new burst."""
        self._check(rate, burst)
        self._refill(now)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = min(self._tokens, self._burst)
