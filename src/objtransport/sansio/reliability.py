"""What a native session keeps across reconnections so that nothing is lost or duplicated.

One :class:`ResumeState` lives as long as the logical connection (a client's id, or a
listener's connection kept for ``session_resume_timeout`` after its socket broke), while the
sockets and the :class:`~objtransport.sansio.session.NativeSession` objects come and go.

* Sending: every message accepted gets the next sequence number and stays in ``unacked``
  until the peer's cumulative ACK covers it. After a resume, what the peer had not received
  is sent again with the same numbers.
* Receiving: ``floor`` is the highest number below which everything was delivered; ``above``
  holds the numbers delivered beyond it (priorities and streams complete out of order). A
  number at or below the floor, or in ``above``, is a duplicate and is dropped.

Memory: ``unacked`` holds references to the payloads (no copies of ``bytes``), at most
``max_unacked_bytes`` before ``send_data`` waits; ``above`` holds at most as many integers as
messages the peer may have unacknowledged.
"""

from __future__ import annotations

from collections import deque
from itertools import islice, repeat

__all__ = ["ResumeState", "Unacked"]

#: (seq, payload, stream, priority, text): a tuple, cheap on the hot path
Unacked = tuple[int, bytes, int, int, bool]


class ResumeState:
    __slots__ = ("session_id", "next_seq", "acked", "unacked_data", "meta", "unacked_bytes",
                 "floor", "above", "ack_sent", "peer_session_id", "established",
                 "duplicates", "resent")

    def __init__(self, session_id: bytes) -> None:
        self.session_id = session_id
        self.next_seq = 0  # last sequence number given out
        # unacknowledged messages are acked+1 .. next_seq, payloads in order. Only plain
        # objects (bytes, ints) are kept per message: a tuple per message would be tracked
        # by the cyclic GC, and 100,000s of them made acknowledged sending 25 % slower.
        self.acked = 0  # the peer has everything up to here
        self.unacked_data: deque[bytes] = deque()
        self.meta: dict[int, tuple[int, int, bool]] = {}  # seq -> (stream, priority, text)
        self.unacked_bytes = 0
        self.floor = 0  # everything <= floor was delivered
        self.above: set[int] = set()
        self.ack_sent = 0  # the last floor we acknowledged
        self.peer_session_id = b""
        self.established = False  # a handshake completed at least once
        self.duplicates = 0
        self.resent = 0

    # -- sending ---------------------------------------------------------------------------
    @property
    def unacked_count(self) -> int:
        return len(self.unacked_data)

    def unacked(self) -> list[Unacked]:
        """The messages not acknowledged yet, oldest first (not for the hot path)."""
        meta = self.meta
        first = self.acked + 1
        return [(first + i, data, *meta.get(first + i, (0, 2, False)))
                for i, data in enumerate(self.unacked_data)]

    def on_ack(self, seq: int) -> int:
        """The peer has everything up to ``seq``; forget those; return the bytes freed."""
        n = min(seq - self.acked, len(self.unacked_data))
        if n <= 0:
            return 0
        q = self.unacked_data
        if n == len(q):
            freed = self.unacked_bytes
            q.clear()
        else:
            freed = sum(map(len, islice(q, n)))
            pop = q.popleft
            for _ in repeat(None, n):
                pop()
        if self.meta:
            for s in range(self.acked + 1, self.acked + n + 1):
                self.meta.pop(s, None)
        self.acked += n
        self.unacked_bytes -= freed
        return freed

    def take_unconfirmed(self) -> list[Unacked]:
        """Give up on everything not acknowledged (the peer lost the session)."""
        out = self.unacked()
        self.unacked_data.clear()
        self.meta.clear()
        self.unacked_bytes = 0
        self.acked = self.next_seq
        return out

    def restart_numbering(self) -> None:
        self.next_seq = 0
        self.acked = 0

    # -- receiving -------------------------------------------------------------------------
    def settle(self) -> None:
        """Move the floor over numbers delivered out of order that are now contiguous."""
        above = self.above
        floor = self.floor
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self.floor = floor

    def is_duplicate(self, seq: int) -> bool:
        return seq <= self.floor or seq in self.above

    def mark(self, seq: int) -> None:
        """``seq`` was delivered."""
        if seq == self.floor + 1:
            self.floor = seq
            if self.above:
                self.settle()
        elif seq > self.floor:
            self.above.add(seq)

    def reset_receive(self) -> None:
        """A new session with the peer: numbering starts again."""
        self.floor = 0
        self.above.clear()
        self.ack_sent = 0
