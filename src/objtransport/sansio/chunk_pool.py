"""Buffers for the resend store's copies of large written chunks (:class:`ChunkPool`).

With ACKs, :class:`~.reliability.ResumeState` keeps every written chunk until the peer
acknowledges it. Keeping the scheduler's own buffer (a ``bytearray`` grown frame by frame)
means the next chunk is built in fresh memory while several megabytes wait for their ACK:
glibc hands large blocks back to the kernel and takes new ones, and every new page faults
(measured: ~0.05 faults and ~0.1-0.15 µs of sender CPU per 1 KiB message). Without ACKs the
written buffer is freed at once and the next one reuses its memory.

So a large chunk is copied (one ``memcpy``, while it is still in the cache) into a buffer of
this pool, which the store keeps instead; the scheduler's buffer is freed as without ACKs.
When an ACK frees the copy, its buffer goes back to the pool for the next chunk: the same
few pages are used over and over.

Bounds: a buffer holds one chunk of at most ``size`` bytes (chunks smaller than half of it,
or larger, are kept as they are: a small one costs no page faults, a larger one no copy);
the store holds at most ``max_unacked_bytes`` worth of buffers (what it would hold anyway),
and the pool keeps at most ``spares`` free ones between ACKs (the rest are freed); they go
when everything is acknowledged at a keepalive, and when the session ends (one kept for a
resume keeps only the copies of what is unacknowledged). The spares of all the sessions of
one service are bounded together by a :class:`SpareBudget` (``max_spare_chunk_bytes``,
64 MiB): past it a buffer given back is freed, not kept (100 busy connections would
otherwise keep up to 1.7 GiB of spares). Nothing is allocated before the first large chunk
is written.

Safety: a pool buffer is never handed to a transport by the store (the transport gets the
scheduler's chunk, the store a copy), so reusing it never changes bytes a transport holds.
After a resume the frames of kept copies are queued again (as views of them): the store
then drops its pool (:meth:`ResumeState.take_resend`), so those buffers are never reused.

The heap: the first full write chunk of a stream link in a process settles glibc's malloc
thresholds once (``drivers/heap.py``, ``settle_heap``), so that these chunks reuse their
pages; not here: the pool has no side effect on the process.
"""

from __future__ import annotations

__all__ = ["CHUNK_POOL_MIN", "CHUNK_POOL_SIZE", "CHUNK_POOL_SPARES", "SPARE_CHUNK_BYTES",
           "WRITE_CHUNK", "ChunkPool", "SpareBudget"]

#: a session's queue() calls ``on_full`` when this many bytes were queued since the last
#: write or seal (``PriorityScheduler.full_at``; a stream link then writes them at once,
#: or seals them if the socket is full): a sender that queues without yielding has its
#: frames written in chunks of about this size (still in the cache, and the peer starts on
#: them at once), not in one chunk of ``max_pending_bytes`` (4 MiB) when it first waits
WRITE_CHUNK = 1024 * 1024
#: bytes per pool buffer: a write chunk and one more small frame (up to 64 KiB)
CHUNK_POOL_SIZE = WRITE_CHUNK + 64 * 1024
#: chunks below this are kept as they are (a small one costs no page faults; a copy would
#: waste most of a buffer)
CHUNK_POOL_MIN = CHUNK_POOL_SIZE // 2
#: free buffers kept at most (17 MiB): as many as were in use at once, up to this; they
#: all go when the connection is idle (:meth:`~.reliability.ResumeState.trim_pool`)
CHUNK_POOL_SPARES = 16
#: spare bytes the pools of all the sessions of one service keep at most (the default of
#: ``max_spare_chunk_bytes``)
SPARE_CHUNK_BYTES = 64 * 1024 * 1024


class SpareBudget:
    """The spare buffers of the chunk pools of one service, in bytes: at most ``limit``
    (shared by the pools it is given to; each counts its own spares in and out)."""

    __slots__ = ("limit", "held")

    def __init__(self, limit: int = SPARE_CHUNK_BYTES) -> None:
        self.limit = limit
        self.held = 0  # bytes of spare buffers kept by the pools now


class ChunkPool:
    """Fixed-size buffers reused for the copies of written chunks."""

    __slots__ = ("size", "spares", "free", "budget")

    def __init__(self, size: int = CHUNK_POOL_SIZE, spares: int = CHUNK_POOL_SPARES,
                 budget: SpareBudget | None = None) -> None:
        self.size = size
        self.spares = spares
        self.free: list[memoryview] = []  # whole buffers (views of their bytearrays)
        #: the service's bound on spares (None: only ``spares`` bounds this pool's)
        self.budget = budget

    def copy(self, chunk: bytearray) -> tuple[memoryview, memoryview]:
        """A copy of ``chunk`` (at most ``size`` bytes) in a pool buffer:
        ``(the copy, its whole buffer)``; give the buffer back with :meth:`give`."""
        free = self.free
        if free:
            buf = free.pop()
            if self.budget is not None:
                self.budget.held -= self.size
        else:
            buf = memoryview(bytearray(self.size))
        n = len(chunk)
        buf[:n] = chunk
        return buf[:n], buf

    def give(self, buf: memoryview) -> None:
        """The copy in ``buf`` is not needed any more: reuse the buffer (or free it when
        ``spares`` are kept already, or the service's budget is spent)."""
        if len(self.free) < self.spares:
            budget = self.budget
            if budget is None:
                self.free.append(buf)
            elif budget.held + self.size <= budget.limit:
                budget.held += self.size
                self.free.append(buf)

    def trim(self) -> None:
        """Free the spares (nothing is in use: everything written was acknowledged)."""
        if self.budget is not None:
            self.budget.held -= len(self.free) * self.size
        self.free.clear()

    def __del__(self) -> None:  # a pool let go (a resume, a session gone): its spares too
        self.trim()
