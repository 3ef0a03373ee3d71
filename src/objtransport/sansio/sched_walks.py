"""The parts of :class:`~.scheduler.PriorityScheduler` off the per-message path: its
priority classes, made by the first large item and let go once none is queued, and the
walks over the whole queue (clearing it, taking out messages given up by their ttl, the
observers' figures)."""

from __future__ import annotations

from collections import deque

from .fragmentation import FragmentJob
from .sched_queues import NO_CLASSES, Classes, Item, PriorityClass, cut_data, item_size

__all__ = ["NONE_BLOCKED", "QueueWalks"]

#: the ``blocked`` of every scheduler without a pending large item (a set costs 216 bytes)
NONE_BLOCKED: frozenset[tuple[int, int]] = frozenset()


class QueueWalks:
    """The base of :class:`~.scheduler.PriorityScheduler` (which holds the state)."""

    # the queues' state (the scheduler sets it up)
    __slots__ = ("classes", "small", "pending_bytes", "blocked", "_items")

    classes: Classes | None
    small: list[bytearray]
    pending_bytes: int
    blocked: set[tuple[int, int]] | frozenset[tuple[int, int]]
    _items: int

    @property
    def classes_made(self) -> bool:
        """Whether the per-priority queues of large items exist (between the first large
        item queued and the moment the last queued one left)."""
        return self.classes is not None

    def _made(self) -> Classes:
        classes = self.classes
        assert classes is not None, "a large item is queued"
        return classes

    def _unblock(self, prio: int, stream: int) -> None:
        blocked = self.blocked
        if isinstance(blocked, set):
            blocked.discard((prio, stream))
            if not blocked:
                self.blocked = NONE_BLOCKED

    def _release(self) -> None:
        """Nothing large and nothing sealed is queued any more: let the classes go (an
        idle connection holds none)."""
        classes = self.classes
        if classes is not None and not self._items and not any(c.sealed for c in classes):
            self.classes = None

    def clear(self, keep_control: bool = False) -> list[Item]:
        """Drop everything queued (but control frames, if ``keep_control``) and return it."""
        dropped: list[Item] = []
        classes = self.classes
        for p in range(1 if keep_control else 0, 4):
            if classes is not None:
                cls = classes[p]
                dropped.extend(cls.sealed)
                for q in cls.streams.values():
                    dropped.extend(q)
            if self.small[p]:
                dropped.append(self.small[p])
                self.small[p] = bytearray()
        self.blocked = {b for b in self.blocked if keep_control and b[0] == 0} or NONE_BLOCKED
        self.pending_bytes = len(self.small[0]) if keep_control else 0
        self._items = 0
        self.classes = None
        if keep_control and classes is not None and (classes[0].sealed or classes[0].rr):
            c0 = classes[0]  # the control class stays as it is
            self.classes = (c0, PriorityClass(), PriorityClass(), PriorityClass())
            self.pending_bytes += (sum(len(b) for b in c0.sealed)
                                   + sum(item_size(i) for q in c0.streams.values() for i in q))
            self._items = sum(len(q) for q in c0.streams.values())
        return dropped

    def drop_data(self, seqs: set[int]) -> set[int]:
        """Remove the queued messages numbered in ``seqs`` of which no byte was taken yet
        (whole DATA frames, large messages not begun); return the numbers removed. Walks
        the whole queue: not for the hot path."""
        found: set[int] = set()
        classes = self.classes
        for p in range(4):
            cls = classes[p] if classes is not None else None
            if cls is not None:
                for i, buf in enumerate(cls.sealed):
                    cut = cut_data(buf, seqs, found)
                    if cut is not None:
                        self.pending_bytes -= len(buf) - len(cut)
                        cls.sealed[i] = cut
                cls.sealed = [b for b in cls.sealed if b]
            cut = cut_data(self.small[p], seqs, found)
            if cut is not None:
                self.pending_bytes -= len(self.small[p]) - len(cut)
                self.small[p] = cut
            if cls is not None:
                for stream in list(cls.streams):
                    self._drop_items(p, stream, seqs, found)
        self._release()
        return found

    def _drop_items(self, prio: int, stream: int, seqs: set[int], found: set[int]) -> None:
        cls = self._made()[prio]
        q = cls.streams[stream]
        kept: deque[Item] = deque()
        for item in q:
            if isinstance(item, FragmentJob):
                if item.seq in seqs and not item.offset:
                    found.add(item.seq)
                    self.pending_bytes -= item.remaining
                    self._items -= 1
                else:
                    kept.append(item)
                continue
            cut = cut_data(b"".join(item) if isinstance(item, tuple) else item, seqs, found)
            if cut is None:
                kept.append(item)
                continue
            self.pending_bytes -= item_size(item) - len(cut)
            if cut:
                kept.append(bytes(cut))
            else:
                self._items -= 1
        if kept:
            cls.streams[stream] = kept
            return
        del cls.streams[stream]
        cls.rr.remove(stream)
        self._unblock(prio, stream)

    # -- observing -------------------------------------------------------------------------
    def queued_items(self) -> list[Item]:
        """What :meth:`clear` would return (control frames included), without dropping it;
        in queue order within each priority. Not for the hot path."""
        out: list[Item] = []
        for cls, buf in zip(self.classes or NO_CLASSES, self.small, strict=True):
            out.extend(cls.sealed)
            for q in cls.streams.values():
                out.extend(q)
            if buf:
                out.append(buf)
        return out

    def queued_by_priority(self) -> list[int]:
        """Bytes queued per priority (control, high, normal, low); not for the hot path."""
        out = []
        for cls, buf in zip(self.classes or NO_CLASSES, self.small, strict=True):
            n = len(buf) + sum(len(b) for b in cls.sealed)
            n += sum(item_size(item) for q in cls.streams.values() for item in q)
            out.append(n)
        return out

