"""The receiving half of a native byte-stream session: bytes in, messages and events out.

:class:`NativeReceiver` checks the preface (the magic, or names the wrong peer), feeds the
:class:`~.decoder.NativeDecoder`, handles the control frames (HELLO, GOAWAY, PING/PONG,
ACK) in stream order with the meta blocks of the messages between them, and keeps the
liveness figures (:class:`~.liveness.Pinger`, the :class:`~.progress.FrameClock`).
:class:`~.session.NativeSession` derives from it and adds sending and the timers, as
:class:`~.datagram.DatagramSession` does over :class:`~.datagram_receive.DatagramReceiver`.
"""

from __future__ import annotations

from typing import Any

from ..config import Options, Priority
from ..exceptions import ProtocolError
from .core import ERROR_FREE, SessionState
from .events import Acked, PongReceived, Received, RepliesReceived, payload_bytes
from .fragmentation import Reassembler
from .framing import (
    ACK_FORMAT,
    MAGIC,
    MAX_HELLO_LENGTH,
    SKIP_FORMAT,
    FrameType,
    GoAwayCode,
    decode_goaway,
    decode_hello,
    encode_frame,
)
from .handshake import ACK_EVERY, NativeHandshake, ResumeLookup
from .headers import meta_limits, unwrap
from .liveness import Pinger
from .native_decoder import NativeDecoder
from .native_reads import CONTROL_FRAME
from .reliability import ResumeState
from .sniff import wrong_peer

__all__ = ["NativeReceiver"]

_CONTROL = int(Priority.CONTROL)
#: read on every read: an Enum member from its class costs ~0.1 µs (Python 3.11), a global
#: ~0.01
_CLOSED = SessionState.CLOSED
_OPEN = SessionState.OPEN
_PING = int(FrameType.PING)
#: the PONG that answers a lone PING's 8-byte token: header, then the token
_PONG_HEADER = encode_frame(FrameType.PONG, bytes(8))[:20]


class NativeReceiver(NativeHandshake):
    """Received bytes -> messages, control frames, liveness (the sending is the subclass's)."""

    __slots__ = ("_magic", "_magic_ok", "meta_limits", "pinger", "reassembler", "responder",
                 "withheld")

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, session_id: bytes, resume: ResumeState | None, role: str,
                 resume_lookup: ResumeLookup | None) -> None:
        super().__init__(options, conn_id, transport, peer, now, session_id, resume, role,
                         resume_lookup)
        self.reassembler = Reassembler(options.max_message_size, options.max_partial_messages,
                                       options.max_reassembly_bytes)
        # until the peer's HELLO: no frame longer than a HELLO can be (docs/protocol.md 1.3)
        self.decoder = NativeDecoder(conn_id, transport, peer,
                                     min(options.max_frame_size, MAX_HELLO_LENGTH),
                                     self.reassembler)
        self._magic = b""  # bytes of the peer's magic seen so far
        self._magic_ok = False
        self.pinger = Pinger(now)
        #: what answers the requests this session delivers (opaque here: the service's)
        self.responder: Any = None
        self.meta_limits = meta_limits(options.max_headers, options.max_header_bytes,
                                       options.max_message_size)
        #: payload bytes decoded but not handed out as such (:meth:`_withhold`): the
        #: decoder's ``bytes_received`` counts what was delivered, this the rest
        self.withheld = 0

    def connection_lost(self, reason: str) -> None:
        """The socket went away. A client that heard nothing at all before it did was most
        likely refused by a TLS listener (it closes on a plain opening without a word). Only
        over TCP: a QUIC, WebSocket or gRPC carrier is refused in its own words."""
        if (self.role == "client" and self.state is SessionState.HANDSHAKE
                and not self._magic and self.transport_name == "tcp"):
            reason = (f"{reason} before the listener's HELLO, without a byte: a TLS listener?"
                      " connect with ssl=True (or the listener refused the connection)")
        super().connection_lost(reason)

    @property
    def bytes_received(self) -> int:
        """Payload bytes received: those of the messages delivered (the decoder's count,
        which the inbox's byte bound charges) and :attr:`withheld`."""
        return self.decoder.bytes_received + self.withheld

    @property
    def rtt_last(self) -> float | None:
        return self.pinger.rtt_last

    @property
    def pings_sent(self) -> int:
        return self.pinger.sent

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        if not self._magic_ok:
            return self.receive_data(bytes(self.decoder.get_buffer()[:nbytes]), now)
        self.last_receive = now
        dec = self.decoder
        closed = self.state is _CLOSED
        if not closed and not dec.control:  # one plain frame: no walk (native_reads.py)
            payload = dec.read_lone(nbytes)
            if payload is not None:
                rs = self.rs
                if self._acks and rs.floor > rs.ack_sent and (
                        self._ack_due is None or rs.floor - rs.ack_sent >= ACK_EVERY
                        or dec.bytes_received - self._ack_bytes >= self._ack_step):
                    self._schedule_ack(now)  # else the ACK is due already, nothing to do
                frames = self.frames
                if frames.at is not None or frames.held:
                    frames.update(None, now)  # no frame in progress: no deadline
                self.messages_received += 1
                return [payload]
            if nbytes == CONTROL_FRAME and self.state is _OPEN:  # a PING, a lone ACK
                frame = dec.read_control()
                if frame is not None:
                    self._lone_control(frame[0], frame[1], now)
                    return []
        try:
            dec.buffer_updated(nbytes)
        except ProtocolError as exc:
            return self._after_decode(now, closed, exc)
        if dec.control or dec.extended or closed:
            return self._after_decode(now, closed)
        # only messages without meta blocks (a request/response's usual read):
        # _after_decode's common case, without its walk over control frames
        if self._acks and self.rs.floor > self.rs.ack_sent:
            self._schedule_ack(now)
        if self.frames.update(dec.frame_at, now):
            self.timer_changed = True
        msgs = dec.messages
        if msgs:
            dec.messages = []
            self.messages_received += len(msgs)
        return msgs

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        """Decode ``data``; return the complete messages (events go to ``take_events``)."""
        if self.state is SessionState.CLOSED:
            return []
        self.last_receive = now
        if not self._magic_ok:
            need = 4 - len(self._magic)
            self._magic += bytes(data[:need])
            data = data[need:]
            if len(self._magic) < 4:
                return []
            if self._magic != MAGIC:
                head = self._magic + bytes(data[:12])
                self.fail(wrong_peer(head) or
                          f"peer did not start with the objtransport preface (got {head!r}):"
                          ' a raw {packet, 4} peer? use framing="raw" (or "auto" on a'
                          " listener)")
                return []
            self._magic_ok = True
            if not data:
                return []
        try:
            self.decoder.feed(data)
        except ProtocolError as exc:
            return self._after_decode(now, False, exc)
        return self._after_decode(now)

    def _after_decode(self, now: float, closed: bool = False,
                      error: ProtocolError | None = None) -> list[Received]:
        """Handle the control frames decoded, then the decoder's ``error``; return the
        messages. Everything before the frame that ended the session counts, nothing after
        it, however the reads were cut (``closed``: it had ended before this read)."""
        dec = self.decoder
        out: list[Received] = []  # messages whose meta blocks were decoded (in order)
        upto, checked = self._walk(now, closed, error, out)
        if self._acks and self.rs.floor > self.rs.ack_sent:
            self._schedule_ack(now)
        if self.frames.update(dec.frame_at, now):
            self.timer_changed = True
        msgs = dec.messages
        if msgs:
            dec.messages = []
            if closed and self.close_code not in ERROR_FREE:
                self._withhold(payload_bytes(out) + payload_bytes(msgs[checked:]))
                return []
            end = len(msgs) if upto is None else upto
            self.messages_received += end
            if end < len(msgs):  # after the end of the session: dropped (never unwrapped)
                self._withhold(payload_bytes(msgs[max(end, checked):]))
            if dec.extended:
                dec.extended = False
                if checked < end:
                    self._unwrap(msgs, checked, end, out)
                return out
            if upto is not None:
                msgs = msgs[:upto]
        return msgs

    def _walk(self, now: float, closed: bool, error: ProtocolError | None,
              out: list[Received]) -> tuple[int | None, int]:
        """The control frames, the meta blocks of the messages between them and then the
        decoder's ``error``, in stream order. Returns where the messages after the end of
        the session begin (None: none ended it here) and how many went through ``out``
        (or :meth:`_unwrap`, when one of them was malformed)."""
        dec = self.decoder
        checked = 0
        while True:
            # a copy walked, the decoder's list emptied in place: a new list per read would
            # outlive it (until the next control frame) and count towards the next full
            # collection (slices: no call)
            control = dec.control[:]
            del dec.control[:]
            for ftype, payload, before in control:
                if dec.extended and before > checked:
                    bad = self._unwrap(dec.messages, checked, before, out)
                    if bad is not None:
                        return bad, before
                    checked = before
                try:
                    self._on_control(ftype, payload, now)
                except ProtocolError as exc:
                    self._fail(exc)
                if self.state is SessionState.CLOSED and not closed:
                    return before, checked  # this frame ended the session
            if error is not None:
                total = len(dec.messages)
                if dec.extended and total > checked:
                    bad = self._unwrap(dec.messages, checked, total, out)
                    if bad is not None:
                        return bad, total
                    checked = total
                self._fail(error)
                return None, checked
            if not (control and self.state is SessionState.OPEN and dec.buffered):
                return None, checked
            try:
                dec.feed(b"")  # what followed the HELLO
            except ProtocolError as exc:
                error = exc

    def _lone_control(self, ftype: int, payload: bytes, now: float) -> None:
        """A read that was one PING or ACK (``read_control``): what ``_after_decode`` and
        ``_walk`` do for it, without them."""
        if ftype == _PING:
            self.scheduler.push_frame(_CONTROL, _PONG_HEADER + payload)
        else:
            try:
                self._on_control(ftype, payload, now)
            except ProtocolError as exc:
                self._fail(exc)
            if self._acks and self.rs.floor > self.rs.ack_sent:
                self._schedule_ack(now)
        frames = self.frames
        if frames.at is not None or frames.held:
            frames.update(None, now)

    def _unwrap(self, msgs: list[Received], start: int, end: int,
                out: list[Received]) -> int | None:
        """Decode the meta blocks and compressed payloads of ``msgs[start:end]`` into
        ``out``; replies become an event. A malformed one fails the session: its index."""
        replies: list[tuple[int, int, bytes, dict[str, bytes] | None]] = []
        before = len(out)
        bad = None
        todo = msgs[start:end]
        wire = payload_bytes(todo)  # before unwrap() replaces the payloads
        try:
            unwrap(todo, self.meta_limits, self.responder, replies, out)
        except ProtocolError as exc:
            self._fail(exc)
            bad = start + len(out) - before + len(replies)
        # meta blocks, replies, the malformed one and those after it; a decompressed
        # payload larger than it came: negative
        self._withhold(wire - payload_bytes(out[before:]))
        if replies:
            self.events.append(RepliesReceived(replies))
        return bad

    def _withhold(self, nbytes: int) -> None:
        """``nbytes`` of the payload bytes decoded are not delivered as they came: they
        move from the decoder's count (what a connection's inbox charges per read,
        docs/design.md "The inbox's byte count") to :attr:`withheld`. The ACK pacing by
        bytes counts from the decoder's figure: its mark moves with it."""
        self.decoder.bytes_received -= nbytes
        self._ack_bytes -= nbytes
        self.withheld += nbytes

    def _on_control(self, ftype: int, payload: bytes, now: float) -> None:
        if ftype == FrameType.HELLO:
            if self.state is not SessionState.HANDSHAKE:
                raise ProtocolError("second HELLO", GoAwayCode.PROTOCOL_ERROR)
            hello = decode_hello(payload)
            if self._hold_hello(hello):
                return  # the driver authenticates it first
            self._on_hello(hello)
            self._send_ping(now)
        elif ftype == FrameType.GOAWAY:  # also before HELLO: a listener saying why it refuses
            code, reason = decode_goaway(payload)
            self.peer_closed(code, reason)
        elif self.state is SessionState.HANDSHAKE:
            raise ProtocolError(f"{FrameType(ftype).name} frame before HELLO",
                                GoAwayCode.PROTOCOL_ERROR)
        elif ftype == FrameType.PING:
            if self.state is SessionState.OPEN:
                self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.PONG, payload))
        elif ftype == FrameType.PONG:
            self._on_pong(payload, now)
        elif ftype == FrameType.ACK:
            if len(payload) != 8:
                raise ProtocolError("ACK payload is not 8 bytes", GoAwayCode.PROTOCOL_ERROR)
            (seq,) = ACK_FORMAT.unpack(payload)
            if seq > self.rs.next_seq and self._acks:
                raise ProtocolError(f"ACK of message {seq}, only {self.rs.next_seq} were sent",
                                    GoAwayCode.PROTOCOL_ERROR)
            if self.rs.on_ack(seq):
                self.events.append(Acked(seq))
                if self._window:
                    self._window_acked()
        elif ftype == FrameType.SKIP:
            self._on_skip(payload)

    def _on_skip(self, payload: bytes) -> None:
        """The peer gave up message ``seq`` (its ttl passed): it is done, not delivered."""
        if len(payload) != 8 or not self._acks:
            raise ProtocolError("SKIP frame without acknowledgements agreed, or whose "
                                "payload is not 8 bytes", GoAwayCode.PROTOCOL_ERROR)
        (seq,) = SKIP_FORMAT.unpack(payload)
        rs = self.rs
        if seq == 0:
            raise ProtocolError("SKIP of message 0", GoAwayCode.PROTOCOL_ERROR)
        if not rs.is_duplicate(seq):
            rs.mark(seq)
            rs.skips_received += 1

    def _on_pong(self, payload: bytes, now: float) -> None:
        rtt = self.pinger.pong(payload, now)
        if rtt is not None:
            self.events.append(PongReceived(rtt))

    def _send_ping(self, now: float) -> None:
        p = self.pinger
        self.scheduler.push_frame(_CONTROL, p.ping(now))
        p.next_at = now + self.options.keepalive_interval
