"""The breaker's open time grows while it keeps re-opening (issue 12, item 13): no event
loop, the clock walked by hand, the jitter from a seeded Random."""

from __future__ import annotations

import random

import pytest

from objtransport.config import Options
from objtransport.sansio.backoff import backoff_delays
from objtransport.sansio.breaker import BreakerState, CircuitBreaker


def _reopen(b: CircuitBreaker, now: float) -> float:
    """Walk to the end of the open time, let a probe out, fail it; return the new now."""
    now += b.retry_after(now)
    assert b.allow(now) and b.state is BreakerState.HALF_OPEN
    b.record_failure(now)
    assert b.state is BreakerState.OPEN
    return now


def test_open_time_doubles_per_reopen_up_to_the_cap_then_starts_over_when_closed() -> None:
    b = CircuitBreaker(1, 1.0, max_reset_timeout=10.0)
    now = 0.0
    b.record_failure(now)
    opens = [b.open_for]
    for _ in range(6):
        now = _reopen(b, now)
        opens.append(b.open_for)
    assert opens == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert not b.allow(now + 9.99) and b.allow(now + 10.0)  # half open: the probe
    b.record_success(now + 10.0)
    assert b.state is BreakerState.CLOSED and b.reopens == 0
    b.record_failure(now + 11.0)
    assert b.open_for == 1.0


def test_jitter_keeps_open_times_within_reset_timeout_and_the_cap() -> None:
    rng = random.Random(7)
    b = CircuitBreaker(1, 1.0, max_reset_timeout=30.0, rng=rng)
    now = 0.0
    b.record_failure(now)
    assert b.open_for == 1.0  # the first open time is exact
    seen = []
    for n in range(1, 12):
        now = _reopen(b, now)
        nominal = min(30.0, 2.0 ** n)
        assert max(1.0, nominal / 2) <= b.open_for <= nominal
        seen.append(b.open_for)
    assert len(set(seen)) == len(seen)  # jittered: no two alike
    again = CircuitBreaker(1, 1.0, max_reset_timeout=30.0, rng=random.Random(7))
    now = 0.0
    again.record_failure(now)
    replay = []
    for _ in range(11):
        now = _reopen(again, now)
        replay.append(again.open_for)
    assert replay == seen  # the injected Random decides


def test_without_max_reset_timeout_the_open_time_stays_as_before() -> None:
    b = CircuitBreaker(2, 30.0, rng=random.Random(1))
    b.record_failure(0.0)
    b.record_failure(0.0)
    now = 0.0
    for _ in range(5):
        now = _reopen(b, now)
        assert b.open_for == 30.0
    assert b.next_deadline() == now + 30.0


def test_options_keep_the_original_defaults_and_accept_none_for_ever() -> None:
    o = Options()
    assert (o.max_reconnect_attempts, o.reset_timeout, o.reconnect_interval) == (5, 30.0, 1.0)
    assert o.reconnect_deadline is None and o.max_reset_timeout is None
    forever = o.with_overrides(max_reconnect_attempts=None, reconnect_deadline=120.0)
    assert forever.max_reconnect_attempts is None and forever.reconnect_deadline == 120.0
    assert o.with_overrides(ssl=None) is o  # None still means "not given" elsewhere
    with pytest.raises(ValueError):
        o.with_overrides(reconnect_deadline=0.0)
    with pytest.raises(ValueError):
        o.with_overrides(max_reset_timeout=1.0)  # below reset_timeout
    delays = backoff_delays(1.0, 2.0, 4.0, None)
    assert [next(delays) for _ in range(100)][-1] == 4.0  # never runs out
