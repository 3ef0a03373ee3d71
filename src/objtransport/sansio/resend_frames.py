"""The DATA frames in written or queued chunks (:func:`data_frames`): what a resume sends
again (:meth:`~.reliability.ResumeState.take_resend`) and what a session given up reports,
found frame by frame in the batches :class:`~.reliability.ResumeState` kept."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from .fragmentation import FragmentJob
from .framing import FRAME_HEADER, MAGIC, FrameType
from .scheduler import Chunk, Item

__all__ = ["Batch", "DataFrame", "data_frames"]

#: a batch of written chunks (one chunk, or a tuple of them), whole frames in order
Batch = Chunk | tuple[Chunk, ...]

_HEADER = FRAME_HEADER.size
_unpack_header = FRAME_HEADER.unpack_from
_unpack_len = struct.Struct("!I").unpack_from
_DATA = int(FrameType.DATA)


class DataFrame:
    """One encoded DATA frame (or fragment) found in written or queued chunks: ``frame``
    is the whole frame, length prefix included; ``job`` a queued large message instead."""

    __slots__ = ("seq", "stream", "priority", "flags", "frame", "job")

    def __init__(self, seq: int, stream: int, priority: int, flags: int,
                 frame: memoryview | None, job: FragmentJob | None = None) -> None:
        self.seq = seq
        self.stream = stream
        self.priority = priority
        self.flags = flags
        self.frame = frame
        self.job = job


def _join(batch: Batch | Item) -> bytes | bytearray | memoryview:
    if isinstance(batch, tuple):
        return b"".join(batch)
    assert not isinstance(batch, FragmentJob)
    return batch


def data_frames(batches: Iterable[Batch | Item]) -> Iterator[DataFrame]:
    """The DATA frames in ``batches`` (each a whole number of frames, the first maybe
    after the preface magic), in order; other frames are skipped. A queued
    :class:`FragmentJob` (the rest of a large message) comes out as it is."""
    for batch in batches:
        if isinstance(batch, FragmentJob):
            if not batch.done:
                yield DataFrame(batch.seq, batch.stream, batch.priority, batch.flags, None,
                                batch)
            continue
        view = memoryview(_join(batch)).cast("B")
        pos, end = 0, len(view)
        while pos + 4 <= end:
            if view[pos:pos + 4] == MAGIC:  # a HELLO's preface: not a length
                pos += 4
                continue
            size = 4 + int(_unpack_len(view, pos)[0])
            if size < _HEADER or pos + size > end:  # not ours to judge: stop here
                break
            _, _, ftype, flags, prio, stream, seq = _unpack_header(view, pos)
            if ftype == _DATA:
                yield DataFrame(seq, stream, prio, flags, view[pos:pos + size])
            pos += size
