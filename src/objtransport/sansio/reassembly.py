"""What a datagram peer's receiver remembers: which message numbers are done, and the
fragmented messages being put together (docs/protocol.md section 6).

* :class:`SeqWindow`: the numbers already delivered or given up, in a bounded window; a
  number seen again is a duplicate.
* :class:`Reassembly`: the partial messages of one peer, pieces arriving in any order,
  bounded by count (``max_partial_messages``), bytes (``max_reassembly_bytes``, and a
  :class:`ReassemblyBudget` shared by every peer of a listener) and age
  (``reassembly_timeout``). Bytes are counted as received, not as declared, and each
  piece and partial message is charged what holding it costs beyond its bytes
  (:data:`PIECE_OVERHEAD`, :data:`PARTIAL_OVERHEAD`), so that 1-byte pieces cannot hold
  fifty times the budget.

Nothing here raises for what a peer sends: each inconsistency is counted and dropped.
"""

from __future__ import annotations

from ..config import Options

__all__ = ["PARTIAL_OVERHEAD", "PIECE_OVERHEAD", "WINDOW", "Partial", "Reassembly",
           "ReassemblyBudget", "SeqWindow"]

#: how many message numbers the duplicate filter remembers behind the newest
WINDOW = 4096
#: numbers of messages given up, remembered so late fragments count as expired
_GAVE_UP_KEEP = 1024
#: memory a held piece costs beyond its bytes (bytes object, dict slot, offset key),
#: measured with tracemalloc on CPython 3.12: 57 bytes for a 1-byte piece
PIECE_OVERHEAD = 64
#: memory a partial message costs before its pieces (the object, its dict, the entries
#: that index it), measured the same way: 385 bytes for a message of one 1-byte piece
PARTIAL_OVERHEAD = 384


class ReassemblyBudget:
    """Bytes of partial messages held by every peer that shares it (one UDP or TCP
    listener). Stream connections charge it with :meth:`try_charge` / :meth:`release`."""

    __slots__ = ("limit", "used", "peak", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0  # charges refused (each closed its connection)

    def __repr__(self) -> str:
        return f"<ReassemblyBudget used={self.used} peak={self.peak} limit={self.limit}>"

    def try_charge(self, n: int) -> bool:
        """Take ``n`` bytes; False (counted in ``refused``) when that would pass ``limit``."""
        if self.used + n > self.limit:
            self.refused += 1
            return False
        self.used += n
        if self.used > self.peak:
            self.peak = self.used
        return True

    def release(self, n: int) -> None:
        self.used -= n


class SeqWindow:
    """Which message numbers are done (delivered or given up), in a bounded window.

    ``floor``: every number up to it is done or was passed over (counted in ``passed``);
    ``above``: numbers done beyond the floor. When the newest number gets more than ``size``
    ahead of the floor, the floor moves up and the numbers it passes that never completed
    count as missing. A number at or below the floor is a duplicate, unless it is small while
    the floor is far above (the peer started numbering again: ``restarts``).
    """

    __slots__ = ("floor", "above", "hi", "passed", "size", "restarts")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.floor = 0
        self.above: set[int] = set()
        self.hi = 0  # the highest number done
        self.passed = 0  # numbers the floor passed over that never completed
        self.restarts = 0

    def seen(self, seq: int) -> bool:
        """True when ``seq`` is already done (a duplicate)."""
        if not self.hi and not self.above and seq > self.size:
            self.floor = seq - 1  # joining a numbering already under way (a fresh window)
            return False
        if seq <= self.floor:
            if seq <= self.size and self.floor > 2 * self.size:
                self.passed += self.hi - self.floor - len(self.above)
                self.floor = self.hi = 0
                self.above.clear()
                self.restarts += 1
                return False
            return True
        return seq in self.above

    def mark(self, seq: int) -> None:
        """Record ``seq`` as done."""
        floor = self.floor
        if seq <= floor:
            return
        above = self.above
        if seq == floor + 1:
            floor = seq
            while above and floor + 1 in above:
                floor += 1
                above.discard(floor)
            self.floor = floor
            if floor > self.hi:
                self.hi = floor
            return
        above.add(seq)
        if seq > self.hi:
            self.hi = seq
        if seq - floor > self.size:
            self._advance(seq - self.size)

    def _advance(self, new_floor: int) -> None:
        above = self.above
        floor = self.floor
        span = new_floor - floor
        if span > 4 * len(above):
            done = [s for s in above if s <= new_floor]
            self.passed += span - len(done)
            above.difference_update(done)
        else:
            for s in range(floor + 1, new_floor + 1):
                if s in above:
                    above.discard(s)
                else:
                    self.passed += 1
        while above and new_floor + 1 in above:
            new_floor += 1
            above.discard(new_floor)
        self.floor = new_floor

    @property
    def missing(self) -> int:
        """Numbers below the newest one that never completed (passed over or still gaps)."""
        return self.passed + self.hi - self.floor - len(self.above)


class Partial:
    """A fragmented message being put together: its pieces by offset."""

    __slots__ = ("total", "step", "final_off", "pieces", "held", "cost", "created",
                 "stream", "priority", "text")

    def __init__(self, total: int, stream: int, priority: int, text: bool,
                 now: float) -> None:
        self.total = total
        self.step = 0  # the size of every piece but the last (0: not known yet)
        self.final_off = -1  # offset of the last piece, while the step is not known
        self.pieces: dict[int, bytes] = {}
        self.held = 0
        self.cost = 0  # what it is charged: its bytes and overheads
        self.created = now
        self.stream = stream
        self.priority = priority
        self.text = text

    def fits(self, offset: int, piece: int) -> bool:
        """Is a piece at ``offset`` consistent with the others (equal steps, no overlap)?"""
        final = offset + piece == self.total
        step = self.step
        if step:
            if offset % step:
                return False
            return piece <= step if final else piece == step
        if final:
            if self.final_off >= 0 and self.final_off != offset:
                return False
            self.final_off = offset
            return True
        fo = self.final_off
        if offset % piece or (fo >= 0 and (fo % piece or self.total - fo > piece)):
            return False
        self.step = piece
        return True

    @property
    def complete(self) -> bool:
        return self.held == self.total

    def assemble(self) -> bytes:
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        step = self.step
        return b"".join([pieces[o] for o in range(0, self.total, step)])


class Reassembly:
    """The partial messages of one datagram peer, within its limits.

    The session asks :meth:`check` about each fragment, :meth:`start` for a new message
    number it accepted, :meth:`add` for the piece, and :meth:`finish` once the partial is
    complete. A message given up (evicted for room, expired, or the session ending) is
    marked done in ``window``, so its late fragments count as expired, not as new.
    """

    def __init__(self, options: Options, window: SeqWindow,
                 budget: ReassemblyBudget | None) -> None:
        self.max_message_size = options.max_message_size
        self.max_partials = options.max_partial_messages
        self.max_bytes = options.max_reassembly_bytes
        self.timeout = options.reassembly_timeout
        self.window = window
        self.budget = budget
        self.partials: dict[int, Partial] = {}
        self.gave_up: dict[int, None] = {}
        self.held = 0  # bytes of partial messages held
        self.cost = 0  # what they are charged: bytes and overheads (the limits apply to it)
        # counters (see datagram.LOSS_COUNTERS)
        self.fragments_received = self.fragments_expired = self.messages_dropped = 0
        self.oversized = self.inconsistent = self.duplicates = self.evicted = 0

    def check(self, seq: int, offset: int, piece: int, total: int, stream: int,
              prio: int) -> bool:
        """Count the fragment; False (counted) if it cannot belong to a message we keep."""
        self.fragments_received += 1
        if total > self.max_message_size:
            self.oversized += 1
            return False
        if offset + piece > total:
            self.inconsistent += 1
            return False
        p = self.partials.get(seq)
        if p is not None and (total != p.total or stream != p.stream or prio != p.priority):
            self.inconsistent += 1
            return False
        return True

    def start(self, seq: int, total: int, stream: int, prio: int, text: bool,
              now: float) -> Partial:
        """A partial for a new message number (the oldest one is given up if at the cap)."""
        parts = self.partials
        if len(parts) >= self.max_partials:
            self.give_up(next(iter(parts)), evicted=True)
        p = parts[seq] = Partial(total, stream, prio, text, now)
        return p

    def add(self, seq: int, p: Partial, offset: int, piece: bytes) -> bool:
        """Keep one piece; False (counted) if it does not fit or is a duplicate, or no
        room is left for it (the message is then given up)."""
        n = len(piece)
        if not p.fits(offset, n):
            self.inconsistent += 1
            return False
        if offset in p.pieces:
            self.duplicates += 1
            return False
        if not self._charge(n + PIECE_OVERHEAD + (0 if p.cost else PARTIAL_OVERHEAD), p):
            self.give_up(seq, evicted=True)
            return False
        p.pieces[offset] = piece
        p.held += n
        self.held += n
        return True

    def finish(self, seq: int, p: Partial) -> bytes:
        """The complete message of ``p`` (no longer held; its number marked done)."""
        del self.partials[seq]
        self._release(p)
        self.window.mark(seq)
        return p.assemble()

    def _charge(self, n: int, keep: Partial) -> bool:
        """Charge ``n`` bytes to ``keep``, giving up this peer's oldest other partials if
        need be."""
        limit = self.max_bytes
        budget = self.budget
        while self.cost + n > limit or (budget is not None and budget.used + n > budget.limit):
            victim = next((s for s, p in self.partials.items() if p is not keep), None)
            if victim is None:
                return False
            self.give_up(victim, evicted=True)
        self.cost += n
        keep.cost += n
        if budget is not None:
            budget.used += n
            if budget.used > budget.peak:
                budget.peak = budget.used
        return True

    def _release(self, p: Partial) -> None:
        self.held -= p.held
        self.cost -= p.cost
        if self.budget is not None:
            self.budget.used -= p.cost

    def give_up(self, seq: int, evicted: bool = False) -> None:
        """Drop a partial message: counted as dropped, its fragments as expired."""
        p = self.partials.pop(seq)
        self._release(p)
        self.messages_dropped += 1
        self.fragments_expired += len(p.pieces)
        if evicted:
            self.evicted += 1
        self.window.mark(seq)
        gave_up = self.gave_up
        gave_up[seq] = None
        if len(gave_up) > _GAVE_UP_KEEP:
            del gave_up[next(iter(gave_up))]

    def late(self, seq: int) -> bool:
        """True (counted as an expired fragment) if ``seq`` is a message given up."""
        if seq in self.gave_up:
            self.fragments_expired += 1
            return True
        return False

    def discard(self) -> None:
        """Give up every partial (the session ended)."""
        for seq in list(self.partials):
            self.give_up(seq)

    def next_expiry(self) -> float | None:
        """When the oldest partial expires (None if none is held)."""
        parts = self.partials
        if not parts:
            return None
        return next(iter(parts.values())).created + self.timeout

    def expire(self, now: float) -> None:
        """Give up the partials older than ``reassembly_timeout``."""
        parts = self.partials
        while parts:
            seq, p = next(iter(parts.items()))
            if p.created + self.timeout > now:
                break
            self.give_up(seq)
