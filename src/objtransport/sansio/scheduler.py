"""Priority and stream scheduler: what goes on the wire next.

Classes: control and high are strict (always first, in that order); normal and low share what
is left by byte weights (default 4:1), so neither starves.

Inside one class:

* small frames are appended to one growing ``bytearray`` (``small[priority]``): an append
  costs a third of building a ``bytes`` per frame and joining them later, and a loop turn's
  frames leave in one write;
* a large message is a :class:`FragmentJob` that yields one fragment per turn. It waits in a
  queue of its own stream; streams with such items take turns (round robin), and turns
  alternate with the shared small-frame buffer. So a large message on stream 1 does not hold
  back stream 2, and a small high-priority message waits for at most one fragment;
* a stream's later messages queue behind its pending large item (order per stream and
  priority is kept); frames queued before a large item are sealed and leave first.
"""

from __future__ import annotations

import struct
from collections import deque

from .fragmentation import FragmentJob
from .framing import FLAG_FRAG, FRAME_HEADER, MAGIC

__all__ = ["Chunk", "Item", "PriorityScheduler"]

Chunk = bytes | bytearray | memoryview
#: a buffer of frames, a fragment job, or a group of chunks that must leave together
Item = bytes | bytearray | FragmentJob | tuple[Chunk, ...]

_LEN = struct.Struct("!I").unpack_from
_HEADER = FRAME_HEADER.unpack_from
_DATA = 2


def _cut(buf: bytes | bytearray, seqs: set[int], found: set[int]) -> bytearray | None:
    """``buf`` (whole frames) without its unfragmented DATA frames numbered in ``seqs``
    (their numbers are added to ``found``); None when it has none of them."""
    out: bytearray | None = None
    pos, keep, end = 0, 0, len(buf)
    while pos + 4 <= end:
        if buf[pos:pos + 4] == MAGIC:  # a HELLO's preface
            pos += 4
            continue
        size = 4 + int(_LEN(buf, pos)[0])
        if size < 20 or pos + size > end:
            break
        _, _, ftype, flags, _, _, seq = _HEADER(buf, pos)
        if ftype == _DATA and seq in seqs and not flags & FLAG_FRAG:
            if out is None:
                out = bytearray()
            out += buf[keep:pos]
            keep = pos + size
            found.add(seq)
        pos += size
    if out is not None:
        out += buf[keep:]
    return out


def _size(item: Item) -> int:
    if isinstance(item, FragmentJob):
        return item.remaining  # payload bytes; fragment headers are not counted
    if isinstance(item, tuple):
        return sum(len(c) for c in item)
    return len(item)


_NONE_BLOCKED: frozenset[tuple[int, int]] = frozenset()


class _Class:
    """The queues of one priority class."""

    __slots__ = ("sealed", "streams", "rr", "small_turn")

    def __init__(self) -> None:
        # lists, not deques: they are short, and an empty deque costs ~600 bytes (x 8 per
        # connection)
        self.sealed: list[bytearray] = []  # frames queued before a large item
        self.streams: dict[int, deque[Item]] = {}  # streams with a pending large item
        self.rr: list[int] = []  # their turn order
        self.small_turn = True


class PriorityScheduler:
    """Queues per priority and stream; :meth:`pop` returns the next chunks to write.

    Writers of small frames on a stream without a pending large item append straight to
    ``small[priority]`` and add the frame's size to ``pending_bytes`` (the session's hot
    path, allowed while ``blocked`` is empty); everything else goes through :meth:`push` or
    :meth:`push_frame`.
    """

    __slots__ = ("classes", "small", "pending_bytes", "blocked", "_items", "_weights",
                 "_credit", "_quantum", "sent_bytes")

    def __init__(self, weights: tuple[int, int] = (4, 1), quantum: int = 64 * 1024) -> None:
        if weights[0] < 1 or weights[1] < 1:
            raise ValueError("weights must be >= 1")
        self.classes = (_Class(), _Class(), _Class(), _Class())
        self.small = [bytearray(), bytearray(), bytearray(), bytearray()]
        self.pending_bytes = 0
        #: (priority, stream) pairs with a pending large item: their frames must queue
        #: (a frozen empty one, shared, while none: a set costs 216 bytes per connection)
        self.blocked: set[tuple[int, int]] | frozenset[tuple[int, int]] = _NONE_BLOCKED
        self._items = 0
        self._weights = weights
        self._quantum = quantum
        self._credit = [weights[0] * quantum, weights[1] * quantum]
        #: bytes handed out per priority (control, high, normal, low)
        self.sent_bytes = [0, 0, 0, 0]

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def set_weights(self, normal: int, low: int) -> None:
        if normal < 1 or low < 1:
            raise ValueError("weights must be >= 1")
        self._weights = (normal, low)
        self._credit = [normal * self._quantum, low * self._quantum]

    # -- queueing --------------------------------------------------------------------------
    def push(self, priority: int, item: Item, stream: int = 0) -> None:
        """Queue a large item (a fragment job or a chunk group) on ``stream``."""
        cls = self.classes[priority]
        buf = self.small[priority]
        if buf:  # what was queued before leaves before this item
            cls.sealed.append(buf)
            self.small[priority] = bytearray()
        q = cls.streams.get(stream)
        if q is None:
            q = cls.streams[stream] = deque()
            cls.rr.append(stream)
            if not isinstance(self.blocked, set):
                self.blocked = set()
            self.blocked.add((priority, stream))
        q.append(item)
        self._items += 1
        self.pending_bytes += _size(item)

    def push_frame(self, priority: int, frame: bytes | bytearray, stream: int = 0) -> None:
        """Queue one small encoded frame, behind the stream's pending large item if any."""
        if (priority, stream) in self.blocked:
            self.classes[priority].streams[stream].append(bytes(frame))
            self._items += 1
        else:
            self.small[priority] += frame
        self.pending_bytes += len(frame)

    def clear(self, keep_control: bool = False) -> list[Item]:
        """Drop everything queued (but control frames, if ``keep_control``) and return it."""
        dropped: list[Item] = []
        for p, cls in enumerate(self.classes):
            if keep_control and p == 0:
                continue
            dropped.extend(cls.sealed)
            for q in cls.streams.values():
                dropped.extend(q)
            self.classes[p].__init__()  # type: ignore[misc]
            if self.small[p]:
                dropped.append(self.small[p])
                self.small[p] = bytearray()
        self.blocked = {b for b in self.blocked if keep_control and b[0] == 0} or _NONE_BLOCKED
        c0 = self.classes[0]
        self.pending_bytes = (len(self.small[0]) + sum(len(b) for b in c0.sealed)
                              + sum(_size(i) for q in c0.streams.values() for i in q))
        self._items = sum(len(q) for q in c0.streams.values())
        return dropped

    def drop_data(self, seqs: set[int]) -> set[int]:
        """Remove the queued messages numbered in ``seqs`` of which no byte was taken yet
        (whole DATA frames, large messages not begun); return the numbers removed. Walks
        the whole queue: not for the hot path."""
        found: set[int] = set()
        for p, cls in enumerate(self.classes):
            for i, buf in enumerate(cls.sealed):
                cut = _cut(buf, seqs, found)
                if cut is not None:
                    self.pending_bytes -= len(buf) - len(cut)
                    cls.sealed[i] = cut
            cls.sealed = [b for b in cls.sealed if b]
            cut = _cut(self.small[p], seqs, found)
            if cut is not None:
                self.pending_bytes -= len(self.small[p]) - len(cut)
                self.small[p] = cut
            for stream in list(cls.streams):
                self._drop_items(p, stream, seqs, found)
        return found

    def _drop_items(self, prio: int, stream: int, seqs: set[int], found: set[int]) -> None:
        cls = self.classes[prio]
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
            cut = _cut(b"".join(item) if isinstance(item, tuple) else item, seqs, found)
            if cut is None:
                kept.append(item)
                continue
            self.pending_bytes -= _size(item) - len(cut)
            if cut:
                kept.append(bytes(cut))
            else:
                self._items -= 1
        if kept:
            cls.streams[stream] = kept
            return
        del cls.streams[stream]
        cls.rr.remove(stream)
        if isinstance(self.blocked, set):
            self.blocked.discard((prio, stream))

    # -- observing -------------------------------------------------------------------------
    def queued_items(self) -> list[Item]:
        """What :meth:`clear` would return (control frames included), without dropping it;
        in queue order within each priority. Not for the hot path."""
        out: list[Item] = []
        for cls, buf in zip(self.classes, self.small, strict=True):
            out.extend(cls.sealed)
            for q in cls.streams.values():
                out.extend(q)
            if buf:
                out.append(buf)
        return out

    @property
    def only_small(self) -> bool:
        """True when nothing but small-frame buffers is queued (one write, no big chunks)."""
        return not self._items

    def queued_by_priority(self) -> list[int]:
        """Bytes queued per priority (control, high, normal, low); not for the hot path."""
        out = []
        for cls, buf in zip(self.classes, self.small, strict=True):
            n = len(buf) + sum(len(b) for b in cls.sealed)
            n += sum(_size(item) for q in cls.streams.values() for item in q)
            out.append(n)
        return out

    # -- taking ----------------------------------------------------------------------------
    def pop(self, budget: int, strict: bool = False) -> list[Chunk]:
        """Take about ``budget`` bytes of chunks (at least one chunk if anything is queued).

        Small-frame buffers are taken whole unless ``strict`` (throttled links), in which case
        they are cut at a frame boundary so that at most ``budget`` bytes (or one frame) go.
        """
        small = self.small
        if (not self._items and not small[0] and not small[1] and not small[3]
                and not self.classes[2].sealed and (not strict or len(small[2]) <= budget)):
            buf = small[2]  # the common case: only normal small frames
            if not buf:
                return []
            small[2] = bytearray()
            self.pending_bytes -= len(buf)
            self.sent_bytes[2] += len(buf)
            return [buf]
        out: list[Chunk] = []
        taken = 0
        while taken < budget or not out:
            prio = self._next_class()
            if prio < 0:
                break
            limit = budget - taken if strict else 1 << 62
            if (strict and prio >= 2 and 0 < self._credit[prio - 2] < limit
                    and self._has(2) and self._has(3)):  # a paced grant is shared by weights
                limit = self._credit[prio - 2]  # too (a writer woken late: not all to one)
            n = self._take(prio, out, limit)
            if n < 0:  # strict: the next frame is over the budget (or credit: next pop's)
                break
            taken += n
            self.sent_bytes[prio] += n
            if prio >= 2 and self._has(2) and self._has(3):
                self._credit[prio - 2] -= n
        return out

    def pop_control(self) -> list[Chunk]:
        """Take only the control class (whatever else waits): a sender whose window is full
        still sends its ACKs and PINGs."""
        out: list[Chunk] = []
        while self._has(0):
            n = self._take(0, out, 1 << 62)
            if n < 0:
                break
            self.sent_bytes[0] += n
        return out

    def _has(self, prio: int) -> bool:
        cls = self.classes[prio]
        return bool(self.small[prio]) or bool(cls.sealed) or bool(cls.rr)

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

    def _take(self, prio: int, out: list[Chunk], budget: int) -> int:
        """Move the next piece of class ``prio`` to ``out``; return the bytes it adds."""
        cls = self.classes[prio]
        if cls.sealed:
            return self._take_buffer(cls.sealed, out, budget)
        small = self.small[prio]
        if small and (cls.small_turn or not cls.rr):
            cls.small_turn = False
            holder = [small]
            self.small[prio] = bytearray()
            n = self._take_buffer(holder, out, budget)
            if n < 0:
                cls.small_turn = True
            if holder:  # a cut left the rest: it goes back in front of newer frames
                holder[0] += self.small[prio]
                self.small[prio] = holder[0]
            return n
        cls.small_turn = True
        stream = cls.rr[0]
        q = cls.streams[stream]
        item = q[0]
        if isinstance(item, FragmentJob):
            header, piece = item.next_chunks()
            out.append(header)
            out.append(piece)
            n = len(piece)
            self.pending_bytes -= n
            if item.done:
                self._pop_item(prio, stream, q)
            else:
                cls.rr.append(cls.rr.pop(0))
            return n + len(header)
        self._pop_item(prio, stream, q)
        if isinstance(item, tuple):
            out.extend(item)
        else:
            out.append(item)
        n = _size(item)
        self.pending_bytes -= n
        return n

    def _pop_item(self, prio: int, stream: int, q: deque[Item]) -> None:
        cls = self.classes[prio]
        q.popleft()
        self._items -= 1
        if q:
            cls.rr.append(cls.rr.pop(0))
            return
        cls.rr.pop(0)
        del cls.streams[stream]
        if isinstance(self.blocked, set):
            self.blocked.discard((prio, stream))

    def _take_buffer(self, bufs: list[bytearray], out: list[Chunk], budget: int) -> int:
        """Take the first buffer whole, or cut it after the last frame within ``budget``."""
        buf = bufs[0]
        if len(buf) <= budget:
            bufs.pop(0)
            out.append(buf)
            self.pending_bytes -= len(buf)
            return len(buf)
        cut = 4 + int(_LEN(buf, 0)[0])  # at least one frame ...
        if cut > budget and out:  # ... unless something is already going out
            return -1
        while True:
            nxt = cut + 4 + int(_LEN(buf, cut)[0]) if cut + 4 <= len(buf) else len(buf) + 1
            if nxt > budget or nxt > len(buf):
                break
            cut = nxt
        head = bytes(buf[:cut])
        del buf[:cut]
        out.append(head)
        self.pending_bytes -= cut
        return cut
