"""Backoff, breaker, token bucket, latency histogram, pool bookkeeping: pure, virtual time."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.backoff import BackoffPolicy, backoff_delays
from objtransport.sansio.breaker import BreakerState, CircuitBreaker
from objtransport.sansio.metrics import Ewma, LatencyHistogram
from objtransport.sansio.pool import Assign, Open, PoolBookkeeper, Wait
from objtransport.sansio.throttle import TokenBucket

# -- backoff -------------------------------------------------------------------------------


def test_backoff_exponential_capped_and_bounded() -> None:
    assert list(backoff_delays(1.0, 2.0, 5.0, 5)) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert list(backoff_delays(1.0, max_attempts=0)) == []


def test_backoff_jitter_is_deterministic_with_a_seed() -> None:
    a = list(backoff_delays(1.0, 2.0, 30.0, 6, random.Random(7)))
    b = list(backoff_delays(1.0, 2.0, 30.0, 6, random.Random(7)))
    assert a == b and a != list(backoff_delays(1.0, 2.0, 30.0, 6))
    assert BackoffPolicy(1.0, jitter=False).delays(random.Random(1)).__next__() == 1.0


@given(st.floats(0.001, 10), st.floats(1, 4), st.floats(0.01, 60), st.integers(0, 20),
       st.integers(0, 1000))
def test_backoff_jitter_within_bounds(initial: float, mult: float, cap: float, n: int,
                                      seed: int) -> None:
    plain = list(backoff_delays(initial, mult, cap, n))
    jittered = list(backoff_delays(initial, mult, cap, n, random.Random(seed)))
    assert len(jittered) == n
    assert all(0 <= j <= p <= cap for j, p in zip(jittered, plain, strict=True))


def test_backoff_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        next(backoff_delays(1.0, 0.5))

# -- breaker -------------------------------------------------------------------------------


def test_breaker_full_cycle_with_callbacks() -> None:
    seen: list[tuple[str, str, float]] = []
    b = CircuitBreaker(3, 10.0, 1, lambda o, n, t: seen.append((o.value, n.value, t)))
    for t in (1.0, 2.0):
        b.record_failure(t)
    assert b.state is BreakerState.CLOSED and b.allow(2.0)
    b.record_failure(3.0)
    assert b.state is BreakerState.OPEN
    assert not b.allow(12.9) and b.retry_after(12.9) == pytest.approx(0.1)
    assert b.next_deadline() == 13.0
    assert b.allow(13.0)  # the probe
    assert b.state is BreakerState.HALF_OPEN and not b.allow(13.0)
    b.record_failure(14.0)  # probe failed: open again
    assert b.state is BreakerState.OPEN and not b.allow(23.9)
    assert b.allow(24.0)
    b.record_success(24.5)
    assert b.state is BreakerState.CLOSED
    snap = b.snapshot()
    assert (snap.state, snap.failure_count, snap.last_failure) == ("closed", 0, 14.0)
    assert seen == [("closed", "open", 3.0), ("open", "half_open", 13.0),
                    ("half_open", "open", 14.0), ("open", "half_open", 24.0),
                    ("half_open", "closed", 24.5)]


def test_breaker_success_resets_consecutive_failures() -> None:
    b = CircuitBreaker(2, 1.0)
    b.record_failure(0)
    b.record_success(0)
    b.record_failure(0)
    assert b.state is BreakerState.CLOSED and b.snapshot().success_count == 1


def test_breaker_probe_release() -> None:
    b = CircuitBreaker(1, 1.0, half_open_max_probes=2)
    b.record_failure(0)
    assert b.allow(1) and b.allow(1) and not b.allow(1)
    b.release_probe()
    assert b.allow(1)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(0, 5)),
                max_size=60))
def test_breaker_invariants(ops: list[tuple[str, float]]) -> None:
    b = CircuitBreaker(3, 2.0)
    now = 0.0
    for op, dt in ops:
        now += dt
        state = b.state
        if op == "allow":
            allowed = b.allow(now)
            if state is BreakerState.CLOSED:
                assert allowed
            if state is BreakerState.OPEN and b.state is BreakerState.OPEN:
                assert not allowed and b.retry_after(now) > 0
        elif op == "ok":
            b.record_success(now)
        else:
            b.record_failure(now)
        assert b.failure_count >= 0

# -- token bucket --------------------------------------------------------------------------


def test_bucket_rate_over_a_long_virtual_run() -> None:
    bucket = TokenBucket(rate=1_000_000, burst=64 * 1024, now=0.0)
    now, sent = 0.0, 0
    for _ in range(100_000):
        if now >= 10.0:
            break
        if bucket.try_acquire(1024, now):
            sent += 1024
        else:
            now += bucket.time_until(1024, now)
    assert sent / now == pytest.approx(1_000_000 + 64 * 1024 / 10, rel=0.01)


def test_bucket_burst_and_debt() -> None:
    b = TokenBucket(100.0, 50.0, 0.0)
    assert b.try_acquire(50, 0.0) and not b.try_acquire(1, 0.0)
    assert b.time_until(10, 0.0) == pytest.approx(0.1)
    assert b.tokens(100.0) == 50.0  # never more than burst
    assert b.try_acquire(500, 100.0)  # larger than burst: allowed when full, goes in debt
    assert b.tokens(100.0) == -450.0 and b.time_until(1, 100.0) == pytest.approx(4.51)


def test_bucket_set_rate() -> None:
    b = TokenBucket(100.0, 100.0, 0.0)
    b.set_rate(10.0, 5.0, 0.0)
    assert b.tokens(0.0) == 5.0 and b.rate == 10.0 and b.burst == 5.0
    with pytest.raises(ValueError):
        b.set_rate(0, 1, 0)


@given(st.lists(st.tuples(st.integers(1, 5000), st.floats(0, 0.1)), max_size=100))
def test_bucket_never_exceeds_rate_plus_burst(reqs: list[tuple[int, float]]) -> None:
    b = TokenBucket(10_000.0, 2_000.0, 0.0)
    now, granted = 0.0, 0
    for n, dt in reqs:
        now += dt
        if b.try_acquire(min(n, 2000), now):
            granted += min(n, 2000)
    assert granted <= 2_000 + 10_000 * now + 1e-6

# -- metrics -------------------------------------------------------------------------------


def test_histogram_percentiles_and_mean() -> None:
    h = LatencyHistogram()
    assert h.percentile(50) == 0.0 and h.mean == 0.0
    for i in range(1, 1001):
        h.record(i / 1e6)  # 1 µs .. 1 ms
    assert h.count == 1000 and h.mean == pytest.approx(500.5e-6)
    assert h.percentile(50) == pytest.approx(500e-6, rel=0.05)
    assert h.percentile(99) == pytest.approx(990e-6, rel=0.05)
    assert h.percentile(100) == pytest.approx(1e-3, rel=0.05)
    other = LatencyHistogram()
    other.record(1.0)
    h.merge(other)
    assert h.max == 1.0 and h.count == 1001
    h.reset()
    assert h.count == 0


def test_ewma() -> None:
    e = Ewma(0.5)
    assert e.value is None
    assert e.update(10) == 10 and e.update(20) == 15

# -- pool ----------------------------------------------------------------------------------


def test_pool_never_opens_more_than_size() -> None:
    p = PoolBookkeeper(10, 60.0)
    actions = [p.checkout(100, 0.0) for _ in range(500)]
    assert sum(isinstance(a, Open) for a in actions) == 10
    assert isinstance(actions[-1], Wait)
    p.opened(1, 101, 0.0)
    assert p.checkout(100, 0.0) == Assign(101)
    assert "ready=[101:100B]" in repr(p) and "opening=9" in repr(p)


def test_pool_least_in_flight_and_idle_expiry() -> None:
    p = PoolBookkeeper(2, 5.0)
    assert p.checkout(1000, 0.0) == Open(1)
    p.opened(1, 1, 0.0)
    assert p.checkout(0, 1.0) == Assign(1)  # idle: used first
    p.release(1, 0, 1.0)
    assert p.checkout(1000, 1.0) == Assign(1)
    assert p.checkout(10, 1.0) == Open(2)  # all busy, room left: grow
    p.opened(2, 2, 1.0)
    assert p.checkout(10, 1.0) == Assign(2)
    assert p.checkout(10, 1.0) == Assign(2)  # both busy, full: least bytes in flight
    p.release(1, 1000, 2.0)
    p.release(2, 20, 3.0)
    assert p.next_deadline() == 7.0
    assert p.expire_idle(6.9) == []
    assert p.expire_idle(7.0) == [1]
    assert p.expire_idle(8.0) == [2] and len(p) == 0


def test_pool_failures_free_slots() -> None:
    p = PoolBookkeeper(1, 5.0)
    assert p.checkout(1, 0.0) == Open(1)
    assert p.checkout(1, 0.0) == Wait()
    p.open_failed(1)
    assert p.checkout(1, 0.0) == Open(2)
    p.opened(2, 7, 0.0)
    p.remove(7)
    p.remove(7)
    assert len(p) == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["out", "open", "fail", "rel", "rm"]),
                          st.integers(0, 5)), max_size=80))
def test_pool_invariants(ops: list[tuple[str, int]]) -> None:
    p = PoolBookkeeper(3, 1.0)
    opening: list[int] = []
    ready: list[int] = []
    next_id = 100
    for op, k in ops:
        if op == "out":
            a = p.checkout(k, 0.0)
            if isinstance(a, Open):
                opening.append(a.slot)
        elif op == "open" and opening:
            p.opened(opening.pop(0), next_id, 0.0)
            ready.append(next_id)
            next_id += 1
        elif op == "fail" and opening:
            p.open_failed(opening.pop())
        elif op == "rel" and ready:
            p.release(ready[k % len(ready)], k, 0.0)
        elif op == "rm" and ready:
            p.remove(ready.pop(k % len(ready)))
        assert len(p) <= 3
        assert all(p.in_flight(c) >= 0 for c in p.ready_ids)
