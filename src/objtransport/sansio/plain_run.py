"""The decoder's fast path: a read's run of plain DATA frames, each payload copied once.

A plain frame is a whole DATA frame of stream 0, priority normal, no flags (and, with
acknowledgements, the next in sequence): its payload is delivered as ``bytes`` as it is.
:func:`plain_run` takes such frames from the front of a buffer and stops before the first
other frame (or an incomplete one, or one too long), which the general decoder handles.

Frames of one length in a row (the common case: a sender of many messages of one shape) are
decoded with one ``struct`` call each, ``!IQQ<n>s``, that checks nothing but returns the
length, the header and the payload copied straight out of the buffer: from a ``bytes`` read,
or from the receive buffer itself (a ``memoryview``), so that a payload is copied once
between the socket's buffer and the application. The ``Struct`` of each length is made once
and kept (:data:`CACHE_SIZE` lengths at most); a frame of a length that does not repeat is
sliced out (of a view: copied to ``bytes``, still one copy), so a read of one lone frame,
a request/response's usual read, is decoded here in one pass. Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .events import Received
from .framing import VERSION, FrameType

__all__ = ["CACHE_SIZE", "cached_lengths", "plain_run"]

#: lengths whose ``Struct`` is kept (a peer cycling through more only costs time)
CACHE_SIZE = 256

#: length, the 8 header bytes from version to stream as one number, sequence number
_unpack_plain = struct.Struct("!IQQ").unpack_from
_unpack_len = struct.Struct("!I").unpack_from
#: those 8 bytes of a plain message: version 1, DATA, no flags, priority normal, stream 0
PLAIN_HEAD = int.from_bytes(bytes((VERSION, FrameType.DATA, 0, 2, 0, 0, 0, 0)), "big")

_Unpack = Callable[[Any, int], tuple[Any, ...]]
_cache: dict[int, _Unpack] = {}


def _unpacker(length: int) -> _Unpack:
    """``!IQQ<length - 16>s``: a whole frame of that ``length`` field."""
    unpack = _cache.get(length)
    if unpack is None:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        unpack = _cache[length] = struct.Struct(f"!IQQ{length - 16}s").unpack_from
    return unpack


def cached_lengths() -> int:
    """How many lengths have their ``Struct`` kept now (at most :data:`CACHE_SIZE`)."""
    return len(_cache)


def plain_run(buf: Any, off: int, n: int, floor: int | None, max_frame_size: int,
              out: list[Received]) -> tuple[int, int]:
    """Append the payloads of the plain frames of ``buf[off:n]`` to ``out``; return where
    the run stopped and the new ``floor``.

    ``floor`` is the sequence number delivered last (each frame must be the next one), or
    None when acknowledgements are off (numbers are not checked). ``buf`` is ``bytes`` or a
    ``memoryview`` / ``bytearray``: a frame of a length that does not repeat is sliced out
    (copied to ``bytes`` from a view). Nothing is copied for a frame that is not whole, nor
    for one longer than ``max_frame_size`` (the caller refuses it)."""
    append = out.append
    sliceable = type(buf) is bytes
    acked = floor is not None
    seq_next = (floor or 0) + 1
    head_ok = PLAIN_HEAD
    while n - off >= 20:
        length, head, seq = _unpack_plain(buf, off)
        end = off + 4 + length
        if (head != head_ok or end > n or length > max_frame_size or length < 16
                or acked and seq != seq_next):
            break
        if n - end >= 4 and _unpack_len(buf, end)[0] == length:
            # a run of this length: one struct call per frame
            unpack = _unpacker(length)
            step = length + 4
            lim = n - step
            if acked:
                while off <= lim:
                    got, head, seq, payload = unpack(buf, off)
                    if got != length or head != head_ok or seq != seq_next:
                        break
                    seq_next += 1
                    append(payload)
                    off += step
            else:
                while off <= lim:
                    got, head, _, payload = unpack(buf, off)
                    if got != length or head != head_ok:
                        break
                    append(payload)
                    off += step
            continue
        append(buf[off + 20:end] if sliceable else bytes(buf[off + 20:end]))
        seq_next += 1
        off = end
    return off, seq_next - 1
