"""The decoder of ``{packet, 4}`` frames (:class:`RawDecoder`; what it shares with the
native one: :class:`~.decoder.DecoderBase`)."""

from __future__ import annotations

from typing import Any

from ..exceptions import ProtocolError
from .decoder import DIRECT_THRESHOLD, DecoderBase
from .fragmentation import BodyBuffer, BufferRecycler
from .framing import RAW_KEEPALIVE, RAW_PREFIX, GoAwayCode
from .sniff import wrong_peer

__all__ = ["RawDecoder"]

#: a first raw length this large (335 MB) may be another protocol's opening (see sniff.py)
_FOREIGN_MIN = 0x14000000
_unpack_len = RAW_PREFIX.unpack_from

class RawDecoder(DecoderBase):
    """Decoder of ``{packet, 4}`` frames: a 4-byte length, then the message."""

    __slots__ = ("max_message_size", "keepalive_filter", "keepalives", "recycler")

    def __init__(self, conn_id: int, transport: str, peer: Any, max_message_size: int,
                 keepalive_filter: bool = True) -> None:
        super().__init__(conn_id, transport, peer)
        self.max_message_size = max_message_size
        self.keepalive_filter = keepalive_filter
        self.keepalives = 0
        self.recycler = BufferRecycler()

    def _parse(self, buf: bytes) -> int:
        n = len(buf)
        off = 0
        maxm = self.max_message_size
        append = self.messages.append
        unpack = _unpack_len
        nbytes = 0
        try:
            while n - off >= 4:
                (length,) = unpack(buf, off)
                if length > maxm:
                    raise self._too_long(buf, off, length)
                end = off + 4 + length
                if end > n:
                    if length >= _FOREIGN_MIN and self._buf_at + off == 0:
                        self._check_first(buf)
                    if length >= DIRECT_THRESHOLD:
                        self._direct_raw(buf, off, length)
                        off = n
                    break
                payload = buf[off + 4:end]
                off = end
                if length == 1 and self.keepalive_filter and payload == RAW_KEEPALIVE:
                    self.keepalives += 1
                    continue
                nbytes += length
                append(payload)
        finally:
            self.bytes_received += nbytes
        return off

    def _too_long(self, buf: bytes, off: int, length: int) -> ProtocolError:
        """The error for a length above ``max_message_size``: on the first frame, a peer
        of another protocol is named (its first bytes are not a length)."""
        if self._buf_at + off == 0:  # the peer's very first bytes
            hint = wrong_peer(buf[:16])
            if hint is not None:
                return ProtocolError(hint, GoAwayCode.PROTOCOL_ERROR)
        return ProtocolError(f"raw message length {length} exceeds max_message_size "
                             f"({self.max_message_size})", GoAwayCode.MESSAGE_TOO_LARGE)

    def _check_first(self, buf: bytes) -> None:
        """A first length within a raised ``max_message_size`` but far beyond any likely
        message: fail at once if it is the opening of another protocol."""
        hint = wrong_peer(buf[:16])
        if hint is not None:
            raise ProtocolError(hint, GoAwayCode.PROTOCOL_ERROR)

    def _direct_raw(self, buf: bytes, off: int, size: int) -> None:
        body = BodyBuffer(size, self.recycler, self.budget)

        def finish() -> None:
            self.bytes_received += size
            self.messages.append(body.take())

        self._go_direct(body, size, buf, off + 4, finish)
