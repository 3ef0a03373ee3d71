"""When a stream link writes (:class:`WriteTurns`, a base of :class:`~.stream.StreamLink`).

A message queued on an idle link is written at once (latency); the rest of the loop turn's
messages leave together in one write at the turn's end (throughput). What a read's messages
answer (a handler's replies, ACKs, PONGs) is written once, when the read's delivery ends.

The turn's end is a ``loop.call_soon``, armed only when a second message comes in the turn
after a write went straight through: a request/response peer (one message per turn) writes
at once and arms nothing. The state of the turn, ``_turn``:

* ``FREE``: the next message queued on an empty queue is written at once;
* ``WROTE``: one was; the next one that finds the queue empty arms the turn's end
  (``_flush_soon``), unless a read came since (a new turn: ``FREE`` again) or
  :data:`NEW_TURN_AFTER` s passed since that write (a sender that queues a message now
  and then, with nothing to read in between, writes each at once: at worst one extra write
  per interval when one turn runs that long);
* ``READING``: the link is delivering a read's messages; what is queued waits for the end
  of the delivery (:meth:`_read_end`), which writes it in one go.
"""

from __future__ import annotations

import asyncio
from time import monotonic

from .heap import settle_heap
from .pacing import Pacer
from .stream_end import StreamEnding
from .stream_write import write_chunks

__all__ = ["NEW_TURN_AFTER", "WRITE_HIGH", "WriteTurns"]

FREE, WROTE, READING = 0, 1, 2
#: after a write that went straight through, a message queued this much later (s) is
#: taken for a new loop turn's and written at once too
NEW_TURN_AFTER = 0.001
#: the transport's high-water mark: a flush writes at most this much past what it holds
WRITE_HIGH = 256 * 1024


class WriteTurns(StreamEnding):
    """``_wake`` (the session's ``on_wake``), the turn's end, the end of a read, and what
    is waiting to be written."""

    __slots__ = ("_turn", "_wrote_at")

    loop: asyncio.AbstractEventLoop
    write_paused: bool
    pacer: Pacer
    _turn: int
    _wrote_at: float

    @property
    def pending_bytes(self) -> int:
        """Bytes queued in the session plus bytes in the transport's buffer."""
        t = self.transport
        buffered = t.get_write_buffer_size() if t is not None and not t.is_closing() else 0
        return self.session.scheduler.pending_bytes + buffered

    @property
    def congested(self) -> bool:
        return self.session.scheduler.pending_bytes > self.max_pending

    @property
    def slow_write(self) -> bool:
        """(read only) True while every write must go the general way (``_flush``, which
        wakes drain and flush waiters and relieves the overload guard) for a reason of the
        link's own: a sender waits for room or for a flush, reading is paused, the link is
        closing; False lets ``_wake`` write a lone message on an idle link itself."""
        return self._slow_write

    def _wake(self, now: float = 0.0) -> None:
        """Something was queued on an empty queue (or by ``send``). ``now``: the clock read
        of the read whose end this is, where the link found the write free to go (not
        paused, no turn's end armed, a new turn): written at once, nothing checked again;
        else 0 (the checks, and the clock read here)."""
        if not now:
            turn = self._turn
            if self._flush_handle is not None or turn == READING:
                return  # the turn's end, or the read's, writes it
            if self.write_paused:
                self._schedule_flush()
                return
            now = monotonic()  # one clock read: the turn's, the write's and the pacer's
            if turn != FREE and now - self._wrote_at <= NEW_TURN_AFTER:
                self._schedule_flush()  # the turn's second message: at its end
                return
        self._turn = WROTE
        self._wrote_at = now
        t = self.transport
        pacer = self.pacer
        session = self.session
        if (t is None or self._slow_write or pacer.buckets or not session.open
                or t.get_write_buffer_size()):
            self._flush()  # the general way
        else:  # _flush's common case inline: a lone message on an idle link
            chunks = session.data_to_send(now, WRITE_HIGH)
            n = 0
            if len(chunks) == 1:
                chunk = chunks[0]
                t.write(chunk)
                n = len(chunk)
            elif chunks:
                write_chunks(t, chunks)
                n = sum(map(len, chunks))
            if now < pacer.sample_at:
                pacer.total += n
            elif n:  # the rate sample is due (always, on a link idle > 15 ms): taken here
                pacer.consume(n, now)
            if not (session.scheduler.pending_bytes or session.has_final):
                return  # all written: the turn's next message arms its end
            self._flush()  # what one chunk did not take
        if session.scheduler.pending_bytes:
            self._schedule_flush()  # what is left (paused, paced): at the turn's end

    def _flush(self) -> None:
        """Write queued chunks while the transport accepts them."""
        t = self.transport
        if t is None or self._closing:
            return
        session = self.session
        sched = session.scheduler
        now = monotonic()
        pacer = self.pacer
        while not self.write_paused and (sched.pending_bytes or session.has_final):
            budget = WRITE_HIGH - t.get_write_buffer_size()
            if budget <= 0:
                break
            strict = bool(pacer.buckets)
            if strict:
                if self._pace_handle is not None:
                    break  # a paced flush is already scheduled
                allowed = pacer.allowance(now)
                if allowed <= 0:
                    self._pace_handle = self.loop.call_at(now + pacer.delay(now),
                                                          self._paced_flush)
                    break
                budget = min(budget, int(allowed))
            chunks = session.data_to_send(now, budget, strict)
            if not chunks:
                break
            if len(chunks) == 1:
                n = len(chunks[0])
                t.write(chunks[0])
            else:  # small ones joined in one write, large ones on their own
                n = sum(len(c) for c in chunks)
                write_chunks(t, chunks)
            if strict or now >= pacer.sample_at:
                pacer.consume(n, now)
            else:  # consume's common case (no buckets, no sample due) inline
                pacer.total += n
        if self._drain_waiters:
            self._wake_drain_waiters()
        if self._flushed_waiters and not sched.pending_bytes:
            self._wake_flushed()
        if self._overload.paused:
            self._overload.relieved()
        self._slow_write = bool(self._closing or self._overload.paused or self._drain_waiters
                                or self._flushed_waiters)
        if (not session.open and session.closed and not sched.pending_bytes
                and not session.has_final):
            self._close_transport()

    def _chunk_full(self) -> None:
        """The session's ``on_full``: a write chunk was queued since the last write (a
        sender that does not yield). Write it now; if the transport cannot take it yet
        (paused, or holding what the socket did not take), seal it as it is so that later
        frames start a new chunk (``PriorityScheduler.seal_chunk``). The first time in the
        process, settle the heap (:func:`.heap.settle_heap`, unless the service's
        ``settle_heap`` option is off): write chunks then reuse their pages, with or
        without the resend store's pool."""
        if self.session.options.settle_heap:
            settle_heap()
        self._flush()
        sched = self.session.scheduler
        if sched.pending_bytes > sched.full_at:  # nothing was taken: a pop moves the mark
            sched.seal_chunk()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)

    def _paced_flush(self) -> None:
        """The pacer's tokens are back (its timer, armed by ``_flush``)."""
        self._pace_handle = None
        self._flush()
        if self._drain_waiters:
            self._wake_drain_waiters()

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._turn = FREE
        self._flush()

    def _answer(self) -> None:
        """The session queued answers while taking received bytes (``_delivered``)."""
        if self._turn != READING:
            self._schedule_flush()
        if self.write_paused:
            self._overload.check()

    def _read_end(self) -> None:
        """A read's messages were delivered: what they answered goes out in one write (a
        read also starts a new turn for the next message queued)."""
        self._turn = FREE
        session = self.session
        if session.scheduler.pending_bytes or session.has_final:
            if self.write_paused:
                self._overload.check()
            else:
                self._turn = WROTE
                self._flush()
                self._wrote_at = monotonic()
