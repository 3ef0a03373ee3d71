"""Several whole frames in one UDP datagram (``PACK``, docs/protocol.md section 6):
:class:`PackedFrames`, a base of :class:`~.datagram_receive.DatagramReceiver` that walks
such a datagram."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import Received
from .framing import FRAME_HEADER
from .reassembly import SeqWindow

__all__ = ["PackedFrames"]

_unpack = FRAME_HEADER.unpack_from


class PackedFrames:
    """``_receive_packed``; the receiver's state it uses is declared here."""

    window: SeqWindow
    messages: list[Received]
    max_message_size: int
    _hi_key: int
    _received_bytes: int
    garbage: int
    reordered: int
    messages_received: int
    datagrams_received: int

    if TYPE_CHECKING:
        @property
        def closed(self) -> bool: ...

        def receive_datagram(self, data: bytes | bytearray | memoryview,
                             now: float) -> None: ...

    def _receive_packed(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """A datagram of several whole frames (docs/protocol.md section 6): each is handled
        as if it had come alone, the common DATA inline as in :meth:`receive_run`; a frame
        that does not end inside the datagram is garbage (the ones before it count). One
        datagram in the counters."""
        view = memoryview(data)
        n = len(view)
        w = self.window
        append = self.messages.append
        limit = self.max_message_size + 20
        hi = self._hi_key
        got = nbytes = off = others = 0
        while off < n:
            if n - off < 20:
                self.garbage += 1
                break
            length, ver, typ, flags, prio, stream, seq = _unpack(view, off)
            end = off + 4 + length
            if end > n or length < 16:
                self.garbage += 1
                break
            if (typ == 2 and seq == w.floor + 1 and not flags and not stream and prio == 2
                    and ver == 1 and end - off <= limit and not w.above):
                w.floor = w.hi = seq
                if seq << 32 > hi:
                    hi = seq << 32
                else:
                    self.reordered += 1
                append(bytes(view[off + 20:end]))
                got += 1
                nbytes += length - 16
                off = end
                continue
            self._hi_key = hi  # anything else: as a datagram of its own
            self.receive_datagram(view[off:end], now)
            others += 1
            if self.closed:  # a GOAWAY among them
                break
            hi = self._hi_key
            off = end
        self._hi_key = hi
        self.messages_received += got
        self._received_bytes += nbytes
        self.datagrams_received -= others
