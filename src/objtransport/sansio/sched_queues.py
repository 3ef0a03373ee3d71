"""The pieces of :class:`~.scheduler.PriorityScheduler`'s queues: what an item is, a
priority class's queues of large items, an item's size, and cutting DATA frames out of a
buffer of encoded frames (messages given up by their ttl)."""

from __future__ import annotations

import struct
from collections import deque

from .fragmentation import FragmentJob
from .framing import FLAG_FRAG, FRAME_HEADER, MAGIC

__all__ = ["NO_CLASSES", "Chunk", "Classes", "Item", "PriorityClass", "cut_data", "item_size",
           "new_classes"]

Chunk = bytes | bytearray | memoryview
#: a buffer of frames, a fragment job, or a group of chunks that must leave together
Item = bytes | bytearray | FragmentJob | tuple[Chunk, ...]

_LEN = struct.Struct("!I").unpack_from
_HEADER = FRAME_HEADER.unpack_from
_DATA = 2


class PriorityClass:
    """The queues of one priority class besides its small-frame buffer: made by the
    scheduler with the first large item and let go once none is queued."""

    __slots__ = ("sealed", "streams", "rr", "small_turn")

    def __init__(self) -> None:
        # lists, not deques: they are short, and an empty deque costs ~600 bytes
        self.sealed: list[bytearray] = []  # frames queued before a large item
        self.streams: dict[int, deque[Item]] = {}  # streams with a pending large item
        self.rr: list[int] = []  # their turn order
        self.small_turn = True


#: the classes of one scheduler: control, high, normal, low
Classes = tuple[PriorityClass, PriorityClass, PriorityClass, PriorityClass]


def new_classes() -> Classes:
    return (PriorityClass(), PriorityClass(), PriorityClass(), PriorityClass())


#: what observers read while a scheduler has no classes (never written to)
NO_CLASSES = new_classes()


def item_size(item: Item) -> int:
    if isinstance(item, FragmentJob):
        return item.remaining  # payload bytes; fragment headers are not counted
    if isinstance(item, tuple):
        return sum(len(c) for c in item)
    return len(item)


def cut_data(buf: bytes | bytearray, seqs: set[int], found: set[int]) -> bytearray | None:
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
