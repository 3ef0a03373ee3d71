"""The balancer's policies and pins, and the retry budget: pure, with an injected Random."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from objtransport.sansio.balancer import Balancer, MemberLoad, Policy, RetryBudget

THREE = [MemberLoad("a"), MemberLoad("b"), MemberLoad("c")]


def test_round_robin_takes_each_member_in_turn() -> None:
    b = Balancer("round_robin")
    picks = Counter(b.pick(THREE) for _ in range(300))
    assert picks == {"a": 100, "b": 100, "c": 100}


def test_pick_first_takes_the_first_healthy_one() -> None:
    b = Balancer(Policy.PICK_FIRST)
    assert {b.pick(THREE) for _ in range(10)} == {"a"}
    assert b.pick(THREE[1:]) == "b"
    assert b.pick([]) is None


def test_p2c_prefers_the_less_loaded_of_two() -> None:
    b = Balancer("p2c", random.Random(7))
    loads = [MemberLoad("idle", 0, 0.001), MemberLoad("busy", 1_000_000, 0.001),
             MemberLoad("slow", 0, 0.5)]
    picks = Counter(b.pick(loads) for _ in range(3000))
    # "idle" wins every draw it is in (2/3 of them); "busy" never beats it nor "slow"
    # (load 1e6 * 1 ms = 1000 against 1 * 500 ms = 0.5)
    assert picks["busy"] == 0
    assert 1800 < picks["idle"] < 2200
    assert picks["slow"] == 3000 - picks["idle"]


def test_p2c_with_unknown_rtt_uses_the_mean_of_the_known() -> None:
    b = Balancer("p2c", random.Random(1))
    loads = [MemberLoad("x", 10), MemberLoad("y", 0, 0.01)]
    assert {b.pick(loads) for _ in range(50)} == {"y"}


def test_a_stream_is_pinned_while_its_member_is_healthy() -> None:
    b = Balancer("round_robin")
    first = b.pick(THREE, stream=5)
    assert {b.pick(THREE, stream=5) for _ in range(20)} == {first}
    rest = [m for m in THREE if m.key != first]
    moved = b.pick(rest, stream=5)  # the member is ejected: the stream moves...
    assert moved != first
    assert b.pick(THREE, stream=5) == moved  # ...and stays on its new member
    b.unpin(moved)
    assert b.pins == {}
    # stream 0 is balanced message by message unless pinned too
    assert len({b.pick(THREE) for _ in range(3)}) == 3
    pinned = Balancer("round_robin", pin_default_stream=True)
    assert len({pinned.pick(THREE) for _ in range(3)}) == 1


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        Balancer("random")


def test_retry_budget_is_a_share_of_traffic_plus_a_rate() -> None:
    budget = RetryBudget(0.2, 10.0, window=10.0, now=0.0)
    assert budget.try_withdraw(0.0, 100) == 10  # one second's worth to start with
    assert budget.try_withdraw(0.0, 1) == 0
    budget.deposit(1000)  # 1000 messages sent: 200 retries
    assert budget.try_withdraw(0.0, 500) == 200
    assert budget.try_withdraw(0.5, 100) == 5  # half a second: 5 more
    assert budget.try_withdraw(1000.0, 1000) == 100  # at most 10 s banked
    assert budget.granted == 315 and budget.refused == 90 + 1 + 300 + 95 + 900
