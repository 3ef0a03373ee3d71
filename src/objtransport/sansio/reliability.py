"""What a native session keeps across reconnections so that nothing is lost or duplicated.

One :class:`ResumeState` lives as long as the logical connection (a client's id, or a
listener's connection kept for ``session_resume_timeout`` after its socket broke), while the
sockets and the :class:`~objtransport.sansio.session.NativeSession` objects come and go.

* Sending: every message accepted gets the next sequence number. Nothing is kept per
  message: the session hands each written batch of chunks (what one ``data_to_send`` call
  returned, frames already encoded) to :meth:`ResumeState.wrote`, which keeps it tagged
  with the last sequence number given out so far. A cumulative ACK of ``n`` frees the
  batches tagged ``<= n`` (every message in them is ``<= n``). Messages still queued live in
  the scheduler of the session now using this state (:meth:`attach`). After a resume, the
  frames of the kept batches whose number is above the peer's floor (it may fall inside a
  batch: frames are skipped one by one) and what the old scheduler still held are queued
  again, with the same numbers (:meth:`take_resend`).
* Receiving: ``floor`` is the highest number below which everything was delivered; ``above``
  holds the numbers delivered beyond it (priorities and streams complete out of order). A
  number at or below the floor, or in ``above``, is a duplicate and is dropped.

* Expiring: ``expiring`` maps the number of each unacknowledged message sent with a ttl
  to its deadline (the caller's clock). :meth:`ResumeState.expire` gives up those past it:
  they leave the queue if no byte of them was written, and are marked ``skipped``, so a
  resume sends a SKIP frame for each instead of the message (docs/protocol.md 1.11). Only
  with a peer that announced ``SKIP``; messages without a ttl cost nothing here.

Memory: the kept batches are the chunks that were written (the scheduler never reuses a
buffer it handed out), at most about ``max_unacked_bytes`` before ``send_data`` waits; a
large chunk (``CHUNK_POOL_MIN`` to ``CHUNK_POOL_SIZE`` bytes) is kept as a copy in a
:class:`~.chunk_pool.ChunkPool` buffer, reused for a later chunk once acknowledged (the
pool's bounds: chunk_pool.py); ``above`` holds at most as many integers as messages the
peer may have unacknowledged.
Per message, sending costs one integer addition here (``queued``).
"""

from __future__ import annotations

from typing import Any, cast

from .chunk_pool import CHUNK_POOL_MIN, CHUNK_POOL_SIZE, ChunkPool, SpareBudget
from .framing import (
    FLAG_FRAG,
    FLAG_META,
    FLAG_TEXT,
    FLAG_ZIP,
    FRAG_EXT,
    FRAME_HEADER,
)
from .resend_frames import Batch, DataFrame, data_frames
from .scheduler import PriorityScheduler

__all__ = ["DataFrame", "ResumeState", "Unacked", "data_frames"]

#: (seq, payload, stream, priority, text): a message given up on (``SessionLost``)
Unacked = tuple[int, bytes, int, int, bool]

_HEADER = FRAME_HEADER.size


#: the ``above`` of every state with nothing delivered out of order
NONE_ABOVE: frozenset[int] = frozenset()


class ResumeState:
    __slots__ = ("session_id", "next_seq", "acked", "sent", "queued", "freed", "queue",
                 "tracking", "floor", "above", "ack_sent", "peer_session_id", "established",
                 "duplicates", "resent", "expiring", "skipped", "can_skip",
                 "skips_received", "pool", "spare_budget")

    def __init__(self, session_id: bytes, spare_budget: SpareBudget | None = None) -> None:
        self.session_id = session_id
        #: the service's bound on the spares of its sessions' pools (None: unshared)
        self.spare_budget = spare_budget
        self.next_seq = 0  # last sequence number given out
        self.acked = 0  # the peer has everything up to here
        #: written batches not yet acknowledged: (last seq given out, ``queued`` then,
        #: batch, the pool buffer holding it or None); a list (an empty deque costs ~600
        #: bytes per connection), cut once per ACK
        self.sent: list[tuple[int, int, Batch, memoryview | None]] = []
        #: buffers for copies of large written chunks (made by the first one)
        self.pool: ChunkPool | None = None
        self.queued = 0  # payload bytes of all messages numbered so far (only grows)
        self.freed = 0  # ... of those the peer acknowledged (``queued`` of a freed batch)
        #: the scheduler of the session using this state: its messages are unacked too
        self.queue: PriorityScheduler | None = None
        self.tracking = False  # the sessions agreed on ACKs: unacknowledged ones are kept
        self.floor = 0  # everything <= floor was delivered
        #: delivered numbers above the floor (a frozen empty one, shared, while there are
        #: none: a set costs 216 bytes, and every connection has two states)
        self.above: set[int] | frozenset[int] = NONE_ABOVE
        self.ack_sent = 0  # the last floor we acknowledged
        self.peer_session_id = b""
        self.established = False  # a handshake completed at least once
        self.duplicates = 0
        self.resent = 0
        #: unacknowledged messages sent with a ttl: number -> deadline, in number order
        #: (None while there are none: made by the first, dropped with the last; this and
        #: ``skipped`` cost ~0.35 KB per state when made up front)
        self.expiring: dict[int, float] | None = None
        #: messages given up (ttl passed) the peer has not acknowledged: a resume sends a
        #: SKIP for each, not the message (the shared empty one while there are none)
        self.skipped: set[int] | frozenset[int] = NONE_ABOVE
        #: the peer understands SKIP (its HELLO said so), so expired messages can be skipped
        self.can_skip = False
        #: SKIP frames received that filled a gap (receiving side)
        self.skips_received = 0

    # -- sending ---------------------------------------------------------------------------
    @property
    def unacked_count(self) -> int:
        """Messages numbered and not acknowledged (queued or sent); 0 without ACKs."""
        return self.next_seq - self.acked if self.tracking else 0

    @property
    def unacked_bytes(self) -> int:
        """Payload bytes of those messages."""
        return self.queued - self.freed if self.tracking else 0

    def attach(self, queue: PriorityScheduler) -> None:
        """A session with ACKs uses this state from now on; ``queue`` is its scheduler.
        Call :meth:`take_resend` (or :meth:`take_unconfirmed`) for the previous one first."""
        self.queue = queue
        self.tracking = True

    def detach(self) -> None:
        """The session does not acknowledge (no ACKs agreed): nothing is kept."""
        self.queue = None
        self.tracking = False
        self.sent.clear()
        self.pool = None
        self.acked = self.next_seq
        self.freed = self.queued
        self.expiring = None
        self.skipped = NONE_ABOVE
        self.can_skip = False

    def wrote(self, batch: Batch) -> None:
        """``batch`` (whole frames) was handed to the socket: keep it until acknowledged
        (unless everything numbered is acknowledged already: then it holds control frames
        only). A large chunk (the batch, or one of its chunks) is kept as a copy in a
        :class:`ChunkPool` buffer."""
        if self.acked == self.next_seq:
            return
        if type(batch) is bytearray:
            if CHUNK_POOL_MIN <= len(batch) <= CHUNK_POOL_SIZE:
                copy, buf = self._pool().copy(batch)
                self.sent.append((self.next_seq, self.queued, copy, buf))
                return
        elif type(batch) is tuple:  # e.g. an ACK, then the data: the large one is copied
            for i, chunk in enumerate(batch):
                if (type(chunk) is bytearray
                        and CHUNK_POOL_MIN <= len(chunk) <= CHUNK_POOL_SIZE):
                    copy, buf = self._pool().copy(chunk)
                    batch = (*batch[:i], copy, *batch[i + 1:])
                    self.sent.append((self.next_seq, self.queued, batch, buf))
                    return
        self.sent.append((self.next_seq, self.queued, batch, None))

    def _pool(self) -> ChunkPool:
        pool = self.pool
        if pool is None:
            pool = self.pool = ChunkPool(budget=self.spare_budget)
        return pool

    def on_ack(self, seq: int) -> int:
        """The peer has everything up to ``seq``: free the batches it covers; return how
        many messages this acknowledges that were not before (0: nothing new)."""
        seq = min(seq, self.next_seq)
        n = seq - self.acked
        if n <= 0:
            return 0
        self.acked = seq
        sent = self.sent
        k = 0
        for tag, queued, _, buf in sent:
            if tag > seq:
                break
            self.freed = queued
            k += 1
            if buf is not None and self.pool is not None:
                self.pool.give(buf)
        if k:
            del sent[:k]
        if seq == self.next_seq:
            self.freed = self.queued  # nothing numbered is waiting any more
        if self.expiring or self.skipped:
            self._forget_acked()
        return n

    def trim_pool(self, idle_only: bool = True) -> None:
        """(now and then, e.g. at each keepalive PING) Free the pool's spare buffers if
        everything written was acknowledged: an idle connection holds none. With
        ``idle_only`` False (its session ended: kept for a resume, nothing is written
        until then) always; the copies of what is unacknowledged are not spares and stay."""
        if self.pool is not None and (not idle_only or self.acked == self.next_seq):
            self.pool.trim()

    # -- expiring --------------------------------------------------------------------------
    def expires(self, seq: int, deadline: float) -> None:
        """Message ``seq`` (just numbered) is worthless after ``deadline`` (the clock of
        whoever calls :meth:`expire`). Kept only while it can be skipped (ACKs agreed, the
        peer understands SKIP)."""
        if self.tracking and self.can_skip and seq > self.acked:
            if self.expiring is None:
                self.expiring = {}
            self.expiring[seq] = deadline

    def next_expiry(self) -> float | None:
        """The earliest deadline of the messages in ``expiring`` (None: none)."""
        return min(self.expiring.values()) if self.expiring else None

    def expire(self, now: float) -> tuple[list[Unacked], set[int]]:
        """Give up the unacknowledged messages whose deadline passed by ``now``: those
        still queued of which no byte was written leave the queue; all are marked
        ``skipped``. Returns them (seq, payload, stream, priority, text: for the report)
        and the numbers taken out of the queue (their SKIP goes at once; for the others it
        goes after a resume: the peer may have them already). Not for the hot path."""
        self._forget_acked()
        expiring = self.expiring
        due = {seq for seq, at in expiring.items() if at <= now} if expiring else set()
        if not due:
            return [], set()
        assert expiring is not None
        for seq in due:
            del expiring[seq]
        if not expiring:
            self.expiring = None
        frames, _ = self._pending(take=False)
        lost = _messages([f for f in frames if f.seq in due])
        removed = self.queue.drop_data(due) if self.queue is not None else set()
        self.skipped = due | self.skipped
        return lost, removed

    def _forget_acked(self) -> None:
        acked = self.acked
        expiring = self.expiring
        if expiring is not None:
            while expiring:
                seq = next(iter(expiring))
                if seq > acked:
                    break
                del expiring[seq]
            if not expiring:
                self.expiring = None
        if self.skipped:
            self.skipped = {s for s in self.skipped if s > acked} or NONE_ABOVE

    def _pending(self, take: bool) -> tuple[list[DataFrame], int]:
        """The DATA frames not acknowledged, in the order they were written or queued, and
        how many messages among them were written already (the rest were only queued);
        with ``take``, the kept batches and the old scheduler's queue are emptied."""
        acked = self.acked
        skipped = self.skipped
        out = [f for f in data_frames([b for _, _, b, _ in self.sent])
               if f.seq > acked and f.seq not in skipped]
        written = len({f.seq for f in out})
        q = self.queue
        if q is not None:
            queued = q.clear(keep_control=True) if take else q.queued_items()
            out += [f for f in data_frames(queued) if f.seq > acked and f.seq not in skipped]
        if take:
            self.sent.clear()
            self.pool = None  # ``out`` may hold views of its buffers: never reuse them
        return out, written

    def take_resend(self, peer_floor: int) -> list[DataFrame]:
        """After a resume: what the peer (which has everything up to ``peer_floor``) still
        needs, to queue again in this order with the same numbers; the messages given up
        are not among them (the caller sends a SKIP for each number left in ``skipped``).
        The caller then :meth:`attach`-es its session."""
        self.on_ack(peer_floor)
        out, written = self._pending(take=True)
        self.resent += written  # only what went out before and the peer does not have
        return out

    def unacked(self) -> list[Unacked]:
        """The messages not acknowledged yet, oldest first (not for the hot path)."""
        return _messages(self._pending(take=False)[0])

    def take_unconfirmed(self) -> list[Unacked]:
        """Give up on everything not acknowledged (the peer lost the session)."""
        out = _messages(self._pending(take=True)[0]) if self.tracking else []
        self.acked = self.next_seq
        self.freed = self.queued
        self.expiring = None
        self.skipped = NONE_ABOVE
        return out

    def restart_numbering(self) -> None:
        self.next_seq = 0
        self.acked = 0
        self.expiring = None
        self.skipped = NONE_ABOVE

    # -- receiving -------------------------------------------------------------------------
    def settle(self) -> None:
        """Move the floor over numbers delivered out of order that are now contiguous."""
        above = self.above_set()
        floor = self.floor
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self.floor = floor
        if not above:
            self.above = NONE_ABOVE

    def above_set(self) -> set[int]:
        """``above`` as a set of its own, to add to."""
        above = self.above
        if isinstance(above, set):
            return above
        new: set[int] = set()
        self.above = new
        return new

    def is_duplicate(self, seq: int) -> bool:
        return seq <= self.floor or seq in self.above

    def mark(self, seq: int) -> None:
        """``seq`` was delivered."""
        if seq == self.floor + 1:
            self.floor = seq
            if self.above:
                self.settle()
        elif seq > self.floor:
            self.above_set().add(seq)

    def reset_receive(self) -> None:
        """A new session with the peer: numbering starts again."""
        self.floor = 0
        self.above = NONE_ABOVE
        self.ack_sent = 0


def _messages(frames: list[DataFrame]) -> list[Unacked]:
    """Whole messages from their frames (fragments joined, a queued job's whole payload)."""
    parts: dict[int, list[Any]] = {}
    meta: dict[int, tuple[int, int, bool]] = {}
    for f in frames:
        meta.setdefault(f.seq, (f.stream, f.priority, _text(f.flags)))
        if f.job is not None:
            parts[f.seq] = [f.job.view]  # the whole message, sent fragments included
        elif f.frame is not None:
            skip = _HEADER + (FRAG_EXT.size if f.flags & FLAG_FRAG else 0)
            parts.setdefault(f.seq, []).append(f.frame[skip:])
    return [(seq, b"".join(parts[seq]), *meta[seq]) for seq in sorted(parts)]


def _text(flags: int) -> bool:
    """The ``text`` field of an unconfirmed message: a bool, or (a message with a meta block
    or compressed) its wire flags as an ``int``, as ``send_message`` takes them back."""
    if flags & (FLAG_META | FLAG_ZIP):
        return cast(bool, flags & (FLAG_TEXT | FLAG_META | FLAG_ZIP))
    return bool(flags & FLAG_TEXT)
