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
  back stream 2, and a small high-priority message waits for at most one fragment. A
  fragment cut while only its stream of its class waits (``solo_piece``, unthrottled) may
  be larger: up to ``solo_piece`` bytes, the rest split evenly (fewer frames and reads);
* a stream's later messages queue behind its pending large item (order per stream and
  priority is kept); frames queued before a large item are sealed and leave first, as
  is a write chunk the socket cannot take yet (:meth:`PriorityScheduler.seal_chunk`).
"""

from __future__ import annotations

import struct
from collections import deque

from .chunk_pool import WRITE_CHUNK
from .fragmentation import FragmentJob
from .sched_queues import (
    Chunk,
    Classes,
    Item,
    PriorityClass,
    item_size,
    new_classes,
)
from .sched_walks import NONE_BLOCKED, QueueWalks

__all__ = ["Chunk", "Item", "PriorityScheduler"]

_LEN = struct.Struct("!I").unpack_from


class PriorityScheduler(QueueWalks):
    """Queues per priority and stream; :meth:`pop` returns the next chunks to write.

    Writers of small frames on a stream without a pending large item append straight to
    ``small[priority]`` and add the frame's size to ``pending_bytes`` (the session's hot
    path, allowed while ``blocked`` is empty); everything else goes through :meth:`push` or
    :meth:`push_frame`.
    """

    __slots__ = ("_weights", "_credit", "_quantum", "sent_bytes", "solo_piece", "full_at")

    def __init__(self, weights: tuple[int, int] = (4, 1), quantum: int = 64 * 1024) -> None:
        if weights[0] < 1 or weights[1] < 1:
            raise ValueError("weights must be >= 1")
        #: the per-priority queues of large items: made by the first :meth:`push` (four
        #: classes cost ~1 KB, and most connections only ever queue small frames)
        self.classes: Classes | None = None
        self.small = [bytearray(), bytearray(), bytearray(), bytearray()]
        self.pending_bytes = 0
        #: (priority, stream) pairs with a pending large item: their frames must queue
        #: (a frozen empty one, shared, while none: a set costs 216 bytes per connection)
        self.blocked: set[tuple[int, int]] | frozenset[tuple[int, int]] = NONE_BLOCKED
        self._items = 0
        self._weights = weights
        self._quantum = quantum
        #: what normal and low may still take while both wait (made when they first do)
        self._credit: list[int] | None = None
        #: bytes handed out per priority (control, high, normal, low)
        self.sent_bytes = [0, 0, 0, 0]
        #: the largest piece of a fragment cut while nothing else is queued and the link is
        #: not throttled (0: the job's own piece size always; a stream session sets it)
        self.solo_piece = 0
        #: a session's queue() calls its ``on_full`` when ``pending_bytes`` passes this:
        #: ``WRITE_CHUNK`` more than what was left queued by the last pop or seal
        self.full_at = WRITE_CHUNK

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def set_weights(self, normal: int, low: int) -> None:
        if normal < 1 or low < 1:
            raise ValueError("weights must be >= 1")
        self._weights = (normal, low)
        self._credit = None  # full credit by the new weights

    # -- queueing --------------------------------------------------------------------------
    def push(self, priority: int, item: Item, stream: int = 0) -> None:
        """Queue a large item (a fragment job or a chunk group) on ``stream``."""
        classes = self.classes
        if classes is None:
            classes = self.classes = new_classes()
        cls = classes[priority]
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
        self.pending_bytes += item_size(item)

    def push_frame(self, priority: int, frame: bytes | bytearray, stream: int = 0) -> None:
        """Queue one small encoded frame, behind the stream's pending large item if any."""
        if (priority, stream) in self.blocked:
            self._made()[priority].streams[stream].append(bytes(frame))
            self._items += 1
        else:
            self.small[priority] += frame
        self.pending_bytes += len(frame)

    @property
    def only_small(self) -> bool:
        """True when nothing but small-frame buffers is queued (one write, no big chunks)."""
        return not self._items

    def pop(self, budget: int, strict: bool = False) -> list[Chunk]:
        """Take about ``budget`` bytes of chunks (at least one chunk if anything is queued).

        Small-frame buffers are taken whole unless ``strict`` (throttled links), in which case
        they are cut at a frame boundary so that at most ``budget`` bytes (or one frame) go.
        """
        small = self.small
        if (self.classes is None and not small[0] and not small[1] and not small[3]
                and (not strict or len(small[2]) <= budget)):  # (no class: nothing large)
            buf = small[2]  # the common case: only normal small frames
            if not buf:
                return []
            small[2] = bytearray()
            self.pending_bytes -= len(buf)
            self.full_at = self.pending_bytes + WRITE_CHUNK
            self.sent_bytes[2] += len(buf)
            return [buf]
        buf = small[0]
        if (len(buf) == self.pending_bytes and self.classes is None
                and (not strict or len(buf) <= budget)):
            # only control frames (an idle link's PONG; pending_bytes counts every queue)
            small[0] = bytearray()
            self.pending_bytes = 0
            self.full_at = WRITE_CHUNK
            self.sent_bytes[0] += len(buf)
            return [buf]
        out: list[Chunk] = []
        taken = 0
        while taken < budget or not out:
            prio = self._next_class()
            if prio < 0:
                break
            limit = budget - taken if strict else 1 << 62
            if (strict and prio >= 2 and self._has(2) and self._has(3)
                    and 0 < self._credits()[prio - 2] < limit):  # a paced grant is shared
                limit = self._credits()[prio - 2]  # by weights too (a writer woken late:
                # not all to one)
            n = self._take(prio, out, limit, not strict)
            if n < 0:  # strict: the next frame is over the budget (or credit: next pop's)
                break
            taken += n
            self.sent_bytes[prio] += n
            if prio >= 2 and self._has(2) and self._has(3):
                self._credits()[prio - 2] -= n
        self.full_at = self.pending_bytes + WRITE_CHUNK
        return out

    def seal_chunk(self) -> None:
        """``on_full`` could not write (the transport holds what the socket did not take):
        the small-frame buffers of a write chunk's size are sealed as they are, to leave
        first, and later frames start new ones; ``on_full`` is called again after
        ``WRITE_CHUNK`` more bytes. So a sender that queues without yielding while the
        socket is full still has its frames written in chunks of about ``WRITE_CHUNK``
        (the sizes the resend store's pool takes, in memory reused), not in one growing
        buffer of up to ``max_pending_bytes``."""
        small = self.small
        for prio in range(4):
            buf = small[prio]
            if len(buf) >= WRITE_CHUNK // 2:
                classes = self.classes
                if classes is None:
                    classes = self.classes = new_classes()
                classes[prio].sealed.append(buf)
                small[prio] = bytearray()
        self.full_at = self.pending_bytes + WRITE_CHUNK

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
        if self.small[prio]:
            return True
        classes = self.classes
        return classes is not None and (bool(classes[prio].sealed) or bool(classes[prio].rr))

    def _next_class(self) -> int:
        if self._has(0):
            return 0
        if self._has(1):
            return 1
        normal, low = self._has(2), self._has(3)
        if normal and low:
            credit = self._credits()
            if credit[0] <= 0 and credit[1] <= 0:
                credit[0] += self._weights[0] * self._quantum
                credit[1] += self._weights[1] * self._quantum
            return 2 if credit[0] > 0 else 3
        return 2 if normal else 3 if low else -1

    def _credits(self) -> list[int]:
        credit = self._credit
        if credit is None:
            w, q = self._weights, self._quantum
            credit = self._credit = [w[0] * q, w[1] * q]
        return credit

    def _take(self, prio: int, out: list[Chunk], budget: int, solo: bool = False) -> int:
        """Move the next piece of class ``prio`` to ``out``; return the bytes it adds
        (``solo``: a fragment may be cut larger if its message is all that is queued)."""
        classes = self.classes
        cls = classes[prio] if classes is not None else None
        if cls is not None and cls.sealed:
            n = self._take_buffer(cls.sealed, out, budget)
            if not cls.sealed:
                self._release()
            return n
        small = self.small[prio]
        if small and (cls is None or cls.small_turn or not cls.rr):
            if cls is not None:
                cls.small_turn = False
            holder = [small]
            self.small[prio] = bytearray()
            n = self._take_buffer(holder, out, budget)
            if n < 0 and cls is not None:
                cls.small_turn = True
            if holder:  # a cut left the rest: it goes back in front of newer frames
                holder[0] += self.small[prio]
                self.small[prio] = holder[0]
            return n
        assert cls is not None  # _has(prio): something is queued here
        cls.small_turn = True
        stream = cls.rr[0]
        q = cls.streams[stream]
        item = q[0]
        if isinstance(item, FragmentJob):
            size = item.piece
            if solo and self.solo_piece > size and self._alone(prio, cls):
                rest = item.remaining  # the rest in even pieces of <= solo_piece
                size = max(size, -(-rest // -(-rest // self.solo_piece)))
            header, piece = item.next_chunks(size)
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
        n = item_size(item)
        self.pending_bytes -= n
        return n

    def _alone(self, prio: int, cls: PriorityClass) -> bool:
        """Is only the head stream of class ``prio`` waiting? (What is queued behind its
        large item leaves after it whatever the size of its fragments.)"""
        if len(cls.rr) != 1 or cls.sealed or self.small[prio]:
            return False
        return not any(self._has(p) for p in range(4) if p != prio)

    def _pop_item(self, prio: int, stream: int, q: deque[Item]) -> None:
        cls = self._made()[prio]
        q.popleft()
        self._items -= 1
        if q:
            cls.rr.append(cls.rr.pop(0))
            return
        cls.rr.pop(0)
        del cls.streams[stream]
        self._unblock(prio, stream)
        self._release()

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
