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

__all__ = ["ResumeState", "Unacked"]

#: (seq, payload, stream, priority, text): a tuple, cheap on the hot path
Unacked = tuple[int, bytes, int, int, bool]


class ResumeState:
    __slots__ = ("session_id", "next_seq", "unacked", "unacked_bytes", "floor", "above",
                 "ack_sent", "peer_session_id", "established", "duplicates", "resent")

    def __init__(self, session_id: bytes) -> None:
        self.session_id = session_id
        self.next_seq = 0  # last sequence number given out
        self.unacked: deque[Unacked] = deque()
        self.unacked_bytes = 0
        self.floor = 0  # everything <= floor was delivered
        self.above: set[int] = set()
        self.ack_sent = 0  # the last floor we acknowledged
        self.peer_session_id = b""
        self.established = False  # a handshake completed at least once
        self.duplicates = 0
        self.resent = 0

    # -- sending ---------------------------------------------------------------------------
    def on_ack(self, seq: int) -> int:
        """The peer has everything up to ``seq``; forget those; return the bytes freed."""
        freed = 0
        q = self.unacked
        while q and q[0][0] <= seq:
            freed += len(q.popleft()[1])
        self.unacked_bytes -= freed
        return freed

    def take_unconfirmed(self) -> list[Unacked]:
        """Give up on everything not acknowledged (the peer lost the session)."""
        out = list(self.unacked)
        self.unacked.clear()
        self.unacked_bytes = 0
        return out

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
