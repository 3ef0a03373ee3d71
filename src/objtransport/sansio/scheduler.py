"""Priority scheduler: what goes on the wire next.

Four classes: control and high are strict (always first, in that order); normal and low share
what is left by byte weights (default 4:1), so neither starves. Items are either encoded
frames (``bytes``) or a :class:`FragmentJob` that yields one fragment per turn, so fragments of
different messages interleave and a small high-priority message never waits behind more than
one fragment of a large one. Within one class, items leave in the order they came.
"""

from __future__ import annotations

from collections import deque

from .fragmentation import FragmentJob

__all__ = ["Chunk", "PriorityScheduler"]

Chunk = bytes | memoryview
#: an encoded frame, a fragment job, or a group of chunks that must leave together
Item = bytes | FragmentJob | tuple[Chunk, ...]


class PriorityScheduler:
    """Queues of frames per priority; :meth:`pop` returns the next chunks to write."""

    __slots__ = ("queues", "pending_bytes", "_jobs", "_groups", "_weights", "_credit", "_quantum")

    def __init__(self, weights: tuple[int, int] = (4, 1), quantum: int = 64 * 1024) -> None:
        if weights[0] < 1 or weights[1] < 1:
            raise ValueError("weights must be >= 1")
        self.queues: tuple[deque[Item], ...] = (deque(), deque(), deque(), deque())
        self.pending_bytes = 0
        self._jobs = 0
        self._groups = 0
        self._weights = weights
        self._quantum = quantum
        self._credit = [weights[0] * quantum, weights[1] * quantum]

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def queued_by_priority(self) -> list[int]:
        """Bytes queued per priority (control, high, normal, low); not for the hot path."""
        out = []
        for q in self.queues:
            n = 0
            for item in q:
                if isinstance(item, FragmentJob):
                    n += item.remaining
                elif isinstance(item, tuple):
                    n += sum(len(c) for c in item)
                else:
                    n += len(item)
            out.append(n)
        return out

    @property
    def only_small(self) -> bool:
        """True when only encoded frames (no fragment jobs, no groups) are queued."""
        return not self._jobs and not self._groups

    def push(self, priority: int, item: Item) -> None:
        """Queue one encoded frame or a fragment job at ``priority`` (0..3)."""
        if isinstance(item, FragmentJob):
            size = item.remaining  # payload bytes; fragment headers are not counted
            self._jobs += 1
        elif isinstance(item, tuple):
            size = sum(len(c) for c in item)
            self._groups += 1
        else:
            size = len(item)
        self.queues[priority].append(item)
        self.pending_bytes += size

    def push_frame(self, priority: int, frame: bytes) -> None:
        """Fast path of :meth:`push` for an encoded frame."""
        self.queues[priority].append(frame)
        n = len(frame)
        self.pending_bytes += n

    def clear(self) -> list[Item]:
        """Drop everything queued and return it (for accounting)."""
        dropped: list[Item] = []
        for q in self.queues:
            dropped.extend(q)
            q.clear()
        self.pending_bytes = 0
        self._jobs = 0
        self._groups = 0
        return dropped

    def pop(self, budget: int) -> list[Chunk]:
        """Take up to about ``budget`` bytes of chunks (at least one item if any is queued)."""
        q0, q1, q2, q3 = self.queues
        if not self._jobs and not self._groups and not q0 and not q1 and not q3:
            # only small normal frames: all of them, one write (no priority to respect)
            out: list[Chunk] = list(q2)  # type: ignore[arg-type]  # only frames queued
            q2.clear()
            self.pending_bytes = 0
            return out
        out = []
        taken = 0
        while taken < budget or not out:
            if q0:
                prio = 0
            elif q1:
                prio = 1
            elif q2 and q3:
                prio = self._pick_weighted()
            elif q2:
                prio = 2
            elif q3:
                prio = 3
            else:
                break
            n = self._take(prio, out)
            taken += n
            if prio >= 2 and q2 and q3:
                self._credit[prio - 2] -= n
        return out

    def _take(self, prio: int, out: list[Chunk]) -> int:
        q = self.queues[prio]
        item = q[0]
        if isinstance(item, FragmentJob):
            header, piece = item.next_chunks()
            out.append(header)
            out.append(piece)
            n = len(piece)
            if item.done:
                q.popleft()
                self._jobs -= 1
            sent = n + len(header)
        elif isinstance(item, tuple):
            q.popleft()
            self._groups -= 1
            out.extend(item)
            sent = n = sum(len(c) for c in item)
        else:
            q.popleft()
            out.append(item)
            sent = n = len(item)
        self.pending_bytes -= n
        return sent

    def _pick_weighted(self) -> int:
        credit = self._credit
        if credit[0] <= 0 and credit[1] <= 0:
            credit[0] += self._weights[0] * self._quantum
            credit[1] += self._weights[1] * self._quantum
        return 2 if credit[0] > 0 else 3
