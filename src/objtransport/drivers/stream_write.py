"""How a stream link hands several chunks to its transport (:func:`write_chunks`).

Small chunks (frames) are joined into one write; a large one (a fragment's piece, a large
message's payload) is handed over as it is, never copied here. Where the transport writes
several buffers in one call (its own ``writelines``: uvloop's ``writev``, Python 3.12's
``sendmsg``) everything goes in that one call, so a fragment's 28-byte header and its piece
leave in one system call; Python 3.11's selector transport, whose ``writelines`` joins (a
copy of the piece), gets one ``write`` per part instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["BIG", "write_chunks"]

#: chunks at least this large are written as they are, not joined
BIG = 64 * 1024

#: transport class -> does its ``writelines`` write without joining the buffers first?
_VECTORED: dict[type, bool] = {}


def write_chunks(t: asyncio.Transport, chunks: list[Any]) -> None:
    """Write ``chunks`` in order: small ones joined, large ones as they are."""
    if len(chunks) == 1:
        t.write(chunks[0])
        return
    parts: list[Any] = []
    small: list[Any] = []
    for c in chunks:
        if len(c) >= BIG:
            if small:
                parts.append(small[0] if len(small) == 1 else b"".join(small))
                small = []
            parts.append(c)
        else:
            small.append(c)
    if small:
        parts.append(small[0] if len(small) == 1 else b"".join(small))
    if len(parts) == 1:
        t.write(parts[0])
    elif _vectored(type(t)):
        t.writelines(parts)
    else:
        for part in parts:
            t.write(part)


def _vectored(cls: type) -> bool:
    known = _VECTORED.get(cls)
    if known is None:
        # asyncio.WriteTransport's own writelines joins (b"".join, then write)
        known = _VECTORED[cls] = getattr(cls, "writelines",
                                         None) is not asyncio.WriteTransport.writelines
    return known
