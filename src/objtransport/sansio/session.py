"""One connection's protocol over a byte stream, without I/O: bytes in, messages, events
and bytes out.

A driver owns one session per connection and does only this:

* received bytes: ``receive_data(data, now)`` (or ``get_buffer()`` then
  ``buffer_updated(n, now)``) returns the messages decoded; then ``take_events()``;
* sending: ``send_message(data, ...)`` queues; ``data_to_send(now, budget)`` returns chunks to
  write (header and payload views, written in order);
* time: ``next_deadline()`` is when ``handle_timer(now)`` must run next;
* ``closed`` turns true once a GOAWAY was sent or received or a fault was found; the driver
  writes what ``data_to_send`` still returns, then closes the socket.

:class:`NativeSession` speaks the native framing (docs/protocol.md section 1);
:class:`~.raw.RawSession` speaks ``{packet, 4}`` (section 2). Both have the surface of
:class:`~.core.Session`; what they share is :class:`~.core.SessionCore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from ..config import Options, Priority
from ..exceptions import ProtocolError
from .core import ERROR_FREE, AnySession, Payload, Session, SessionCore, SessionState
from .decoder import NativeDecoder
from .events import Acked, PongReceived, Received, RepliesReceived
from .fragmentation import FragmentJob, Reassembler
from .framing import (
    ACK_FORMAT,
    FRAME_HEADER,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    FrameType,
    GoAwayCode,
    decode_goaway,
    decode_hello,
    encode_frame,
    encode_goaway,
    wire_flags,
)
from .handshake import (
    ACK_BYTES,
    ACK_DELAY,
    ACK_EVERY,
    WINDOW_WAIT,
    NativeHandshake,
    ResumeLookup,
)
from .headers import MetaLimits, unwrap
from .liveness import Pinger
from .progress import FrameClock
from .raw import RawSession
from .reassembly import ReassemblyBudget
from .reliability import ResumeState
from .scheduler import Chunk
from .sniff import wrong_peer

__all__ = [
    "ACK_BYTES",
    "ACK_DELAY",
    "ACK_EVERY",
    "AnySession",
    "NativeSession",
    "RawSession",
    "ResumeLookup",
    "Session",
    "SessionCore",
    "SessionState",
    "detect_native",
]


def detect_native(head: bytes) -> bool:
    """Framing detection on a listener in ``auto`` mode (docs/protocol.md section 3): the
    first 4 bytes are the native magic, or else the length of a raw message."""
    return head[:4] == MAGIC


_pack_header = FRAME_HEADER.pack
_CONTROL = int(Priority.CONTROL)


class NativeSession(NativeHandshake):
    """The native protocol: preface, HELLO, DATA (fragmented when large), PING/PONG, GOAWAY."""

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, session_id: bytes, send_preface: bool = True,
                 resume: ResumeState | None = None, role: str = "peer",
                 resume_lookup: ResumeLookup | None = None) -> None:
        """``role``: "peer" (both sides send HELLO at once; no resume), "client" (sends
        HELLO first, resumes ``resume``) or "server" (answers the client's HELLO, finding
        the session to resume with ``resume_lookup``)."""
        super().__init__(options, conn_id, transport, peer, now, session_id, resume, role,
                         resume_lookup)
        self.reassembler = Reassembler(options.max_message_size, options.max_partial_messages,
                                       options.max_reassembly_bytes)
        self.decoder = NativeDecoder(conn_id, transport, peer, options.max_frame_size,
                                     self.reassembler)
        self._magic = b""  # bytes of the peer's magic seen so far
        self._magic_ok = False
        self.pinger = Pinger(now)
        self.frames = FrameClock(options.timeout)  # a frame begun must keep arriving
        #: what answers the requests this session delivers (opaque here: the service's)
        self.responder: Any = None
        self.meta_limits = MetaLimits(options.max_headers, options.max_header_bytes,
                                      options.max_message_size)
        if send_preface and role != "server":
            self._send_hello()

    def set_peer(self, peer: Any) -> None:
        self.peer = peer
        self.decoder.peer = peer

    def use_buffer(self, buf: bytearray) -> None:
        self.decoder.use_buffer(buf)

    def reading_paused(self, now: float) -> None:
        self.frames.pause(now)

    def reading_resumed(self, now: float) -> None:
        self.frames.resume(now)

    def use_budget(self, budget: ReassemblyBudget) -> None:
        self.decoder.use_budget(budget)

    def drop_incomplete(self) -> None:
        self.decoder.release()

    def connection_lost(self, reason: str) -> None:
        """The socket went away. A client that heard nothing at all before it did was most
        likely refused by a TLS listener (it closes on a plain opening without a word)."""
        if (self.role == "client" and self.state is SessionState.HANDSHAKE
                and not self._magic):
            reason = (f"{reason} before the listener's HELLO, without a byte: a TLS listener?"
                      " connect with ssl=True (or the listener refused the connection)")
        super().connection_lost(reason)

    @property
    def rtt_last(self) -> float | None:
        return self.pinger.rtt_last

    @property
    def pings_sent(self) -> int:
        return self.pinger.sent

    # -- receiving -----------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        if not self._magic_ok:
            return self.receive_data(bytes(self.decoder.get_buffer()[:nbytes]), now)
        self.last_receive = now
        dec = self.decoder
        closed = self.state is SessionState.CLOSED
        try:
            dec.buffer_updated(nbytes)
        except ProtocolError as exc:
            return self._after_decode(now, closed, exc)
        return self._after_decode(now, closed)

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
                return []
            end = len(msgs) if upto is None else upto
            self.messages_received += end
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
        the session begin (None: none ended it here) and how many went through ``out``."""
        dec = self.decoder
        checked = 0
        while True:
            control = dec.control
            dec.control = []
            for ftype, payload, before in control:
                if dec.extended and before > checked:
                    bad = self._unwrap(dec.messages, checked, before, out)
                    if bad is not None:
                        return bad, bad
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
                        return bad, bad
                    checked = total
                self._fail(error)
                return None, checked
            if not (control and self.state is SessionState.OPEN and dec.buffered):
                return None, checked
            try:
                dec.feed(b"")  # what followed the HELLO
            except ProtocolError as exc:
                error = exc

    def _unwrap(self, msgs: list[Received], start: int, end: int,
                out: list[Received]) -> int | None:
        """Decode the meta blocks and compressed payloads of ``msgs[start:end]`` into
        ``out``; replies become an event. A malformed one fails the session: its index."""
        replies: list[tuple[int, int, bytes, dict[str, bytes] | None]] = []
        before = len(out)
        bad = None
        try:
            unwrap(msgs[start:end], self.meta_limits, self.responder, replies, out)
        except ProtocolError as exc:
            self._fail(exc)
            bad = start + len(out) - before + len(replies)
        if replies:
            self.events.append(RepliesReceived(replies))
        return bad

    @property
    def bytes_received(self) -> int:
        return self.decoder.bytes_received

    def _on_control(self, ftype: int, payload: bytes, now: float) -> None:
        if ftype == FrameType.HELLO:
            if self.state is not SessionState.HANDSHAKE:
                raise ProtocolError("second HELLO", GoAwayCode.PROTOCOL_ERROR)
            hello = decode_hello(payload)
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

    def _on_pong(self, payload: bytes, now: float) -> None:
        rtt = self.pinger.pong(payload, now)
        if rtt is not None:
            self.events.append(PongReceived(rtt))

    # -- sending ---------------------------------------------------------------------------
    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one message; return its sequence number.

        Raises ``ConnectionNotReady`` unless the session is open and ``MessageTooLarge``
        above the peer's ``max_message_size``; nothing is queued then.
        """
        size = len(data)
        if size > self._send_limit:
            self._check_send(size)
        rs = self.rs
        rs.next_seq = seq = rs.next_seq + 1
        rs.queued += size  # the only per-message bookkeeping for ACKs and resume
        self.bytes_queued += size
        if priority == 2 and not stream and not text and size <= self._fragment:
            # the common case: a normal small message on stream 0
            sched = self.scheduler
            if not sched.blocked:
                buf = sched.small[2]
                buf += _pack_header(HEADER_SIZE + size, VERSION, 2, 0, 2, 0, seq)
                buf += data
                sched.pending_bytes += size + 20
                return seq
            sched.push_frame(2, _pack_header(HEADER_SIZE + size, VERSION, 2, 0, 2, 0, seq)
                             + bytes(data), 0)
            return seq
        if priority != 2:
            self.other_priority_messages[priority] += 1
        queue = priority if self._qos else 2
        if size <= self._fragment:
            sched = self.scheduler
            header = _pack_header(HEADER_SIZE + size, VERSION, 2, wire_flags(text),
                                  priority, stream, seq)
            if sched.blocked and (queue, stream) in sched.blocked:
                sched.push_frame(queue, header + bytes(data), stream)
            else:
                buf = sched.small[queue]
                buf += header
                buf += data
                sched.pending_bytes += size + 20
        else:
            if self._acks and type(data) is not bytes:
                data = bytes(data)  # kept for a resend: the caller may reuse its buffer
            sched = self.scheduler
            sched.push(queue, FragmentJob(data, seq, stream, priority, wire_flags(text),
                                          self._fragment), stream)
        return seq

    def queue(self, data: Payload, stream: int = 0, priority: int = 2,
              text: bool = False) -> bool:
        size = len(data)
        sched = self.scheduler
        if (priority != 2 or stream or text or size > self._send_limit
                or size > self._fragment or sched.blocked):
            return super().queue(data, stream, priority, text)
        # send_message's common case, and the answer, in one call
        rs = self.rs
        rs.next_seq = seq = rs.next_seq + 1
        rs.queued = queued = rs.queued + size
        self.bytes_queued += size
        buf = sched.small[2]
        buf += _pack_header(HEADER_SIZE + size, VERSION, 2, 0, 2, 0, seq)
        buf += data
        was = sched.pending_bytes
        sched.pending_bytes = was + size + 20
        if not was:
            self.on_wake()
        return sched.pending_bytes > self.send_high or queued - rs.freed > self._unacked_high

    def queue_many(self, datas: Iterable[Payload], stream: int = 0, priority: int = 2,
                   text: bool = False) -> bool:
        sched = self.scheduler
        if priority != 2 or stream or text or sched.blocked or self._send_limit < 0:
            return super().queue_many(datas, stream, priority, text)
        was = sched.pending_bytes
        try:
            rest = self._append_small(iter(datas))
            if rest is not None:  # from a large one on: the general way
                self._send_all(rest, stream, priority, text)
        finally:
            if not was and sched.pending_bytes:
                self.on_wake()
        return sched.pending_bytes > self.send_high or self._unacked_over()

    def _append_small(self, it: Iterator[Payload]) -> Iterator[Payload] | None:
        """Frame normal small messages on stream 0 straight into the buffer, in one pass;
        stop before the first larger one and return the rest (None when all went)."""
        limit = min(self._send_limit, self._fragment)
        sched = self.scheduler
        rs = self.rs
        seq = seq0 = rs.next_seq
        buf = sched.small[2]
        start = len(buf)
        total = 0
        pack = _pack_header
        rest: Iterator[Payload] | None = None
        try:
            for data in it:
                size = len(data)
                if size > limit:
                    rest = chain((data,), it)
                    break
                buf += pack(HEADER_SIZE + size, VERSION, 2, 0, 2, 0, seq + 1)
                buf += data
                seq += 1
                total += size
        finally:
            del buf[start + total + 20 * (seq - seq0):]  # a frame cut by an error
            rs.next_seq = seq
            rs.queued += total
            self.bytes_queued += total
            sched.pending_bytes += len(buf) - start
        return rest

    def _unacked_over(self) -> bool:
        rs = self.rs
        return rs.queued - rs.freed > self._unacked_high

    def data_to_send(self, now: float, budget: int = 1 << 62,
                     strict: bool = False) -> list[Chunk]:
        if self._window:
            out = self._windowed(now, budget)
        else:
            out = super().data_to_send(now, budget, strict)
        if out and self._acks:  # kept, as written, until the peer acknowledges it
            self.rs.wrote(out[0] if len(out) == 1 else tuple(out))
        return out

    def _windowed(self, now: float, budget: int) -> list[Chunk]:
        """After a resume: what the window leaves room for, or only the control class
        (ACKs, PINGs, control messages) while it is full: the peer may wait for our ACK."""
        room = self._window - self._in_window
        if room > 0:
            out = super().data_to_send(now, min(budget, room), True)
        else:
            out = self.scheduler.pop_control()
            if out:
                self.last_send = now
            if self._window_wait is None:
                self._window_wait = now + WINDOW_WAIT
                self.timer_changed = True
        for chunk in out:
            self._in_window += len(chunk)
        return out

    def _send_ping(self, now: float) -> None:
        p = self.pinger
        self.scheduler.push_frame(_CONTROL, p.ping(now))
        p.next_at = now + self.options.keepalive_interval

    def _queue_goaway(self, code: int, reason: str) -> None:
        # a listener that has not spoken yet still starts with the magic, so any native
        # peer can read why it is refused
        magic = b"" if self._preface_sent else MAGIC
        rs = self.rs
        if self._acks and rs.floor > rs.ack_sent:
            # what we received is acknowledged before we go: the peer must not report
            # delivered messages as unconfirmed (or wait for an ACK that never comes)
            self._send_ack()
        self._final.append(magic + encode_goaway(code, reason))

    # -- time ------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        opts = self.options
        if self.state is SessionState.HANDSHAKE:
            return self.created + opts.hello_timeout
        if self.state is SessionState.CLOSED:
            return None
        dead = self.last_receive + opts.keepalive_interval + opts.pong_timeout
        frame = self.frames.deadline(self.decoder.fed)
        if frame is not None:
            dead = min(dead, frame)
        if self._window_wait is not None:
            dead = min(dead, self._window_wait)
        if self._ack_due is not None:
            return min(self.pinger.next_at, dead, self._ack_due)
        return min(self.pinger.next_at, dead)

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: HELLO timeout, PING, liveness."""
        opts = self.options
        if self.state is SessionState.HANDSHAKE:
            if now >= self.created + opts.hello_timeout:
                self.fail(f"no HELLO within {opts.hello_timeout:g} s",
                          GoAwayCode.HELLO_TIMEOUT)
            return
        if self.state is not SessionState.OPEN:
            return
        if self._ack_due is not None and now >= self._ack_due:
            self._send_ack()
        if self._window_wait is not None and now >= self._window_wait:
            self._window_acked()
        if now >= self.last_receive + opts.keepalive_interval + opts.pong_timeout:
            self.fail(f"peer silent for {now - self.last_receive:.1f} s (no PONG)",
                      GoAwayCode.IDLE_TIMEOUT)
            return
        if self.frames.expired(self.decoder.fed, now):
            self.fail(self.frames.describe(self.decoder.fed, now), GoAwayCode.IDLE_TIMEOUT)
            return
        if now >= self.pinger.next_at:
            if self.pinger.sent_at is None:
                self._send_ping(now)
            else:
                self.pinger.next_at = now + opts.keepalive_interval
