"""Many items' far deadlines in coarse time buckets (:class:`TimerWheel`); pure: time is an
argument.

An idle stream link's keepalive deadline moves later every round. A loop timer per link
re-armed each time makes three objects for the garbage collector per link per round (the
``TimerHandle``, its arguments' context copy and the bound method) that live a whole round:
they reach the oldest generation and bring its next full collection nearer (docs/design.md,
"Keepalive without garbage"). Here an item is filed under the bucket of its deadline
(``resolution`` s wide, the deadline rounded up: never early, at most ``resolution`` late);
its deadline moving later is a number written (:meth:`file`), and the bucket, when it comes,
files it again under its new deadline. Only a deadline moving *earlier* than its bucket moves
it, at once, to the earlier bucket (the one it leaves loses it in O(1): a swap with its last
item). Nothing is made per item and round: the buckets are lists shared by every item due in
them, their keys and the deadlines plain numbers, and the lists of buckets that came are
kept for reuse (up to :data:`SPARES`).

Every item filed is in exactly one bucket; :meth:`drop` takes it out (a closed link is not
kept by the wheel). The owner arms one timer for :meth:`next_at` and calls :meth:`pop_due`
when it fires; ``on_earlier`` tells it when a new bucket comes before all others.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from math import ceil, floor
from typing import Generic, TypeVar

__all__ = ["RESOLUTION", "SPARES", "TimerWheel"]

#: the width of a bucket, s (a power of two: ``key * RESOLUTION`` is exact)
RESOLUTION = 1 / 64
#: emptied bucket lists kept for reuse
SPARES = 64

_NEVER = float("inf")

T = TypeVar("T")  # hashable (a link: by identity)


class TimerWheel(Generic[T]):
    """Items (hashable, compared by identity in practice) filed under coarse buckets of their
    deadlines."""

    __slots__ = ("resolution", "_per_s", "_buckets", "_keys", "_slot", "_pos", "_due",
                 "_spare", "on_earlier")

    def __init__(self, resolution: float = RESOLUTION,
                 on_earlier: Callable[[float], None] | None = None) -> None:
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0, not {resolution!r}")
        self.resolution = resolution
        self._per_s = 1 / resolution
        self._buckets: dict[int, list[T]] = {}  # bucket key -> the items filed under it
        self._keys: list[int] = []  # a heap of the buckets' keys (the same keys)
        self._slot: dict[T, int] = {}  # item -> the key of its bucket
        self._pos: dict[T, int] = {}  # item -> its index in its bucket
        self._due: dict[T, float] = {}  # item -> its deadline (its bucket's or later)
        self._spare: list[list[T]] = []
        #: called with a bucket's time when it is made and comes before every other one
        self.on_earlier = on_earlier

    def __len__(self) -> int:
        """Items filed."""
        return len(self._slot)

    def __contains__(self, item: object) -> bool:
        return item in self._slot

    @property
    def spare_lists(self) -> int:
        """Emptied bucket lists kept for reuse (at most ``SPARES``)."""
        return len(self._spare)

    @property
    def buckets(self) -> int:
        """Buckets waiting (their lists; some may have been emptied by :meth:`drop`)."""
        return len(self._buckets)

    def deadline(self, item: T) -> float | None:
        """The deadline ``item`` is filed for (None: not filed)."""
        return self._due.get(item)

    def next_at(self) -> float | None:
        """When the earliest bucket comes (None: no bucket)."""
        return self._keys[0] * self.resolution if self._keys else None

    def file(self, item: T, deadline: float) -> None:
        """``item`` is due at ``deadline`` (and no earlier). A deadline later than its
        bucket is only written down; an earlier one moves it. A deadline of infinity (or
        too far for a bucket: ``keepalive_interval=inf``, say) never comes: the item is
        dropped."""
        scaled = deadline * self._per_s
        if scaled == _NEVER:
            self.drop(item)
            return
        self._due[item] = deadline
        key = ceil(scaled)
        old = self._slot.get(item)
        if old is not None:
            if old <= key:
                return  # its bucket comes first and files it again then
            self._unlink(item, old)
        self._link(item, key)

    def drop(self, item: T) -> None:
        """Forget ``item`` (filed or not)."""
        key = self._slot.get(item)
        if key is not None:
            self._unlink(item, key)
            del self._due[item]

    def pop_due(self, now: float) -> list[T]:
        """Take out the items whose deadline is ``now`` or before; the other items of the
        buckets that came are filed again under their deadlines."""
        keys = self._keys
        buckets = self._buckets
        slot = self._slot
        pos = self._pos
        due = self._due
        limit = floor(now * self._per_s)
        out: list[T] = []
        while keys and keys[0] <= limit:
            bucket = buckets.pop(heappop(keys))
            for item in bucket:
                del slot[item]
                del pos[item]
                at = due[item]
                if at <= now:
                    del due[item]
                    out.append(item)
                else:  # its deadline moved later: its own bucket (after limit, as at > now)
                    self._link(item, ceil(at * self._per_s))
            bucket.clear()
            if len(self._spare) < SPARES:
                self._spare.append(bucket)
        return out

    def clear(self) -> None:
        """Forget every item."""
        self._buckets.clear()
        self._keys.clear()
        self._slot.clear()
        self._pos.clear()
        self._due.clear()

    def _link(self, item: T, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._spare.pop() if self._spare else []
            self._buckets[key] = bucket
            keys = self._keys
            heappush(keys, key)
            if keys[0] == key and self.on_earlier is not None:
                self.on_earlier(key * self.resolution)
        self._slot[item] = key
        self._pos[item] = len(bucket)
        bucket.append(item)

    def _unlink(self, item: T, key: int) -> None:
        """Take ``item`` out of bucket ``key`` (its last item takes its place)."""
        bucket = self._buckets[key]
        i = self._pos.pop(item)
        del self._slot[item]
        last = bucket.pop()
        if last is not item:
            bucket[i] = last
            self._pos[last] = i
