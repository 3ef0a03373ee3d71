"""Incremental frame decoding: what the native and raw decoders share.

Both decoders (:mod:`.native_decoder`, :mod:`.raw_decoder`) accept bytes in any chunking
(``feed``), or let the driver receive straight into their memory (``get_buffer`` /
``buffer_updated``, the shape of asyncio's ``BufferedProtocol``). Small frames are copied out
of the receive buffer per read (a run of plain frames straight into each payload's ``bytes``:
:mod:`.plain_run`; the rest of a read through one ``bytes`` copy, sliced); the body of a large
frame is received directly into the message's own chunks (:class:`BodyBuffer`), joined once
when complete; the read that completes such a body may bring up to a header's worth of the
next frame along, in the same chunk's room past the body (copied out, then decoded: one
read per large body instead of a body read and a header read). A declared length is
checked against the limit before anything of the body is kept, and the chunks grow with the
bytes that arrive, never with the declared length.

Complete messages are appended to ``self.messages`` as :data:`Received` items (a plain
``bytes`` payload for stream 0 / normal / binary, else a :class:`Message`; the caller takes the
list with :meth:`take_messages`); native control frames go to ``self.control`` as
``(type, payload, how many messages came before it)``. A violation raises
:class:`ProtocolError`; the decoder is then unusable and the caller closes the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import ProtocolError
from .events import Received
from .fragmentation import BodyBuffer
from .reassembly import ReassemblyBudget

__all__ = ["DecoderBase", "RECV_BUFFER_SIZE", "DIRECT_THRESHOLD"]

RECV_BUFFER_SIZE = 256 * 1024
#: frame bodies at least this large are received straight into their own buffer
DIRECT_THRESHOLD = 64 * 1024
_LARGEST_HEADER = 28  # length + header + fragment extension
_NO_BUFFER = memoryview(b"")
_FOREVER = 1 << 62  # bytes to discard after a protocol error

class _Direct:
    """A frame body being received straight into ``body`` until ``body.got`` is ``end``."""

    __slots__ = ("body", "end", "finish", "owned", "at")

    def __init__(self, body: BodyBuffer, end: int, finish: Any, owned: bool, at: int) -> None:
        self.at = at  # where the body began, in bytes fed
        self.body = body
        self.end = end
        self.finish = finish  # called with no argument when body.got reaches end
        self.owned = owned  # a whole message's body (not a fragment's partial message)


class DecoderBase:
    """Buffering, direct bodies and the receive buffer; each framing's decoder provides
    ``_parse(buf) -> bytes used``."""

    __slots__ = ("messages", "_pending", "_direct", "_rview", "conn_id",
                 "transport", "peer", "bytes_received", "_header_only", "_skip", "budget",
                 "fed", "_buf_at", "_skip_at")

    _parse: Callable[[bytes], int]

    def __init__(self, conn_id: int, transport: str, peer: Any) -> None:
        self.messages: list[Received] = []
        self._pending = b""
        self._direct: _Direct | None = None
        self._rview = _NO_BUFFER  # allocated on first use, or shared (use_buffer)
        self.conn_id = conn_id
        self.transport = transport
        self.peer = peer
        self.bytes_received = 0  # payload bytes of delivered messages
        #: after a large body, read only a header's worth next, so that the following
        #: large body is received in place too instead of through the shared buffer
        self._header_only = False
        self._skip = 0  # body bytes of a duplicate frame still to discard
        self._skip_at = 0  # where that frame began, in bytes fed
        self.fed = 0  # bytes given to the decoder
        self._buf_at = 0  # where the buffer being parsed begins, in bytes fed
        #: shared by a listener's connections: memory held for incomplete messages
        self.budget: ReassemblyBudget | None = None

    # -- driving ---------------------------------------------------------------------------
    def use_buffer(self, buf: bytearray | memoryview) -> None:
        """Receive small frames through ``buf``. Its content is copied out within
        :meth:`buffer_updated`, so one buffer can serve every connection of an event loop:
        1,000 idle connections then cost nothing each, not 1,000 x 256 KiB (pass one
        ``memoryview`` to them all: it is kept as it is, not wrapped per connection)."""
        if not len(buf):  # get_buffer takes an empty view for "none yet"
            raise ValueError("the receive buffer must not be empty")
        self._rview = buf if isinstance(buf, memoryview) else memoryview(buf)

    def use_budget(self, budget: ReassemblyBudget) -> None:
        """Charge the memory of incomplete messages to ``budget`` (a listener's); call
        :meth:`release` when the connection ends."""
        self.budget = budget

    def release(self) -> None:
        """Give back the memory of incomplete messages (the connection ended)."""
        d = self._direct
        self._direct = None
        if d is not None:
            d.body.drop()

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the driver should receive the next bytes; then call ``buffer_updated``."""
        d = self._direct
        if d is not None:  # and room for the next frame's header, if the chunk has it
            return d.body.space(d.end, _LARGEST_HEADER)
        if self._rview is _NO_BUFFER:  # (use_buffer takes no empty one)
            self._rview = memoryview(bytearray(RECV_BUFFER_SIZE))
        if self._skip:
            return self._rview[:min(self._skip, len(self._rview))]
        if self._header_only and len(self._pending) < _LARGEST_HEADER:
            return self._rview[:_LARGEST_HEADER - len(self._pending)]
        return self._rview

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the last buffer from :meth:`get_buffer`.

        After a ``ProtocolError`` the decoder discards whatever else arrives."""
        try:
            d = self._direct
            if d is not None:
                body = d.body
                rest = d.end - body.got
                if nbytes > rest:
                    self._past_body(d, rest, nbytes - rest)
                    return
                self.fed += nbytes
                body.wrote(nbytes)
                if body.got >= d.end:
                    self._direct = None
                    self._header_only = True
                    d.finish()
                else:
                    body.ensure_space()
                return
            if self._skip:
                self.fed += nbytes
                self._skip -= nbytes
                self._header_only = not self._skip
                return
            self._header_only = False
            self._feed_read(nbytes)
        except ProtocolError:
            self.release()
            self._pending = b""
            self._skip = _FOREVER
            raise

    def _past_body(self, d: _Direct, rest: int, extra: int) -> None:
        """A read filled the last ``rest`` bytes of a direct body and ``extra`` more (at
        most a header, see :meth:`get_buffer`) past its end, in the same chunk: those are
        copied out, the body finishes and they are decoded. One read per fragment (body and
        the next fragment's header) instead of two, and no copy of body bytes."""
        body = d.body
        body.wrote(rest)
        self.fed += rest
        after = bytes(body.space(body.got + extra))
        self._direct = None
        self._header_only = True
        d.finish()
        self.feed(after)

    def _feed_read(self, nbytes: int) -> None:
        """The first ``nbytes`` of the receive buffer are a read: decode them."""
        self.feed(self._rview[:nbytes])

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Decode ``data`` (any chunking)."""
        self.fed += len(data)
        if self._skip:
            n = min(len(data), self._skip)
            self._skip -= n
            data = data[n:]
            if not data and not self._pending:
                return
        d = self._direct
        if d is not None:
            body = d.body
            n = min(len(data), d.end - body.got)
            body.write(data[:n])
            if body.got < d.end:
                return
            self._direct = None
            d.finish()
            data = data[n:]
            if not data:
                return
        buf = self._pending + data if self._pending else bytes(data)
        self._pending = b""
        self._buf_at = self.fed - len(buf)
        used = self._parse(buf)
        if used < len(buf):
            self._pending = buf[used:]

    def take_messages(self) -> list[Received]:
        """Return the messages decoded so far and start a new list."""
        out = self.messages
        self.messages = []
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (not counting a direct body target)."""
        return len(self._pending)

    @property
    def head(self) -> bytes:
        """The first bytes held for an incomplete frame (at most 16)."""
        return self._pending[:16]

    @property
    def frame_at(self) -> int | None:
        """Where the frame in progress began, in bytes fed (:attr:`fed`); None between
        frames. ``fed - frame_at`` is how much of it has arrived."""
        d = self._direct
        if d is not None:
            return d.at
        if self._skip:
            return self._skip_at
        if self._pending:
            return self.fed - len(self._pending)
        return None

    @property
    def held(self) -> int:
        """Bytes of memory held for incomplete frames and messages."""
        d = self._direct
        return len(self._pending) + (d.body.held if d is not None and d.owned else 0)

    def _go_direct(self, body: BodyBuffer, end: int, buf: bytes, body_off: int,
                   finish: Any, owned: bool = True) -> None:
        """Receive the rest of a frame in place: ``body`` up to its offset ``end``."""
        self._direct = _Direct(body, end, finish, owned, self._buf_at + body_off)
        have = len(buf) - body_off
        body.ensure_space(have + DIRECT_THRESHOLD)
        if have:
            body.write(memoryview(buf)[body_off:])
        body.ensure_space()
