"""The decoder of native frames (:class:`NativeDecoder`; what it shares with the raw one:
:class:`~.decoder.DecoderBase`, whose module doc says how bytes come in)."""

from __future__ import annotations

from typing import Any, NoReturn

from ..exceptions import ProtocolError
from .decoder import DIRECT_THRESHOLD
from .events import PRIORITY_NAMES, Message
from .fragmentation import BodyBuffer, Partial, Reassembler
from .framing import (
    FLAG_FRAG,
    FLAG_META,
    FLAG_TEXT,
    FLAG_ZIP,
    FRAG_EXT,
    FRAME_HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    RAW_PREFIX,
    VERSION,
    FrameType,
    GoAwayCode,
)
from .native_reads import PlainReads
from .reassembly import ReassemblyBudget
from .reliability import NONE_ABOVE, ResumeState

__all__ = ["NativeDecoder"]

_unpack_header = FRAME_HEADER.unpack_from
_unpack_len = RAW_PREFIX.unpack_from
_unpack_frag = FRAG_EXT.unpack_from
_DATA = int(FrameType.DATA)
_TEXT_ONLY = FLAG_TEXT
_NOT_TEXT = 0xFF & ~(FLAG_TEXT | FLAG_META | FLAG_ZIP)  # a whole DATA frame's flags
_EXT = FLAG_META | FLAG_ZIP
_HELLO = int(FrameType.HELLO)
_MAX_TYPE = max(FrameType)

class NativeDecoder(PlainReads):
    """Decoder of native frames (after the 4-byte magic, which the session checks; the
    reads into the receive buffer: :class:`~.native_reads.PlainReads`).

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
        run of plain in-order DATA frames goes through :func:`~.plain_run.plain_run`, the
        rest (from the first other frame on) through :meth:`_parse_any`."""
        off = 0
        if self.accept_data:
            off = self._plain_run(buf, 0, len(buf))
            if off == len(buf):
                return off
        return self._parse_any(buf, off)

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
