"""Metrics primitives: a fixed-memory latency histogram (p50/p99), an EWMA."""

from __future__ import annotations

import math

__all__ = ["Ewma", "LatencyHistogram", "RateMeter"]

_MIN = 1e-6  # 1 µs
_GROWTH = 1.04  # ~4 % relative precision
_BUCKETS = int(math.log(100.0 / _MIN, _GROWTH)) + 2  # up to 100 s
_LOG_GROWTH = math.log(_GROWTH)


class LatencyHistogram:
    """Durations in seconds in log-spaced buckets: constant memory, ~4 % precision."""

    __slots__ = ("_counts", "count", "_sum", "min", "max")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self._sum = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        s = max(seconds, 0.0)
        idx = 0 if s <= _MIN else min(_BUCKETS - 1, int(math.log(s / _MIN) / _LOG_GROWTH) + 1)
        self._counts[idx] += 1
        self.count += 1
        self._sum += s
        self.min = min(self.min, s)
        self.max = max(self.max, s)

    def cumulative(self, bounds: tuple[float, ...]) -> tuple[int, ...]:
        """How many samples are at most each of ``bounds`` (seconds, ascending): the counts
        of a Prometheus-style histogram, within the buckets' ~4 % precision."""
        out = []
        seen = idx = 0
        for bound in bounds:
            while idx < _BUCKETS and _MIN * _GROWTH ** idx <= bound * 1.000001:
                seen += self._counts[idx]
                idx += 1
            out.append(seen)
        return tuple(out)

    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def percentile(self, p: float) -> float:
        """The value below which ``p`` % of the samples fall (bucket midpoint; 0.0 if empty)."""
        if not self.count:
            return 0.0
        if not 0 <= p <= 100:
            raise ValueError("p must be within 0..100")
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for idx, c in enumerate(self._counts):
            seen += c
            if seen >= rank:
                if idx == 0:
                    return min(_MIN, self.max)
                lo = _MIN * _GROWTH ** (idx - 1)
                return min(max(lo * math.sqrt(_GROWTH), self.min), self.max)
        return self.max  # pragma: no cover

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in enumerate(other._counts):
            self._counts[i] += c
        self.count += other.count
        self._sum += other._sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class Ewma:
    """Exponentially weighted moving average: ``value += alpha * (x - value)``."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be within (0, 1]")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, x: float) -> float:
        v = x if self.value is None else self.value + self.alpha * (x - self.value)
        self.value = v
        return v


class RateMeter:
    """Bytes per second over roughly the last ``window`` seconds, from a running total.

    ``update(total, now)`` is cheap (it keeps one sample per ``window / 8``); ``rate(now)``
    compares the newest total with the oldest sample still in the window.
    """

    __slots__ = ("window", "_samples", "_step")

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._step = window / 8
        #: made by the first update (an idle connection's meter holds no list)
        self._samples: list[tuple[float, int]] | None = None

    def update(self, total: int, now: float) -> None:
        s = self._samples
        if s is None:
            s = self._samples = []
        if len(s) >= 2 and now - s[-2][0] < self._step:
            s[-1] = (now, total)
        else:
            s.append((now, total))
        while len(s) > 2 and now - s[1][0] >= self.window:
            s.pop(0)

    def rate(self, now: float) -> float:
        s = self._samples
        if s is None or len(s) < 2:
            return 0.0
        (t0, b0), (t1, b1) = s[0], s[-1]
        if now - t1 >= self.window:  # nothing moved lately
            return 0.0
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
