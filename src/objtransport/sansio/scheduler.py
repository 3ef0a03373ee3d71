"""Priority scheduler: what goes on the wire next.

Four classes: control and high are strict (always first, in that order); normal and low share
what is left by byte weights (default 4:1), so neither starves. Within one class, items leave
in the order they came.

Small frames are appended to one growing ``bytearray`` per class (``small[priority]``): an
append costs a third of building a ``bytes`` per frame and joining them later, and a loop
turn's frames leave in one write. Large messages are :class:`FragmentJob` items that yield one
fragment per turn, so fragments of different messages interleave and a small high-priority
message never waits behind more than one fragment of a large one. Pushing any item seals the
class's small buffer first, so order within the class is kept.
"""

from __future__ import annotations

from collections import deque

from .fragmentation import FragmentJob

__all__ = ["Chunk", "Item", "PriorityScheduler"]

Chunk = bytes | bytearray | memoryview
#: a sealed buffer of frames, a fragment job, or a group of chunks that must leave together
Item = bytes | bytearray | FragmentJob | tuple[Chunk, ...]


class PriorityScheduler:
    """Queues of frames per priority; :meth:`pop` returns the next chunks to write.

    Writers of small frames append straight to ``small[priority]`` and add the frame's size
    to ``pending_bytes`` (the session's hot path); everything else goes through :meth:`push`.
    """

    __slots__ = ("queues", "small", "pending_bytes", "_items", "_weights", "_credit",
                 "_quantum")

    def __init__(self, weights: tuple[int, int] = (4, 1), quantum: int = 64 * 1024) -> None:
        if weights[0] < 1 or weights[1] < 1:
            raise ValueError("weights must be >= 1")
        self.queues: tuple[deque[Item], ...] = (deque(), deque(), deque(), deque())
        self.small = [bytearray(), bytearray(), bytearray(), bytearray()]
        self.pending_bytes = 0
        self._items = 0  # items in the deques
        self._weights = weights
        self._quantum = quantum
        self._credit = [weights[0] * quantum, weights[1] * quantum]

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def push(self, priority: int, item: Item) -> None:
        """Queue a fragment job, a chunk group or an encoded frame at ``priority`` (0..3)."""
        if isinstance(item, FragmentJob):
            size = item.remaining  # payload bytes; fragment headers are not counted
        elif isinstance(item, tuple):
            size = sum(len(c) for c in item)
        else:
            size = len(item)
        self._seal(priority)
        self.queues[priority].append(item)
        self._items += 1
        self.pending_bytes += size

    def push_frame(self, priority: int, frame: bytes) -> None:
        """Queue one small encoded frame."""
        self.small[priority] += frame
        self.pending_bytes += len(frame)

    def _seal(self, priority: int) -> None:
        buf = self.small[priority]
        if buf:
            self.queues[priority].append(buf)
            self._items += 1
            self.small[priority] = bytearray()

    def queued_by_priority(self) -> list[int]:
        """Bytes queued per priority (control, high, normal, low); not for the hot path."""
        out = []
        for q, buf in zip(self.queues, self.small, strict=True):
            n = len(buf)
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
        """True when nothing but small-frame buffers is queued (one write, no big chunks)."""
        return not self._items

    def clear(self) -> list[Item]:
        """Drop everything queued and return it (for accounting)."""
        dropped: list[Item] = []
        for p, q in enumerate(self.queues):
            dropped.extend(q)
            q.clear()
            if self.small[p]:
                dropped.append(self.small[p])
                self.small[p] = bytearray()
        self.pending_bytes = 0
        self._items = 0
        return dropped

    def pop(self, budget: int) -> list[Chunk]:
        """Take up to about ``budget`` bytes of chunks (at least one if anything is queued)."""
        small = self.small
        if not self._items and not small[0] and not small[1] and not small[3]:
            buf = small[2]  # the common case: only normal small frames
            if not buf:
                return []
            small[2] = bytearray()
            self.pending_bytes -= len(buf)
            return [buf]
        out: list[Chunk] = []
        taken = 0
        while taken < budget or not out:
            prio = self._next_class()
            if prio < 0:
                break
            n = self._take(prio, out)
            taken += n
            if prio >= 2 and self._has(2) and self._has(3):
                self._credit[prio - 2] -= n
        return out

    def _has(self, prio: int) -> bool:
        return bool(self.queues[prio]) or bool(self.small[prio])

    def _next_class(self) -> int:
        if self._has(0):
            return 0
        if self._has(1):
            return 1
        normal, low = self._has(2), self._has(3)
        if normal and low:
            credit = self._credit
            if credit[0] <= 0 and credit[1] <= 0:
                credit[0] += self._weights[0] * self._quantum
                credit[1] += self._weights[1] * self._quantum
            return 2 if credit[0] > 0 else 3
        return 2 if normal else 3 if low else -1

    def _take(self, prio: int, out: list[Chunk]) -> int:
        """Move the next piece of class ``prio`` to ``out``; return the bytes it adds."""
        q = self.queues[prio]
        if not q:
            buf = self.small[prio]
            self.small[prio] = bytearray()
            out.append(buf)
            self.pending_bytes -= len(buf)
            return len(buf)
        item = q[0]
        if isinstance(item, FragmentJob):
            header, piece = item.next_chunks()
            out.append(header)
            out.append(piece)
            n = len(piece)
            if item.done:
                q.popleft()
                self._items -= 1
            self.pending_bytes -= n
            return n + len(header)
        q.popleft()
        self._items -= 1
        if isinstance(item, tuple):
            out.extend(item)
            n = sum(len(c) for c in item)
        else:
            out.append(item)
            n = len(item)
        self.pending_bytes -= n
        return n
