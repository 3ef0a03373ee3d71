"""Messages sent while a native connection reconnects (:class:`OfflineQueue`).

A native session is lossless across reconnections, so a sender need not wait for the new
socket: ``send_data`` puts its message here, up to ``max_pending_bytes`` (NATS buffers
2 MiB while it reconnects, pyzmq up to its high-water mark), and returns. When the next
link is up (after the resumed session queued what the peer had not acknowledged) the
connection moves these messages into it, in order; they get their sequence numbers then.
Past the budget a sender waits for the link (``SendTimeout`` after its timeout). If the
connection is given up or closed first, they are reported as unconfirmed, like the
messages the peer did not acknowledge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .drivers.base import Link
from .exceptions import MessageTooLarge
from .sansio.reliability import Unacked

__all__ = ["OfflineQueue"]

#: (payload, stream, priority, text)
_Entry = tuple[bytes, int, int, bool]


class OfflineQueue:
    """Bounded FIFO of messages waiting for the next link."""

    __slots__ = ("limit", "bytes", "_entries")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: payload bytes waiting
        self.bytes = 0
        #: created by the first put (an empty deque costs ~760 bytes, per connection)
        self._entries: deque[_Entry] | None = None

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    def room_for(self, size: int) -> bool:
        """Would a message of ``size`` bytes fit (the first one always does)?"""
        return not self._entries or self.bytes + size <= self.limit

    def put(self, data: bytes | bytearray | memoryview, stream: int, priority: int,
            text: bool) -> None:
        """Keep one message (copied unless it is ``bytes``: the caller may reuse its
        buffer once ``send_data`` returned). The caller checked :meth:`room_for`."""
        payload = data if type(data) is bytes else bytes(data)
        if self._entries is None:
            self._entries = deque()
        self._entries.append((payload, stream, priority, text))
        self.bytes += len(payload)

    def put_many(self, datas: Iterable[bytes | bytearray | memoryview], stream: int,
                 priority: int, text: bool) -> None:
        for data in datas:
            self.put(data, stream, priority, text)

    def drain_into(self, link: Link) -> list[Unacked]:
        """Queue every waiting message on ``link`` (now up), oldest first. Returns those the
        new session refused (larger than the peer's ``max_message_size``)."""
        entries = self._entries
        self._entries = None
        refused: list[Unacked] = []
        while entries:
            payload, stream, priority, text = entries.popleft()
            try:
                link.queue(payload, stream, priority, text)
            except MessageTooLarge:
                refused.append((0, payload, stream, priority, text))
        self.bytes = 0
        return refused

    def take(self) -> list[Unacked]:
        """Give up on the waiting messages (sequence number 0: they never had one)."""
        out = [(0, payload, stream, priority, text)
               for payload, stream, priority, text in self._entries or ()]
        self._entries = None
        self.bytes = 0
        return out
