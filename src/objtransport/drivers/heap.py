"""The process's heap: :func:`settle_heap`, once per process, at a stream link's first full
write chunk (unless the service was made with ``settle_heap=False``).

The scheduler builds each write chunk by appending frames to a fresh ``bytearray``, which
``realloc`` grows to ~1.1 MiB (``sansio.chunk_pool.WRITE_CHUNK`` and one more frame). With
glibc's initial thresholds (``mmap`` above 128 KiB, the heap's top given back above
128 KiB free) those chunks were built in pages the kernel had just taken back, often enough
that a 1 KiB sender took 0.04-0.1 page faults per message (0.1 µs/msg of system time, see
docs/design.md "Write chunks, third round"). glibc raises both thresholds when a block it
had mapped is freed (mallopt(3), "dynamic mmap threshold"): freeing one ``HEAP_SETTLE``
block once sets them to 4 and 8 MiB, and the chunks' pages are then reused. Elsewhere
(another libc) it is one short-lived block. An application that set the thresholds itself
(``MALLOC_*``, ``GLIBC_TUNABLES``, ``mallopt``) keeps them: glibc no longer adjusts them.

Here, not in the sans-I/O core: it changes the allocator of the whole process, a side
effect that belongs to the I/O side and that an application can refuse
(``NetworkTransport(settle_heap=False)``, ``Options.settle_heap``); the core's
:class:`~..sansio.chunk_pool.ChunkPool` only keeps buffers. Only a stream link calls it
(``WriteTurns._chunk_full``): the links that build write chunks of that size.
"""

from __future__ import annotations

__all__ = ["HEAP_SETTLE", "heap_settled", "settle_heap"]

#: the block :func:`settle_heap` frees once (above the largest write chunk: glibc then
#: keeps blocks up to this size in its heap, and up to twice it free at the heap's top)
HEAP_SETTLE = 4 * 1024 * 1024

_settled = False


def settle_heap() -> bool:
    """Once per process: allocate and free one ``HEAP_SETTLE`` block, so that glibc's
    dynamic thresholds rise above the write chunks' size (see the module's docstring);
    True the first time. ``bytes(n)`` comes from ``calloc``: a fresh mapping, known to be
    zero, so no page is touched."""
    global _settled
    if _settled:
        return False
    _settled = True
    block = bytes(HEAP_SETTLE)
    del block
    return True


def heap_settled() -> bool:
    """Has :func:`settle_heap` run in this process?"""
    return _settled
