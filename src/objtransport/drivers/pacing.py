"""Bandwidth pacing for links: the token buckets that apply to one link's traffic.

A :class:`ReadThrottle` keeps a stream link's reading under its receive bucket.
:class:`PacedFlush` is the flush loop of the datagram links (UDP, QUIC): the session's
queue out in batches within a budget and the pacer's tokens, and the wait for more tokens.

A :class:`Pacer` holds the buckets that limit a link's sending (its own and, if set, the
service's and its pool's); all apply. It tells the link how many bytes may go now and how long
to wait otherwise, and keeps the figures: time spent waiting for tokens and the current rate.
The buckets are shared objects, so a rate change (``set_bandwidth``) takes effect at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any, Protocol

from ..sansio.metrics import RateMeter
from ..sansio.throttle import TokenBucket

__all__ = ["PacedFlush", "Pacer", "ReadThrottle", "default_burst"]

#: never wait for fewer tokens than this (or the burst, if smaller): avoids tiny writes
MIN_GRANT = 16 * 1024
#: the send-rate meter takes the running total at most this often (s): not at every write
SAMPLE_EVERY = 0.015


def default_burst(rate: float) -> float:
    """The burst used when the caller gives none: 1/10 s of traffic, at least 16 KiB."""
    return max(float(MIN_GRANT), rate / 10)


class Pacer:
    __slots__ = ("buckets", "waited", "meter", "total", "_blocked_since", "sample_at")

    def __init__(self, buckets: Sequence[TokenBucket] = ()) -> None:
        #: a tuple: the empty one (no limit, the usual case) is no object of the link's
        self.buckets: Sequence[TokenBucket] = buckets
        self.waited = 0.0  # seconds spent waiting for tokens
        self.meter = RateMeter()
        self.total = 0
        self._blocked_since: float | None = None
        #: when the meter takes the total next (until then a writer without buckets may
        #: only add to ``total``: what :meth:`consume` would do)
        self.sample_at = 0.0

    def __bool__(self) -> bool:
        return bool(self.buckets)

    def allowance(self, now: float) -> float:
        """Bytes that may go now (<= 0: wait :meth:`delay` first)."""
        grant = min(b.tokens(now) for b in self.buckets)
        threshold = min(MIN_GRANT, min(b.burst for b in self.buckets))
        if grant < threshold:
            if self._blocked_since is None:
                self._blocked_since = now
            return 0.0
        if self._blocked_since is not None:
            self.waited += now - self._blocked_since
            self._blocked_since = None
        return grant

    def delay(self, now: float) -> float:
        """Seconds until :meth:`allowance` is worth writing for."""
        return max(b.time_until(min(MIN_GRANT, b.burst), now) for b in self.buckets)

    def consume(self, n: int, now: float) -> None:
        for b in self.buckets:
            b.consume(n, now)
        self.total += n
        if now >= self.sample_at:  # the meter's window is 1 s: a sample per 15 ms will do
            self.sample_at = now + SAMPLE_EVERY
            self.meter.update(self.total, now)

    def rate(self, now: float) -> float:
        return self.meter.rate(now)


class PacedFlush:
    """One link's flush loop under its :class:`Pacer`: while ``more()``, take a batch of at
    most ``room()`` bytes (0: stop) and the pacer's tokens with ``take(now, budget,
    strict)``, hand it to ``out`` (which returns its bytes: they are charged), until the
    session has nothing to give. Out of tokens, a timer calls ``again`` (the link's flush)
    when they are back; :meth:`cancel` drops it (the limits changed, the link ended)."""

    __slots__ = ("pacer", "loop", "handle", "_again")

    def __init__(self, pacer: Pacer, loop: asyncio.AbstractEventLoop,
                 again: Callable[[], None]) -> None:
        self.pacer = pacer
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self._again = again

    def run(self, more: Callable[[], object], room: Callable[[], int],
            take: Callable[[float, int, bool], list[Any]],
            out: Callable[[list[Any]], int]) -> None:
        pacer = self.pacer
        now = monotonic()
        while more():
            budget = room()
            if budget <= 0:
                break
            strict = bool(pacer.buckets)
            if strict:
                if self.handle is not None:
                    break
                allowed = pacer.allowance(now)
                if allowed <= 0:
                    self.handle = self.loop.call_at(now + pacer.delay(now), self._fire)
                    break
                budget = min(budget, int(allowed))
            batch = take(now, budget, strict)
            if not batch:
                break
            pacer.consume(out(batch), now)

    def _fire(self) -> None:
        self.handle = None
        self._again()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Throttled(Protocol):
    """What a :class:`ReadThrottle` needs from its link."""

    loop: asyncio.AbstractEventLoop

    def pause_reading(self, reason: str = "consumer") -> None: ...

    def resume_reading(self, reason: str = "consumer") -> None: ...


class ReadThrottle:
    """Keeps a stream link's reading under its receive bucket: each read is charged; in
    debt, reading pauses (reason ``"throttle"``) until the bucket is out of it. The peer is
    slowed by TCP flow control; nothing is buffered. It holds the link, not its bound
    methods (two fewer objects per idle connection for the garbage collector)."""

    __slots__ = ("link", "bucket", "_handle")

    def __init__(self, link: _Throttled) -> None:
        self.link = link
        self.bucket: TokenBucket | None = None
        self._handle: asyncio.TimerHandle | None = None

    def charge(self, bucket: TokenBucket, nbytes: int) -> None:
        """``nbytes`` were read under ``bucket``."""
        self.bucket = bucket
        now = monotonic()
        bucket.consume(nbytes, now)
        if bucket.tokens(now) < 0 and self._handle is None:
            self.link.pause_reading("throttle")
            self._handle = self.link.loop.call_at(now + bucket.time_until(0, now), self._check)

    def reset(self, bucket: TokenBucket | None) -> None:
        """The limit changed: a paused link looks again at once."""
        self.bucket = bucket
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._check()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        bucket = self.bucket
        if bucket is not None:
            now = monotonic()
            if bucket.tokens(now) < 0:
                self._handle = self.link.loop.call_at(now + bucket.time_until(0, now),
                                                      self._check)
                return
        self.link.resume_reading("throttle")
