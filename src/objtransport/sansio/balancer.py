"""Picking a member of a group, and the retry budget: pure, with ``now`` and an injected
``random.Random``.

:class:`Balancer` chooses among the healthy members a group hands it (a member is healthy
while its connection is up and its breaker is not open: an open breaker ejects it):

* ``round_robin``: each healthy member in turn;
* ``p2c`` (power of two choices): two distinct random healthy members, the less loaded one,
  load being ``(in-flight bytes + 1) * RTT`` (RTT unknown: the mean of the known ones);
* ``pick_first``: the first healthy member, in the order the group lists them.

A stream other than 0 is *pinned*: it keeps the member it was first given while that member
is healthy, so the stream's order holds; when the member is ejected or removed the stream is
given a new one (see ``docs/design.md`` for what that means for order). Stream 0, the
default, is balanced message by message unless ``pin_default_stream``.

:class:`RetryBudget` caps redeliveries and request retries, Finagle style: each message sent
deposits ``ratio`` of a retry, and ``per_second`` more accrue with time (at most
``per_second * window`` of those banked), so retries stay within ``ratio`` of the traffic
plus ``per_second`` per second and a failing cluster is not hammered.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Balancer", "MemberLoad", "Policy", "RetryBudget", "Sampler"]


class Sampler(Protocol):
    """What the balancer needs of a ``random.Random`` (injected: seeded in tests)."""

    def sample(self, population: Sequence[int], k: int) -> list[int]: ...


class _Fallback:
    """Without an injected Random: a fixed-step walk (deterministic, still spreads)."""

    def __init__(self) -> None:
        self._i = 0

    def sample(self, population: Sequence[int], k: int) -> list[int]:
        n = len(population)
        self._i += 1
        a = self._i % n
        return [population[a], population[(a + 1 + self._i // n % (n - 1)) % n]][:k]


class Policy(enum.Enum):
    ROUND_ROBIN = "round_robin"
    P2C = "p2c"
    PICK_FIRST = "pick_first"

    @classmethod
    def parse(cls, value: str | Policy) -> Policy:
        if isinstance(value, Policy):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"policy must be one of {[p.value for p in cls]}, "
                             f"not {value!r}") from None


@dataclass(frozen=True, slots=True)
class MemberLoad:
    """A healthy member as the balancer sees it: a key, its in-flight bytes (queued plus
    unacknowledged) and its last RTT in seconds (None if unknown)."""

    key: Hashable
    inflight: int = 0
    rtt: float | None = None


class Balancer:
    """Chooses a member for each message; keeps the stream pins."""

    def __init__(self, policy: str | Policy = Policy.P2C, rng: Sampler | None = None,
                 pin_default_stream: bool = False) -> None:
        self.policy = Policy.parse(policy)
        self.rng: Sampler = rng or _Fallback()
        self.pin_default_stream = pin_default_stream
        self._next = 0
        self._pins: dict[int, Hashable] = {}

    def __repr__(self) -> str:
        return f"<Balancer {self.policy.value} pins={len(self._pins)}>"

    @property
    def pins(self) -> dict[int, Hashable]:
        """stream -> member key (a copy)."""
        return dict(self._pins)

    def pick(self, healthy: Sequence[MemberLoad], stream: int = 0) -> Hashable | None:
        """The key of the member to use for a message on ``stream``; None if no member is
        healthy (the caller waits or fails). A pinned stream keeps its member while it is in
        ``healthy``."""
        if not healthy:
            return None
        pinned = stream != 0 or self.pin_default_stream
        if pinned:
            key = self._pins.get(stream)
            if key is not None and any(m.key == key for m in healthy):
                return key
        key = self._choose(healthy)
        if pinned:
            self._pins[stream] = key
        return key

    def unpin(self, key: Hashable) -> None:
        """A member left (ejected, given up, removed): its streams get new members."""
        for stream in [s for s, k in self._pins.items() if k == key]:
            del self._pins[stream]

    def _choose(self, healthy: Sequence[MemberLoad]) -> Hashable:
        if self.policy is Policy.PICK_FIRST or len(healthy) == 1:
            return healthy[0].key
        if self.policy is Policy.ROUND_ROBIN:
            self._next = (self._next + 1) % len(healthy)
            return healthy[self._next].key
        a, b = self.rng.sample(range(len(healthy)), 2)
        known = [m.rtt for m in healthy if m.rtt is not None]
        default_rtt = sum(known) / len(known) if known else 1.0
        ma, mb = healthy[a], healthy[b]
        la = (ma.inflight + 1) * (ma.rtt if ma.rtt is not None else default_rtt)
        lb = (mb.inflight + 1) * (mb.rtt if mb.rtt is not None else default_rtt)
        return ma.key if la <= lb else mb.key


class RetryBudget:
    """At most ``ratio`` retries per message sent, plus ``per_second`` per second (banked
    for at most ``window`` seconds). Starts with one second's worth."""

    def __init__(self, ratio: float = 0.2, per_second: float = 10.0, window: float = 10.0,
                 now: float = 0.0) -> None:
        if ratio < 0 or per_second < 0 or window <= 0:
            raise ValueError("retry budget: ratio and per_second must be >= 0, window > 0")
        self.ratio = ratio
        self.per_second = per_second
        self.window = window
        self._deposits = 0.0  # earned by traffic
        self._time = per_second  # earned by time, at most per_second * window
        self._last = now
        #: retries granted and refused so far
        self.granted = 0
        self.refused = 0

    def deposit(self, n: int = 1) -> None:
        """``n`` messages were sent (first attempts)."""
        self._deposits += self.ratio * n

    def balance(self, now: float) -> float:
        """Retries that may go now."""
        self._refill(now)
        return self._deposits + self._time

    def try_withdraw(self, now: float, n: int = 1) -> int:
        """Take up to ``n`` retries from the budget; returns how many were granted."""
        self._refill(now)
        granted = min(n, int(self._deposits + self._time))
        take = float(granted)
        from_time = min(take, self._time)
        self._time -= from_time
        self._deposits -= take - from_time
        self.granted += granted
        self.refused += n - granted
        return granted

    def _refill(self, now: float) -> None:
        if now > self._last:
            cap = self.per_second * self.window
            self._time = min(cap, self._time + (now - self._last) * self.per_second)
            self._last = now
