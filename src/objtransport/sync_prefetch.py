"""Messages the blocking API fetched ahead (:class:`Prefetched`).

Crossing from a caller's thread to the loop thread costs tens of microseconds, far more
than a message: ``objtransport.sync``'s ``messages()`` therefore takes what is waiting in
one crossing (``receive_many``) and hands the messages out one by one. What it took and
has not handed out yet is kept here, so ``receive()``, ``receive_many()`` and a later
``messages()`` get it first, in its order: leaving a ``for`` loop early loses nothing.
"""

from __future__ import annotations

import threading
from collections import deque

from .sansio.events import Message

__all__ = ["PREFETCH", "Prefetched"]

#: how many messages ``messages()`` takes in one crossing, at most (it holds them beyond
#: ``receive_queue_size``, so this also bounds what the blocking API keeps on top of it)
PREFETCH = 256


class Prefetched:
    """Thread-safe: any number of caller threads take from it."""

    def __init__(self) -> None:
        self._msgs: deque[Message] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._msgs)

    def keep(self, msgs: list[Message]) -> None:
        """Messages fetched and not handed out (they are older than any kept ones): the
        next takers get them first."""
        with self._lock:
            self._msgs.extendleft(reversed(msgs))  # they came before what is kept

    def take(self, conn_id: int | None, most: int) -> list[Message]:
        """Up to ``most`` kept messages (of ``conn_id``, or of any connection), in order."""
        if not self._msgs:
            return []
        with self._lock:
            msgs = self._msgs
            if conn_id is None:
                return [msgs.popleft() for _ in range(min(most, len(msgs)))]
            taken = [m for m in msgs if m.conn_id == conn_id][:most]
            if taken:
                chosen = {id(m) for m in taken}
                self._msgs = deque(m for m in msgs if id(m) not in chosen)
            return taken
