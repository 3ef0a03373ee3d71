"""How fast a frame must arrive once it has begun: peers that drip are cut.

A frame that has begun must be complete by ``since + grace + got / min_rate``: ``grace`` (the
``timeout`` option) for any frame, then at least ``min_rate`` bytes per second on average
(``got`` is how much of it has arrived). A frame dripped at 1 B/s is cut after about
``grace``; a 64 MiB frame may take hours at 1 KiB/s. Bytes between frames do not count:
silence is the idle and liveness timers' business. Pure: time is an argument.
"""

from __future__ import annotations

__all__ = ["MIN_FRAME_RATE", "FrameClock"]

#: bytes per second a frame must average, after the grace period, once it has begun
MIN_FRAME_RATE = 1024


class FrameClock:
    """The deadline of the frame in progress on one connection.

    After each read the session calls :meth:`update` with its decoder's ``frame_at`` (where
    the frame in progress began, in bytes fed; None between frames); :meth:`deadline` and
    :meth:`expired` take the decoder's ``fed``.
    """

    __slots__ = ("grace", "min_rate", "at", "since", "paused_at", "held")

    def __init__(self, grace: float, min_rate: float = MIN_FRAME_RATE) -> None:
        self.grace = grace
        self.min_rate = min_rate
        self.at: int | None = None  # where the frame in progress began, in bytes fed
        self.since = 0.0  # when it began (moved later by the time reading was paused)
        self.paused_at: float | None = None  # we stopped reading (not the peer's fault)
        self.held = False  # stopped by :meth:`hold` until the next read

    def pause(self, now: float) -> None:
        """We stopped reading: the frame's time stops until :meth:`resume`."""
        if self.paused_at is None:
            self.paused_at = now
        self.held = False  # a read no longer resumes it

    def resume(self, now: float) -> None:
        if self.paused_at is not None:
            self.since += now - self.paused_at
            self.paused_at = None

    def hold(self, now: float) -> None:
        """The peer's bytes wait unread in our socket (our loop is behind): the frame's
        time stops until the next read (:meth:`update`), which may complete it."""
        if self.paused_at is None:
            self.paused_at = now
            self.held = True

    def update(self, at: int | None, now: float) -> bool:
        """Record the decoder's state after a read; True when a new frame began or a held
        one goes on (its deadline may come before any the caller has armed)."""
        if self.held:
            self.held = False
            self.resume(now)
            if at == self.at:
                return at is not None  # the same frame: its deadline is back
        if at == self.at:
            return False
        self.at = at
        self.since = now
        return at is not None

    def deadline(self, fed: int) -> float | None:
        at = self.at
        if at is None or self.paused_at is not None:
            return None
        return self.since + self.grace + (fed - at) / self.min_rate

    def expired(self, fed: int, now: float) -> bool:
        deadline = self.deadline(fed)
        return deadline is not None and now >= deadline

    def describe(self, fed: int, now: float) -> str:
        """Why the frame in progress is cut."""
        got = fed - (self.at or 0)
        return (f"frame too slow: {got} bytes in {now - self.since:.1f} s (a frame must be "
                f"complete within {self.grace:g} s plus {self.min_rate:g} B/s)")
