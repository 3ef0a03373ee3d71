"""Keeping logs readable when the same thing happens thousands of times.

* :class:`LogBudget`: the first ``burst`` lines of one kind per ``interval`` are written, the
  rest counted and reported as one summary line (a handler that raises on every message).
* :class:`LogTally`: events that are normal one by one but noise in bulk (peers closing at
  EOF before HELLO) are counted per kind and written as one line per ``interval`` with the
  counts.

Both take ``now`` (monotonic seconds) and decide; the caller writes the lines.
"""

from __future__ import annotations

__all__ = ["LogBudget", "LogTally"]


class LogBudget:
    """At most ``burst`` lines per ``interval`` seconds; the rest are counted."""

    __slots__ = ("burst", "interval", "start", "logged", "suppressed")

    def __init__(self, burst: int = 10, interval: float = 60.0) -> None:
        self.burst = burst
        self.interval = interval
        self.start: float | None = None
        self.logged = 0
        self.suppressed = 0

    def take(self, now: float) -> tuple[bool, int]:
        """``(write this line, lines suppressed in the interval that just ended)``: the
        second is non-zero once, when a new interval starts after suppressed lines."""
        missed = 0
        if self.start is None or now >= self.start + self.interval:
            missed = self.suppressed
            self.start = now
            self.logged = self.suppressed = 0
        if self.logged < self.burst:
            self.logged += 1
            return True, missed
        self.suppressed += 1
        return False, missed

    @property
    def exhausted(self) -> bool:
        """The line just taken was the last one written in this interval."""
        return self.logged == self.burst and not self.suppressed

    def flush(self) -> int:
        """Lines suppressed and not yet reported (the owner is going away)."""
        missed = self.suppressed
        self.suppressed = 0
        return missed


class LogTally:
    """Counts per kind, reported as one line at most every ``interval`` seconds."""

    __slots__ = ("interval", "counts", "since")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.since: float | None = None

    def add(self, kind: str, now: float) -> dict[str, int] | None:
        """Count one event; the counts to report (then reset) when ``interval`` has passed
        since the first event counted, else None."""
        counts = self.counts
        counts[kind] = counts.get(kind, 0) + 1
        if self.since is None:
            self.since = now
        elif now >= self.since + self.interval:
            return self.take()
        return None

    def take(self) -> dict[str, int] | None:
        """The counts not reported yet (None if there are none), reset."""
        if not self.counts:
            return None
        out = self.counts
        self.counts = {}
        self.since = None
        return out
