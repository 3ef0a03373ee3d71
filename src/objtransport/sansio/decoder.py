"""Incremental frame decoders for the native and raw framings.

Both accept bytes in any chunking (``feed``), or let the driver receive straight into their
memory (``get_buffer`` / ``buffer_updated``, the shape of asyncio's ``BufferedProtocol``).
Small frames are sliced out of one ``bytes`` per read; the body of a large frame is received
directly into the message's own chunks (:class:`BodyBuffer`), joined once when complete. A
declared length is checked against the limit before anything of the body is kept, and the
chunks grow with the bytes that arrive, never with the declared length.

Complete messages are appended to ``self.messages`` as :data:`Received` items (a plain
``bytes`` payload for stream 0 / normal / binary, else a :class:`Message`; the caller takes the
list with :meth:`take_messages`); native control frames go to ``self.control`` as
``(type, payload, how many messages came before it)``. A violation raises
:class:`ProtocolError`; the decoder is then unusable and the caller closes the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NoReturn

from ..exceptions import ProtocolError
from .events import PRIORITY_NAMES, Message, Received
from .fragmentation import BodyBuffer, BufferRecycler, Partial, Reassembler
from .framing import (
    FLAG_FRAG,
    FLAG_META,
    FLAG_TEXT,
    FLAG_ZIP,
    FRAG_EXT,
    FRAME_HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    RAW_KEEPALIVE,
    RAW_PREFIX,
    VERSION,
    FrameType,
    GoAwayCode,
)
from .reassembly import ReassemblyBudget
from .reliability import NONE_ABOVE, ResumeState
from .sniff import wrong_peer

__all__ = ["DecoderBase", "NativeDecoder", "RawDecoder", "RECV_BUFFER_SIZE", "DIRECT_THRESHOLD"]

RECV_BUFFER_SIZE = 256 * 1024
#: frame bodies at least this large are received straight into their own buffer
DIRECT_THRESHOLD = 64 * 1024
#: a first raw length this large (335 MB) may be another protocol's opening (see sniff.py)
_FOREIGN_MIN = 0x14000000
_LARGEST_HEADER = 28  # length + header + fragment extension
_NO_BUFFER = memoryview(b"")
_FOREVER = 1 << 62  # bytes to discard after a protocol error

_unpack_header = FRAME_HEADER.unpack_from
#: length, the 8 header bytes from version to stream as one number, sequence number
_unpack_plain = struct.Struct("!IQQ").unpack_from
#: those 8 bytes of a plain message: version 1, DATA, no flags, priority normal, stream 0
_PLAIN_HEAD = int.from_bytes(bytes((VERSION, FrameType.DATA, 0, 2, 0, 0, 0, 0)), "big")
_unpack_len = RAW_PREFIX.unpack_from
_unpack_frag = FRAG_EXT.unpack_from
_DATA = int(FrameType.DATA)
_TEXT_ONLY = FLAG_TEXT
_NOT_TEXT = 0xFF & ~(FLAG_TEXT | FLAG_META | FLAG_ZIP)  # a whole DATA frame's flags
_EXT = FLAG_META | FLAG_ZIP
_HELLO = int(FrameType.HELLO)
_MAX_TYPE = max(FrameType)


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
        if d is not None:
            return d.body.space(d.end)
        if not len(self._rview):
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
                self.fed += nbytes
                body = d.body
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
            self.feed(self._rview[:nbytes])
        except ProtocolError:
            self.release()
            self._pending = b""
            self._skip = _FOREVER
            raise

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


class NativeDecoder(DecoderBase):
    """Decoder of native frames (after the 4-byte magic, which the session checks).

    With a :class:`ResumeState` (``rx``) it drops duplicates (sequence numbers already
    delivered, resent after a resume) and records what it delivered. It stops right after a
    HELLO so the session can settle the handshake (and pick the resume state) before any
    DATA that follows is decoded; call :meth:`feed` with ``b""`` to go on.
    """

    __slots__ = ("max_frame_size", "reassembler", "control", "accept_data", "rx",
                 "duplicates", "extended")

    def __init__(self, conn_id: int, transport: str, peer: Any, max_frame_size: int,
                 reassembler: Reassembler, rx: ResumeState | None = None) -> None:
        super().__init__(conn_id, transport, peer)
        self.max_frame_size = max_frame_size
        self.reassembler = reassembler
        #: (type, payload, how many of ``messages`` came before it)
        self.control: list[tuple[int, bytes, int]] = []
        #: DATA is a protocol error until a HELLO has been decoded
        self.accept_data = False
        self.rx = rx
        self.duplicates = 0
        #: a message with a meta block or a compressed payload was decoded (the session
        #: unwraps them, then clears this)
        self.extended = False

    def _parse(self, buf: bytes) -> int:
        """Decode the whole frames of ``buf``; return the bytes used. The read's leading
        run of plain in-order DATA frames goes through :meth:`_plain_run`, the rest (from
        the first other frame on) through :meth:`_parse_any`."""
        off = 0
        if self.accept_data:
            off = self._plain_run(buf)
            if off == len(buf):
                return off
        return self._parse_any(buf, off)

    def _plain_run(self, buf: bytes) -> int:
        """The common case in one tight loop: whole DATA frames of stream 0, priority
        normal, no flags, each the next in sequence (when ACKs are on); stops before the
        first other frame (or a frame not complete, or too long). Returns where it stopped."""
        n = len(buf)
        off = 0
        maxf = self.max_frame_size
        unpack = _unpack_plain
        out: list[Received] = []
        append = out.append
        rx = self.rx
        if rx is None:
            while n - off >= 20:
                length, head, _ = unpack(buf, off)
                end = off + 4 + length
                if head != _PLAIN_HEAD or end > n or length > maxf or length < 16:
                    break
                append(buf[off + 20:end])
                off = end
        elif not rx.above:  # (a message above the floor: the general path keeps order)
            floor = rx.floor
            while n - off >= 20:
                length, head, seq = unpack(buf, off)
                end = off + 4 + length
                if (head != _PLAIN_HEAD or seq != floor + 1 or end > n or length > maxf
                        or length < 16):
                    break
                floor = seq
                append(buf[off + 20:end])
                off = end
            rx.floor = floor
        if out:
            self.bytes_received += off - 20 * len(out)
            if self.messages:
                self.messages += out
            else:
                self.messages = out
        return off

    def _parse_any(self, buf: bytes, off: int) -> int:
        n = len(buf)
        maxf = self.max_frame_size
        append = self.messages.append
        cid, tname, peer = self.conn_id, self.transport, self.peer
        unpack = _unpack_header
        accept = self.accept_data
        not_text = _NOT_TEXT
        rx = self.rx
        floor = rx.floor if rx is not None else 0
        above: set[int] | frozenset[int] = rx.above if rx is not None else NONE_ABOVE
        nbytes = 0
        dups = 0
        try:
            while n - off >= 20:
                length, ver, typ, flags, prio, stream, seq = unpack(buf, off)
                if length > maxf or length < HEADER_SIZE:
                    self._bad_length(length)
                end = off + 4 + length
                if ver != 1:
                    raise ProtocolError(f"frame version {ver}, expected {VERSION}",
                                        GoAwayCode.UNSUPPORTED_VERSION)
                if typ == 2 and not flags & not_text and prio <= 3 and accept:
                    if rx is not None:
                        if seq == floor + 1 and (not above or seq not in above):
                            floor = seq
                        elif seq <= floor or seq in above:
                            dups += 1
                            if end > n:
                                self._skip = end - n
                                self._skip_at = self._buf_at + off
                                off = n
                                break
                            off = end
                            continue
                        else:
                            above = rx.above_set()
                            above.add(seq)
                    if end > n:
                        if length >= DIRECT_THRESHOLD:
                            if rx is not None:  # counted as delivered once it is complete
                                floor = self._unmark(rx, seq, floor)
                            self._direct_whole(buf, off, end, flags, prio, stream, seq)
                            off = n
                        elif rx is not None:
                            floor = self._unmark(rx, seq, floor)
                        break
                    nbytes += length - 16
                    if stream or prio != 2 or flags:
                        append(Message(buf[off + 20:end], cid, tname, peer, stream,
                                       PRIORITY_NAMES[prio], flags & _TEXT_ONLY != 0, flags))
                        if flags & _EXT:
                            self.extended = True
                    else:
                        append(buf[off + 20:end])
                    off = end
                    continue
                if typ > _MAX_TYPE or typ < 1 or flags & ~KNOWN_FLAGS or prio > 3 or (
                        typ == _DATA and (not accept or length < HEADER_SIZE + 8)):
                    self._bad_header(typ, flags, prio, accept)
                if typ == _DATA:  # a fragment
                    if rx is not None:
                        rx.floor = floor
                    new_off = self._fragment_frame(buf, off, end, n, length, flags, prio,
                                                   stream, seq)
                    if rx is not None:  # a message completed: marked in rx
                        floor = rx.floor
                        above = rx.above
                    if new_off < 0:  # a duplicate (counted), skipped
                        dups += 1
                        new_off = -new_off - 1
                    if new_off == off or new_off == n:
                        off = new_off
                        break
                    off = new_off
                    continue
                if end > n:
                    break
                self.control.append((typ, buf[off + 20:end], len(self.messages)))
                off = end
                if typ == _HELLO:
                    self.accept_data = True
                    return int(off)  # the session settles the handshake first
            if n - off >= 4:
                (length,) = _unpack_len(buf, off)
                if length > maxf or length < HEADER_SIZE:
                    self._bad_length(length)
        finally:
            self.bytes_received += nbytes
            if rx is not None:
                self._settle(rx, floor, dups)
        return off

    def _settle(self, rx: ResumeState, floor: int, dups: int) -> None:
        """After a read: record what was delivered and how many duplicates were dropped."""
        rx.floor = floor
        if rx.above:
            rx.settle()
        self.duplicates += dups
        rx.duplicates += dups

    @staticmethod
    def _bad_header(typ: int, flags: int, prio: int, accept: bool) -> NoReturn:
        if typ == _DATA and not accept:
            raise ProtocolError("DATA frame before HELLO", GoAwayCode.PROTOCOL_ERROR)
        if typ == _DATA:
            raise ProtocolError("fragment without its extension", GoAwayCode.PROTOCOL_ERROR)
        raise ProtocolError(f"malformed frame header (type {typ}, flags {flags:#x}, "
                            f"priority {prio})", GoAwayCode.PROTOCOL_ERROR)

    def _fragment_frame(self, buf: bytes, off: int, end: int, n: int, length: int,
                        flags: int, prio: int, stream: int, seq: int) -> int:
        """One fragment at ``off`` (``rx.floor`` is current). Returns where parsing goes
        on: ``end`` when it was consumed, ``off`` to wait for more bytes, ``n`` when the
        rest of its piece goes straight into the message (or is skipped); for a duplicate
        of a message already delivered, ``-(that position) - 1`` (the caller counts it)."""
        if n - off < 28:
            return off
        rx = self.rx
        if rx is not None and (seq <= rx.floor or seq in rx.above):
            first = _unpack_frag(buf, off + 20)[0] == 0  # one duplicate per message
            if end > n:
                self._skip = end - n
                self._skip_at = self._buf_at + off
                end = n
            return -end - 1 if first else end
        if end > n and length < DIRECT_THRESHOLD:
            return off
        done = self._fragment(buf, off, end, n, length, flags, prio, stream, seq)
        return n if done is None else end

    @staticmethod
    def _unmark(rx: ResumeState, seq: int, floor: int) -> int:
        """Undo the optimistic mark of a message that is not complete yet."""
        if seq == floor:
            return floor - 1
        rx.above_set().discard(seq)
        return floor

    @property
    def held(self) -> int:
        return super().held + self.reassembler.held

    def use_budget(self, budget: ReassemblyBudget) -> None:
        super().use_budget(budget)
        self.reassembler.budget = budget

    def release(self) -> None:
        super().release()
        self.reassembler.clear()

    def _bad_length(self, length: int) -> NoReturn:
        if length > self.max_frame_size:
            raise ProtocolError(f"frame length {length} exceeds max_frame_size "
                                f"({self.max_frame_size})", GoAwayCode.FRAME_TOO_LARGE)
        raise ProtocolError(f"frame length {length} shorter than the {HEADER_SIZE}-byte header",
                            GoAwayCode.PROTOCOL_ERROR)

    def _direct_whole(self, buf: bytes, off: int, end: int, flags: int, prio: int,
                      stream: int, seq: int) -> None:
        size = end - off - 20
        body = BodyBuffer(size, self.reassembler.recycler, self.budget)

        def finish() -> None:
            self.bytes_received += size
            data = body.take()
            if self.rx is not None:
                self.rx.mark(seq)
            if stream or prio != 2 or flags:
                self.messages.append(Message(data, self.conn_id, self.transport,
                                             self.peer, stream, PRIORITY_NAMES[prio],
                                             flags & _TEXT_ONLY != 0, flags))
                self.extended = self.extended or flags & _EXT != 0
            else:
                self.messages.append(data)

        self._go_direct(body, size, buf, off + 20, finish)

    def _fragment(self, buf: bytes, off: int, end: int, n: int, length: int, flags: int,
                  prio: int, stream: int, seq: int) -> bool | None:
        """Handle one fragment; True when consumed whole, None when it went direct."""
        offset, total = _unpack_frag(buf, off + 20)
        piece_len = length - HEADER_SIZE - 8
        ra = self.reassembler
        partial = ra.begin(seq, offset, piece_len, total, stream, prio, flags & ~FLAG_FRAG)
        if end > n:
            def finish() -> None:
                done = ra.advance(seq)
                if done is not None:
                    self._deliver_partial(seq, done)

            self._go_direct(partial.body, offset + piece_len, buf, off + 28, finish, False)
            return None
        partial.body.write(memoryview(buf)[off + 28:end])
        done = ra.advance(seq)
        if done is not None:
            self._deliver_partial(seq, done)
        return True

    def _deliver_partial(self, seq: int, p: Partial) -> None:
        self.bytes_received += p.total
        if self.rx is not None:
            self.rx.mark(seq)
        if not p.stream and p.priority == 2 and not p.flags:
            self.messages.append(p.data)
            return
        self.messages.append(Message(p.data, self.conn_id, self.transport, self.peer,
                                     p.stream, PRIORITY_NAMES[p.priority],
                                     p.flags & FLAG_TEXT == FLAG_TEXT, p.flags))
        self.extended = self.extended or p.flags & _EXT != 0


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
