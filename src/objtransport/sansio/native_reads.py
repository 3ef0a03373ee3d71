"""How a native decoder takes a read into its receive buffer (:class:`PlainReads`, the base
of :class:`~.native_decoder.NativeDecoder`): the plain frames straight out of it
(:mod:`.plain_run`), the rest through ``feed``.

A read that is one whole plain frame and nothing else (a request/response peer's usual
read) has a path of its own, :meth:`PlainReads.read_lone`: one call from the session, no
list, no run. Pure: no I/O, no clock."""

from __future__ import annotations

import struct
from typing import Any

from .decoder import DIRECT_THRESHOLD, DecoderBase
from .events import Received
from .framing import RAW_PREFIX, VERSION, FrameType
from .plain_run import PLAIN_HEAD, plain_run
from .reliability import ResumeState

__all__ = ["ACK_HEAD", "CONTROL_FRAME", "PING_HEAD", "PlainReads"]

_unpack_len = RAW_PREFIX.unpack_from
#: length, the 8 header bytes from version to stream as one number, sequence number
_unpack_plain = struct.Struct("!IQQ").unpack_from
#: length, then version, type, flags and priority as one number
_unpack_head = struct.Struct("!II").unpack_from
#: a PING or an ACK frame: the 20-byte header and an 8-byte payload (the token, the number)
CONTROL_FRAME = 28
#: version 1, PING (4) or ACK (3), no flags, priority 0 (control)
PING_HEAD = int.from_bytes(bytes((VERSION, FrameType.PING, 0, 0)), "big")
ACK_HEAD = int.from_bytes(bytes((VERSION, FrameType.ACK, 0, 0)), "big")


class PlainReads(DecoderBase):
    """The read path of :class:`~.native_decoder.NativeDecoder` (which holds the state
    declared here)."""

    __slots__ = ()

    max_frame_size: int
    accept_data: bool
    rx: ResumeState | None

    def read_lone(self, nbytes: int) -> bytes | None:
        """The read of ``nbytes`` into the receive buffer is one whole plain frame (the next
        in sequence with acknowledgements) and nothing is in progress: its payload, counted
        and recorded as delivered. Otherwise None, with nothing changed: the caller hands
        the read to ``buffer_updated``, which decodes it in full."""
        if (nbytes < 20 or self._pending or self._direct is not None or self._skip
                or self.messages or not self.accept_data):
            return None
        view = self._rview
        length, head, seq = _unpack_plain(view, 0)
        if length != nbytes - 4 or head != PLAIN_HEAD or length > self.max_frame_size:
            return None
        rx = self.rx
        if rx is not None:
            if seq != rx.floor + 1 or rx.above:
                return None
            rx.floor = seq
        self._header_only = False
        self.fed += nbytes
        self.bytes_received += nbytes - 20
        return bytes(view[20:nbytes])

    def read_control(self) -> tuple[int, bytes] | None:
        """The last read (:data:`CONTROL_FRAME` bytes into the receive buffer) is one whole
        PING or ACK (version 1, no flags, priority 0; the stream and sequence fields mean
        nothing for them, as in the general path) and nothing is in progress: its type and
        payload, the read counted. Otherwise None, with nothing changed (``buffer_updated``
        decodes it). An idle link's PING, a lone ACK then cost no control list, no walk
        (docs/design.md, "Idle connections, a ping burst")."""
        if (self._pending or self._direct is not None or self._skip or self.messages
                or not self.accept_data):
            return None
        view = self._rview
        length, head = _unpack_head(view, 0)
        if length != CONTROL_FRAME - 4 or (head != PING_HEAD and head != ACK_HEAD):
            return None
        self._header_only = False
        self.fed += CONTROL_FRAME
        return view[5], bytes(view[20:CONTROL_FRAME])

    def _plain_run(self, buf: Any, off: int, n: int) -> int:
        """The plain frames from ``off``; returns where they end (see :mod:`.plain_run`).
        With messages out of order pending, the general path keeps the order."""
        rx = self.rx
        if rx is not None and rx.above:
            return off
        out: list[Received] = []
        end, floor = plain_run(buf, off, n, None if rx is None else rx.floor,
                               self.max_frame_size, out)
        if out:
            if rx is not None:
                rx.floor = floor
            self.bytes_received += end - off - 20 * len(out)
            if self.messages:
                self.messages += out
            else:
                self.messages = out
        return end

    def _feed_read(self, nbytes: int) -> None:
        """A read of ``nbytes`` into the receive buffer: the plain frames are decoded
        straight out of it (each payload copied once); a frame left incomplete by the last
        read is completed with a copy of just its missing bytes; whatever else goes to
        :meth:`feed` (one ``bytes`` copy, as before)."""
        view = self._rview
        if not self.accept_data:  # the handshake first (the HELLO stops decoding)
            self.feed(view[:nbytes])
            return
        off = 0
        pending = len(self._pending)
        if pending:
            # what is pending starts a frame: its length (with the read's first bytes)
            head = self._pending if pending >= 4 else (
                self._pending + bytes(view[:4]) if nbytes >= 4 else b"")
            need = _unpack_len(head)[0] + 4 - pending if head else 0
            if need <= 0 or need > nbytes or need >= DIRECT_THRESHOLD:
                self.feed(view[:nbytes])
                return
            self.feed(view[:need])  # that frame, from its pending start and these bytes
            off = need
            if self._pending or self._direct is not None or self._skip:
                self.feed(view[off:nbytes])
                return
        end = self._plain_run(view, off, nbytes)
        self.fed += end - off
        if end < nbytes:
            self.feed(view[end:nbytes])
