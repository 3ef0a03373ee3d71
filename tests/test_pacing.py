"""The send limiter's arithmetic (drivers/pacing.py ``Pacer`` over sansio ``TokenBucket``s),
with virtual time: no socket, no clock, no sleep.

A simulated writer does what the drivers do: ask ``allowance(now)``, write that much (at most
a socket's worth per turn), or wait ``delay(now)``; its timers fire late, as a loaded
machine's do (rounded up to the millisecond, plus up to 3 ms). Over sockets, tests/test_qos.py
checks the ceiling at these rates and the full rate at 1 MiB/s.
"""

from __future__ import annotations

import random

import pytest

from objtransport.drivers.pacing import MIN_GRANT, Pacer, default_burst
from objtransport.sansio.throttle import TokenBucket

MiB = 1024 * 1024


def _run(rate: float, burst: float, seconds: float, seed: int,
         turn_cost: float = 20e-6, turn_bytes: int = 256 * 1024,
         ) -> list[tuple[float, int]]:
    """(time, bytes written in all) after each write of a writer that always has data."""
    rng = random.Random(seed)
    pacer = Pacer([TokenBucket(rate, burst, 0.0)])
    now, total = 0.0, 0
    log = [(0.0, 0)]
    while now < seconds:
        allowed = pacer.allowance(now)
        if allowed <= 0:
            wake = now + pacer.delay(now)
            wake = -(-wake * 1000 // 1) / 1000 + rng.uniform(0.0, 0.003)  # late timer
            now = max(wake, now)
            continue
        n = min(int(allowed), turn_bytes)
        pacer.consume(n, now)
        total += n
        now += turn_cost  # a write costs CPU time
        log.append((now, total))
    return log


@pytest.mark.parametrize("rate", [1 * MiB, 50 * MiB, 500 * MiB])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_timers_still_get_the_full_rate_and_never_more(rate: float, seed: int) -> None:
    burst = default_burst(rate)
    seconds = 5.0
    log = _run(rate, burst, seconds, seed)
    end, total = log[-1]
    # the rate is reached: what a late timer delays, the bucket saved up meanwhile
    assert total >= 0.99 * rate * end - burst, total / (rate * end)
    # and never exceeded: any span carries at most rate * span + burst (+ one grant)
    j = 0
    for i, (t, n) in enumerate(log):
        while log[j][0] < t - 0.05:
            j += 1
        for k in (j, max(0, i - 1)):
            t0, n0 = log[k]
            assert n - n0 <= rate * (t - t0) + burst + MIN_GRANT + 1e-6, (t0, t)


def test_a_writer_slower_than_the_limit_never_waits() -> None:
    """A sender the CPU holds back below the limit is not held back by the limiter too."""
    rate = 50 * MiB
    pacer = Pacer([TokenBucket(rate, default_burst(rate), 0.0)])
    now = 0.0
    for _ in range(10_000):  # 16 KiB per ms: 16 MiB/s
        assert pacer.allowance(now) > 0
        pacer.consume(16 * 1024, now)
        now += 0.001
    assert pacer.waited == 0.0


def test_every_bucket_applies_the_lowest_rate_wins() -> None:
    """A connection's own limit and the service's (or its pool's) both apply."""
    own, shared = TokenBucket(10 * MiB, MiB, 0.0), TokenBucket(2 * MiB, 256 * 1024, 0.0)
    pacer = Pacer([own, shared])
    now, total = 0.0, 0
    while now < 2.0:
        allowed = pacer.allowance(now)
        if allowed <= 0:
            now += pacer.delay(now)
            continue
        pacer.consume(int(allowed), now)
        total += int(allowed)
    assert 2 * MiB * 2.0 <= total <= 2 * MiB * 2.0 + 256 * 1024 + MIN_GRANT
    assert pacer.waited > 0
