"""The wheel of far deadlines (sansio/timer_wheel.py), a pure unit: time is an argument.

An item is never due before its deadline and at most one bucket after it; a deadline moving
later is written down (no bucket made, no object), one moving earlier moves the item at once;
a dropped item is not kept; nothing grows over many rounds.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from objtransport.sansio.timer_wheel import RESOLUTION, SPARES, TimerWheel

R = RESOLUTION


class Item:
    """An item as a link is one: hashable by identity, weakly referenceable."""

    __slots__ = ("name", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_an_item_is_due_at_its_deadline_never_before_and_at_most_a_bucket_after() -> None:
    w: TimerWheel[Item] = TimerWheel()
    a, b = Item("a"), Item("b")
    w.file(a, 10.001)
    w.file(b, 10.0)  # on a bucket's edge: due in that very bucket
    assert w.next_at() == 10.0
    assert w.pop_due(9.999) == []
    assert w.pop_due(10.0) == [b]
    assert w.pop_due(10.0009) == []  # a's bucket has not come
    at = w.next_at()
    assert at is not None and 10.001 <= at <= 10.001 + R
    assert w.pop_due(at) == [a]
    assert len(w) == 0 and w.next_at() is None and w.buckets == 0


def test_a_deadline_moving_later_is_written_and_the_bucket_files_it_again() -> None:
    """The idle link's round: its bucket made once, every later deadline a number; when
    the bucket comes the item goes to its deadline's bucket, and is due only then."""
    earlier: list[float] = []
    w: TimerWheel[Item] = TimerWheel(on_earlier=earlier.append)
    a = Item("a")
    w.file(a, 15.0)
    assert earlier == [15.0] and w.buckets == 1
    for later in (15.5, 20.0, 30.0):
        w.file(a, later)
        assert w.buckets == 1 and earlier == [15.0]  # nothing made, no re-arm
    assert w.deadline(a) == 30.0
    assert w.pop_due(15.0) == []  # its bucket came: filed again under 30.0
    assert a in w and w.next_at() == 30.0 and earlier == [15.0, 30.0]
    assert w.pop_due(29.99) == []
    assert w.pop_due(30.0) == [a] and a not in w


def test_a_deadline_moving_earlier_moves_the_item_at_once() -> None:
    earlier: list[float] = []
    w: TimerWheel[Item] = TimerWheel(on_earlier=earlier.append)
    a, b = Item("a"), Item("b")
    w.file(a, 20.0)
    w.file(b, 20.0)
    w.file(a, 12.0)  # e.g. a frame began: its deadline comes first
    assert earlier == [20.0, 12.0]
    w.file(a, 12.0 + R / 4)  # the same bucket: stays
    assert earlier == [20.0, 12.0]
    assert w.pop_due(12.0) == []  # never early
    assert w.pop_due(12.0 + R) == [a]
    assert w.pop_due(20.0) == [b]  # a's old bucket held only b any more


def test_a_deadline_already_past_is_due_at_the_next_pop() -> None:
    earlier: list[float] = []
    w: TimerWheel[Item] = TimerWheel(on_earlier=earlier.append)
    a = Item("a")
    w.file(a, 5.0)
    assert w.pop_due(7.3) == [a]
    assert earlier == [5.0]  # the owner arms for 5.0: its timer fires at once


def test_a_dropped_item_is_neither_due_nor_kept() -> None:
    """Dropping one of a bucket's items (the last takes its place) leaves the others due;
    the wheel keeps no reference to a dropped item."""
    w: TimerWheel[Item] = TimerWheel()
    items = [Item(str(i)) for i in range(5)]
    for it in items:
        w.file(it, 3.0)
    gone = items.pop(1)
    ref = weakref.ref(gone)
    w.drop(gone)
    w.drop(gone)  # twice: nothing
    w.drop(Item("never filed"))
    del gone
    gc.collect()
    assert ref() is None
    assert len(w) == 4
    assert sorted(w.pop_due(3.0), key=lambda i: i.name) == items


def test_items_far_apart_come_in_order_and_buckets_do_not_pile_up() -> None:
    """1,000 items over 15 s, 20 rounds of each moving 15 s later (the keepalive round):
    each pop returns exactly the items whose deadline passed; the buckets waiting stay at
    most those of one round, the spare lists at most SPARES."""
    w: TimerWheel[Item] = TimerWheel()
    n, interval = 1000, 15.0
    items = [Item(str(i)) for i in range(n)]
    wanted = {it: 100.0 + interval * i / n for i, it in enumerate(items)}
    for it, d in wanted.items():
        w.file(it, d)
    peak = w.buckets
    assert peak <= interval / R + 1
    now = 100.0
    while now < 100.0 + 20 * interval:
        now += 0.1
        due = w.pop_due(now)
        assert all(wanted[it] <= now for it in due)
        for it in due:
            assert wanted[it] > now - 0.1 - R  # at most a bucket (and the step) late
            wanted[it] += interval
            w.file(it, wanted[it])
        assert w.buckets <= peak + 1
    assert len(w) == n
    assert all(w.deadline(it) == wanted[it] for it in items)


def test_a_round_of_idle_items_makes_no_object_for_the_collector() -> None:
    """Each of 2,000 items moves later 5 times and its bucket comes 5 times: the objects
    the collector tracks that were made meanwhile and are still alive are the buckets'
    lists only, shared by the items due together (a loop timer per item made three, each
    kept a whole round)."""
    w: TimerWheel[Item] = TimerWheel()
    items = [Item(str(i)) for i in range(2000)]
    for i, it in enumerate(items):
        w.file(it, 10.0 + i / 1000)
    w.pop_due(9.0)
    gc.collect()
    gc.freeze()
    try:
        now = 10.0
        for _ in range(5):
            for i, it in enumerate(items):  # a PONG read: the deadline moves later
                w.file(it, now + 4.0 + i / 1000)
            now += 2.0
            for it in w.pop_due(now):
                w.file(it, now + 4.0)
        gc.collect()
        made = len(gc.get_objects())
    finally:
        gc.unfreeze()
    assert made / len(items) < 0.2, made  # ~130 bucket lists for 2,000 items


def test_spare_lists_are_bounded() -> None:
    w: TimerWheel[Item] = TimerWheel()
    items = [Item(str(i)) for i in range(500)]
    for i, it in enumerate(items):
        w.file(it, 1.0 + i * R)  # one bucket each
    assert w.buckets == 500
    assert len(w.pop_due(1000.0)) == 500
    assert w.buckets == 0 and len(w) == 0
    assert w.spare_lists == SPARES
    w.clear()
    assert w.next_at() is None


def test_a_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution"):
        TimerWheel(0.0)


def test_a_deadline_that_never_comes_is_not_filed_and_takes_a_filed_item_out() -> None:
    """``keepalive_interval=inf`` (accepted by Options) gives a deadline of infinity, and a
    finite one can be too far for a bucket key: neither raises nor makes a bucket; an item
    filed before is taken out (its earlier deadline is gone), and can be filed again."""
    w: TimerWheel[Item] = TimerWheel()
    a, b = Item("a"), Item("b")
    w.file(a, float("inf"))
    w.file(b, 1e308)  # finite, but beyond every bucket key (1e308 * 64 overflows)
    assert len(w) == 0 and w.buckets == 0 and w.next_at() is None
    w.file(a, 5.0)
    w.file(a, float("inf"))
    assert a not in w and w.deadline(a) is None
    assert w.pop_due(1e9) == []
    w.file(a, 6.0)
    assert w.pop_due(6.0) == [a]
