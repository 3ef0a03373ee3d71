"""One connection's protocol, without I/O: bytes in, messages and events and bytes out.

A driver owns one session per connection and does only this:

* received bytes: ``receive_data(data, now)`` (or ``get_buffer()`` then
  ``buffer_updated(n, now)``) returns the messages decoded; then ``take_events()``;
* sending: ``send_message(data, ...)`` queues; ``data_to_send(now, budget)`` returns chunks to
  write (header and payload views, written in order);
* time: ``next_deadline()`` is when ``handle_timer(now)`` must run next;
* ``closed`` turns true once a GOAWAY was sent or received or a fault was found; the driver
  writes what ``data_to_send`` still returns, then closes the socket.

:class:`NativeSession` speaks the native framing (docs/protocol.md section 1);
:class:`RawSession` speaks ``{packet, 4}`` (section 2). Both have the same surface.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from ..config import Options, Priority
from ..exceptions import ConnectionNotReady, MessageTooLarge, ProtocolError
from .decoder import NativeDecoder, RawDecoder
from .events import (
    Acked,
    Closed,
    Event,
    HandshakeComplete,
    PongReceived,
    Received,
    SessionLost,
)
from .fragmentation import FragmentJob, Reassembler
from .framing import (
    ACK_FORMAT,
    FEATURE_ACKS,
    FEATURE_RESUME,
    FEATURE_RESUMED,
    FLAG_TEXT,
    FRAME_HEADER,
    HEADER_SIZE,
    MAGIC,
    RAW_KEEPALIVE,
    VERSION,
    FrameType,
    GoAwayCode,
    Hello,
    decode_goaway,
    decode_hello,
    encode_frame,
    encode_goaway,
    encode_hello,
    encode_raw,
)
from .reliability import ResumeState
from .scheduler import Chunk, PriorityScheduler

#: acknowledge at least every this many messages (each ACK costs a write on this side and
#: a wake-up on the other: every 256 took 18 % of 1 KiB throughput) ...
ACK_EVERY = 4096
#: ... or every this many payload bytes (large messages: the sender's window of
#: ``max_unacked_bytes`` must not wait for the delay below) ...
ACK_BYTES = 1024 * 1024
#: ... or this long after the first unacknowledged one
ACK_DELAY = 0.005
ResumeLookup = Callable[[bytes], tuple[ResumeState, bool]]

__all__ = ["NativeSession", "RawSession", "Session", "SessionState", "detect_native"]


def detect_native(head: bytes) -> bool:
    """Framing detection on a listener in ``auto`` mode (docs/protocol.md section 3): the
    first 4 bytes are the native magic, or else the length of a raw message."""
    return head[:4] == MAGIC

_pack_header = FRAME_HEADER.pack
_TOKEN = struct.Struct("!Q")
_ERROR_FREE = (GoAwayCode.NORMAL, GoAwayCode.SHUTDOWN)
_CONTROL = int(Priority.CONTROL)


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"  # our HELLO is queued, the peer's has not arrived
    OPEN = "open"
    CLOSED = "closed"  # GOAWAY sent or received, or a fault: nothing more is accepted


class Session:
    """What both framings share: state, counters, the scheduler and the event list."""

    transport_name: str

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float) -> None:
        self.options = options
        self.conn_id = conn_id
        self.transport_name = transport
        self.peer = peer
        self.state = SessionState.HANDSHAKE
        self.open = False  # mirror of `state is OPEN`, read on the hot path
        self.scheduler = PriorityScheduler(options.qos_weights)
        self.events: list[Event] = []
        self.created = now
        self.last_receive = now
        self.last_send = now
        self.bytes_sent = 0
        #: messages sent per priority, except normal (derived: see messages_by_priority)
        self.other_priority_messages = [0, 0, 0, 0]
        self.messages_received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer_max_message = options.max_message_size
        self._final: list[Chunk] = []  # what goes after everything queued (GOAWAY)
        #: set when next_deadline() moved earlier outside handle_timer (driver re-arms)
        self.timer_changed = False

    # -- what each framing implements ------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where to receive the next bytes (then call :meth:`buffer_updated`)."""
        raise NotImplementedError

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        """``nbytes`` arrived in the buffer from :meth:`get_buffer`; return the messages."""
        raise NotImplementedError

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        """Decode ``data``; return the complete messages (events go to ``take_events``)."""
        raise NotImplementedError

    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one message; raise ``ConnectionNotReady`` / ``MessageTooLarge``."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        raise NotImplementedError

    @property
    def bytes_received(self) -> int:
        """Payload bytes of the messages delivered so far."""
        raise NotImplementedError

    @property
    def has_final(self) -> bool:
        """True while a GOAWAY waits to be written after the queue."""
        return bool(self._final)

    # -- common surface ------------------------------------------------------------------
    _TRANSITIONS = {
        SessionState.HANDSHAKE: (SessionState.OPEN, SessionState.CLOSED),
        SessionState.OPEN: (SessionState.CLOSED,),
        SessionState.CLOSED: (),
    }

    def _set_state(self, new: SessionState) -> None:
        """The one place the state changes; an illegal move is a bug and raises."""
        if new not in self._TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal session transition {self.state.value} -> {new.value}")
        self.state = new
        self.open = new is SessionState.OPEN
        self._send_limit = self._peer_max_message if self.open else -1

    @property
    def peer_max_message(self) -> int:
        """The largest message the peer accepts (its HELLO says, else our own limit)."""
        return self._peer_max_message

    @peer_max_message.setter
    def peer_max_message(self, value: int) -> None:
        self._peer_max_message = value
        # one comparison on the send path: -1 unless open, so any size takes the slow check
        self._send_limit = value if self.open else -1

    def set_peer(self, peer: Any) -> None:
        """The remote address, once the socket knows it (stamped on every message)."""
        self.peer = peer
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            decoder.peer = peer

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.open

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet returned by :meth:`data_to_send`."""
        return self.scheduler.pending_bytes + sum(len(c) for c in self._final)

    def messages_by_priority(self) -> list[int]:
        """Messages queued for sending per priority (control, high, normal, low)."""
        out = list(self.other_priority_messages)
        out[2] = self.messages_sent - sum(out)
        return out

    def take_events(self) -> list[Event]:
        out = self.events
        self.events = []
        return out

    def data_to_send(self, now: float, budget: int = 1 << 62,
                     strict: bool = False) -> list[Chunk]:
        """Chunks to write now, in order; about ``budget`` bytes of them (at most, and at
        least one frame, when ``strict``: throttled links)."""
        out = self.scheduler.pop(budget, strict) if self.scheduler.pending_bytes else []
        if self._final and not self.scheduler.pending_bytes:
            out.extend(self._final)
            self._final = []
        if out:
            self.last_send = now
        return out

    # -- how a session ends (the drivers call these; see also close / connection_lost) ------
    def fail(self, reason: str, code: int = GoAwayCode.PROTOCOL_ERROR) -> None:
        """This side found a fault (the peer broke the protocol, or does not read): drop
        what is queued, queue GOAWAY ``code`` (native), close with an error. The driver
        writes what :meth:`data_to_send` still returns, then closes the socket."""
        self._close(code, reason, by_peer=False, drop_queued=True, error=True)

    def peer_closed(self, code: int, reason: str, *, error: bool | None = None,
                    keep_queued: bool = False) -> None:
        """The peer ended the conversation through its carrier (a WebSocket close, the end
        of a gRPC stream or call): nothing is answered. ``error`` defaults to "``code`` is
        not NORMAL or SHUTDOWN"; ``keep_queued`` lets what is queued still go (a peer that
        only stopped sending)."""
        if error is None:
            error = code not in _ERROR_FREE
        self._close(code, reason, by_peer=True, drop_queued=not keep_queued, error=error)

    def carrier_closed(self, code: int, reason: str, *, error: bool) -> None:
        """The carrier was closed from this side by the library under it (e.g. a WebSocket
        close frame it sent): drop what is queued; no GOAWAY, nothing more can go out."""
        if self.state is SessionState.CLOSED:
            return
        self.scheduler.clear(keep_control=True)
        self._final = []
        self._set_state(SessionState.CLOSED)
        self.close_code = code
        self.close_reason = reason
        self.events.append(Closed(code, reason, False, error))

    def _fail(self, exc: ProtocolError) -> None:
        self._close(exc.code, str(exc), by_peer=False, drop_queued=True, error=True)

    def _close(self, code: int, reason: str, *, by_peer: bool, drop_queued: bool,
               error: bool) -> None:
        if self.state is SessionState.CLOSED:
            return
        self._set_state(SessionState.CLOSED)
        self.close_code = code
        self.close_reason = reason
        if drop_queued:  # control frames (our HELLO, PONGs) still go, before the GOAWAY
            self.scheduler.clear(keep_control=True)
        if not by_peer:
            self._queue_goaway(code, reason)
        self.events.append(Closed(code, reason, by_peer, error))

    def _queue_goaway(self, code: int, reason: str) -> None:
        """Native sessions send GOAWAY; raw has no such frame."""

    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: what is queued still goes out, then GOAWAY (native)."""
        self._close(code, reason, by_peer=False, drop_queued=False,
                    error=code not in _ERROR_FREE)

    def connection_lost(self, reason: str) -> None:
        """The transport went away under us."""
        if self.state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)
            self.close_code = -1
            self.close_reason = reason
            self.events.append(Closed(-1, reason, True, True))

    @property
    def messages_sent(self) -> int:
        raise NotImplementedError

    def _check_send(self, size: int) -> None:
        if self.state is not SessionState.OPEN:
            raise ConnectionNotReady(self.conn_id, self.state.value)
        if size > self.peer_max_message:
            raise MessageTooLarge(size, self.peer_max_message)


class NativeSession(Session):
    """The native protocol: preface, HELLO, DATA (fragmented when large), PING/PONG, GOAWAY."""

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, session_id: bytes, send_preface: bool = True,
                 resume: ResumeState | None = None, role: str = "peer",
                 resume_lookup: ResumeLookup | None = None) -> None:
        """``role``: "peer" (both sides send HELLO at once; no resume), "client" (sends
        HELLO first, resumes ``resume``) or "server" (answers the client's HELLO, finding
        the session to resume with ``resume_lookup``)."""
        super().__init__(options, conn_id, transport, peer, now)
        self.session_id = session_id
        self.role = role
        self.resume_lookup = resume_lookup
        #: sequence numbers, unacknowledged messages, duplicate filter (outlives sessions)
        self.rs = resume if resume is not None else ResumeState(session_id)
        self._reliable = options.reliable and (resume is not None
                                               or resume_lookup is not None)
        self._acks = False  # both sides agreed on ACKs (set by the handshake)
        self._ack_due: float | None = None
        self._ack_bytes = 0  # payload bytes received when the last ACK went
        self._seq0 = self.rs.next_seq
        self.peer_session_id = b""
        self.reassembler = Reassembler(options.max_message_size, options.max_partial_messages,
                                       options.max_reassembly_bytes)
        self.decoder = NativeDecoder(conn_id, transport, peer, options.max_frame_size,
                                     self.reassembler)
        self._magic = b""  # bytes of the peer's magic seen so far
        self._magic_ok = False
        self._fragment = options.max_fragment_size
        self._qos = options.qos
        self._ping_token = 0
        self._ping_sent_at: float | None = None
        self._next_ping = now
        self.rtt_last: float | None = None
        self.pings_sent = 0
        self._preface_sent = False
        if send_preface and role != "server":
            self._send_hello()

    def _features(self) -> int:
        return FEATURE_ACKS | FEATURE_RESUME if self._reliable else 0

    def _send_hello(self, features: int | None = None, resume_seq: int | None = None,
                    session_id: bytes | None = None) -> None:
        o = self.options
        rs = self.rs
        if resume_seq is None:
            resume_seq = rs.floor if rs.established else 0
        hello = Hello(session_id or rs.session_id,
                      self._features() if features is None else features,
                      o.max_frame_size, o.max_message_size, resume_seq)
        self.scheduler.push_frame(_CONTROL, MAGIC + encode_hello(hello))
        self._preface_sent = True

    # -- receiving -----------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        if not self._magic_ok:
            return self.receive_data(bytes(self.decoder.get_buffer()[:nbytes]), now)
        self.last_receive = now
        dec = self.decoder
        try:
            dec.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._fail(exc)
        return self._after_decode(now)

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
                self._fail(ProtocolError(
                    f"peer did not start with the objtransport preface (got {self._magic!r});"
                    " is it a raw {packet, 4} peer or another protocol?",
                    GoAwayCode.PROTOCOL_ERROR))
                return []
            self._magic_ok = True
            if not data:
                return []
        try:
            self.decoder.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
        return self._after_decode(now)

    def _after_decode(self, now: float) -> list[Received]:
        dec = self.decoder
        while dec.control:
            control = dec.control
            dec.control = []
            try:
                for ftype, payload in control:
                    self._on_control(ftype, payload, now)
                if self.state is SessionState.OPEN and dec.buffered:
                    dec.feed(b"")  # what followed the HELLO
            except ProtocolError as exc:
                self._fail(exc)
                break
        if self._acks and self.rs.floor > self.rs.ack_sent:
            self._schedule_ack(now)
        msgs = dec.messages
        if msgs:
            dec.messages = []
            if self.state is SessionState.CLOSED and self.close_code not in _ERROR_FREE:
                return []
            self.messages_received += len(msgs)
        return msgs

    @property
    def bytes_received(self) -> int:
        return self.decoder.bytes_received

    def _on_control(self, ftype: int, payload: bytes, now: float) -> None:
        if ftype == FrameType.HELLO:
            if self.state is not SessionState.HANDSHAKE:
                raise ProtocolError("second HELLO", GoAwayCode.PROTOCOL_ERROR)
            hello = decode_hello(payload)
            self._on_hello(hello, now)
        elif self.state is SessionState.HANDSHAKE:
            raise ProtocolError(f"{FrameType(ftype).name} frame before HELLO",
                                GoAwayCode.PROTOCOL_ERROR)
        elif ftype == FrameType.PING:
            if self.state is SessionState.OPEN:
                self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.PONG, payload))
        elif ftype == FrameType.PONG:
            self._on_pong(payload, now)
        elif ftype == FrameType.GOAWAY:
            code, reason = decode_goaway(payload)
            self._close(code, reason, by_peer=True, drop_queued=True,
                        error=code not in _ERROR_FREE)
        elif ftype == FrameType.ACK:
            if len(payload) != 8:
                raise ProtocolError("ACK payload is not 8 bytes", GoAwayCode.PROTOCOL_ERROR)
            (seq,) = ACK_FORMAT.unpack(payload)
            if seq > self.rs.next_seq and self._acks:
                raise ProtocolError(f"ACK of message {seq}, only {self.rs.next_seq} were sent",
                                    GoAwayCode.PROTOCOL_ERROR)
            if self.rs.on_ack(seq):
                self.events.append(Acked(seq))

    def _on_hello(self, hello: Hello, now: float) -> None:
        """Settle the handshake: limits, ACKs, and resuming (or not) the session."""
        self.peer_session_id = hello.session_id
        self.peer_max_message = hello.max_message_size
        self._fragment = min(self.options.max_fragment_size, hello.max_frame_size - 28)
        both = FEATURE_ACKS | FEATURE_RESUME
        agreed = self._reliable and hello.features & both == both
        rs = self.rs
        if self.role == "server":
            resumed = False
            if agreed and self.resume_lookup is not None:
                rs, resumed = self.resume_lookup(hello.session_id)
                self.rs = rs
                self._seq0 = rs.next_seq
            if resumed:
                self._send_hello(both | FEATURE_RESUMED, rs.floor, hello.session_id)
                self._resend(hello.resume_seq)
            else:
                rs.reset_receive()
                self._send_hello(both if agreed else 0, 0, hello.session_id)
        elif agreed:
            if hello.features & FEATURE_RESUMED:
                self._resend(hello.resume_seq)
            else:
                if rs.established:
                    lost = rs.take_unconfirmed()
                    if lost:
                        self.events.append(SessionLost(lost))
                    rs.restart_numbering()
                    self._seq0 = 0
                rs.reset_receive()
            rs.established = True
        if agreed:
            self.decoder.rx = rs
            self._acks = True
        rs.peer_session_id = hello.session_id
        self._set_state(SessionState.OPEN)
        self.events.append(HandshakeComplete(hello.session_id, hello.max_frame_size,
                                             hello.max_message_size))
        self._send_ping(now)

    def _resend(self, peer_floor: int) -> None:
        """After a resume: drop what the peer has, send the rest again, same numbers."""
        rs = self.rs
        rs.on_ack(peer_floor)
        for seq, data, stream, priority, text in rs.unacked():
            self._queue(data, seq, stream, priority, text)
            rs.resent += 1

    def _schedule_ack(self, now: float) -> None:
        rs = self.rs
        if (rs.floor - rs.ack_sent >= ACK_EVERY
                or self.decoder.bytes_received - self._ack_bytes >= ACK_BYTES):
            self._send_ack()
        elif self._ack_due is None:
            self._ack_due = now + ACK_DELAY
            self.timer_changed = True

    def _send_ack(self) -> None:
        rs = self.rs
        rs.ack_sent = rs.floor
        self._ack_bytes = self.decoder.bytes_received
        self._ack_due = None
        self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.ACK,
                                                         ACK_FORMAT.pack(rs.floor)))

    def _on_pong(self, payload: bytes, now: float) -> None:
        if len(payload) != 8 or self._ping_sent_at is None:
            return
        (token,) = _TOKEN.unpack(payload)
        if token != self._ping_token:
            return
        rtt = max(0.0, now - self._ping_sent_at)
        self._ping_sent_at = None
        self.rtt_last = rtt
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
        self.bytes_sent += size
        if priority == 2 and not stream and not text and size <= self._fragment:
            # the common case: a normal small message on stream 0
            sched = self.scheduler
            if self._acks:
                if type(data) is not bytes:
                    data = bytes(data)
                rs.unacked_data.append(data)
                rs.unacked_bytes += size
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
        if self._acks:
            if type(data) is not bytes:
                data = bytes(data)
            rs.unacked_data.append(data)
            rs.unacked_bytes += size
            if stream or priority != 2 or text:
                rs.meta[seq] = (stream, priority, text)
        queue = priority if self._qos else 2
        if size <= self._fragment:
            sched = self.scheduler
            header = _pack_header(HEADER_SIZE + size, VERSION, 2, FLAG_TEXT if text else 0,
                                  priority, stream, seq)
            if sched.blocked and (queue, stream) in sched.blocked:
                sched.push_frame(queue, header + bytes(data), stream)
            else:
                buf = sched.small[queue]
                buf += header
                buf += data
                sched.pending_bytes += size + 20
        else:
            sched = self.scheduler
            sched.push(queue, FragmentJob(data, seq, stream, priority, FLAG_TEXT if text else 0,
                                          self._fragment), stream)
        return seq

    def _queue(self, data: bytes, seq: int, stream: int, priority: int, text: bool) -> None:
        """Queue an already numbered message (a resend)."""
        flags = FLAG_TEXT if text else 0
        queue = priority if self._qos else 2
        if len(data) <= self._fragment:
            self.scheduler.push_frame(queue, _pack_header(
                HEADER_SIZE + len(data), VERSION, 2, flags, priority, stream, seq) + data,
                stream)
        else:
            self.scheduler.push(queue, FragmentJob(data, seq, stream, priority, flags,
                                                   self._fragment), stream)

    @property
    def unacked_bytes(self) -> int:
        """Bytes sent and not yet acknowledged (0 without ACKs)."""
        return self.rs.unacked_bytes if self._acks else 0

    @property
    def acks(self) -> bool:
        return self._acks

    @property
    def messages_sent(self) -> int:
        return self.rs.next_seq - self._seq0

    def _send_ping(self, now: float) -> None:
        self._ping_token += 1
        self._ping_sent_at = now
        self.pings_sent += 1
        self._next_ping = now + self.options.keepalive_interval
        self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.PING,
                                                         _TOKEN.pack(self._ping_token)))

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
        if self._ack_due is not None:
            return min(self._next_ping, dead, self._ack_due)
        return min(self._next_ping, dead)

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: HELLO timeout, PING, liveness."""
        opts = self.options
        if self.state is SessionState.HANDSHAKE:
            if now >= self.created + opts.hello_timeout:
                self._close(GoAwayCode.HELLO_TIMEOUT,
                            f"no HELLO within {opts.hello_timeout:g} s",
                            by_peer=False, drop_queued=True, error=True)
            return
        if self.state is not SessionState.OPEN:
            return
        if self._ack_due is not None and now >= self._ack_due:
            self._send_ack()
        if now >= self.last_receive + opts.keepalive_interval + opts.pong_timeout:
            self._close(GoAwayCode.IDLE_TIMEOUT,
                        f"peer silent for {now - self.last_receive:.1f} s (no PONG)",
                        by_peer=False, drop_queued=True, error=True)
            return
        if now >= self._next_ping:
            if self._ping_sent_at is None:
                self._send_ping(now)
            else:
                self._next_ping = now + opts.keepalive_interval


class RawSession(Session):
    """``{packet, 4}``: a length and a payload per message, nothing else on the wire."""

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self._count = 0
        self._set_state(SessionState.OPEN)
        self.decoder = RawDecoder(conn_id, transport, peer, options.max_message_size,
                                  options.raw_keepalive_filter)
        self.events.append(HandshakeComplete(b"", options.max_frame_size,
                                             options.max_message_size))

    @property
    def bytes_received(self) -> int:
        return self.decoder.bytes_received

    @property
    def keepalives_received(self) -> int:
        return self.decoder.keepalives

    def connection_lost(self, reason: str) -> None:
        """A raw peer has no goodbye frame: closing its side between two messages is its
        orderly end. EOF in the middle of a message is an error."""
        if self.state is not SessionState.CLOSED and not self.decoder.buffered:
            self._close(GoAwayCode.NORMAL, "peer closed the connection", by_peer=True,
                        drop_queued=True, error=False)
            return
        super().connection_lost(reason)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        self.last_receive = now
        try:
            self.decoder.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._fail(exc)
        return self._take()

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        if self.state is SessionState.CLOSED:
            return []
        self.last_receive = now
        try:
            self.decoder.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
        return self._take()

    def _take(self) -> list[Received]:
        msgs = self.decoder.messages
        if msgs:
            self.decoder.messages = []
            self.messages_received += len(msgs)
        return msgs

    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one ``{packet, 4}`` frame. ``stream``/``priority`` order the local queue
        only; nothing of them reaches the wire."""
        size = len(data)
        if size > self._send_limit:
            self._check_send(size)
        self._count += 1
        self.bytes_sent += size
        if priority != 2:
            self.other_priority_messages[priority] += 1
        sched = self.scheduler
        if size < 65536 and not sched.blocked:
            buf = sched.small[priority]
            buf += _RAW_LEN.pack(size)
            buf += data
            sched.pending_bytes += size + 4
        elif size < 65536:
            sched.push_frame(priority, _RAW_LEN.pack(size) + bytes(data), stream)
        else:  # header and payload as one atomic item: no copy of the payload
            sched.push(priority, (_RAW_LEN.pack(size), memoryview(data)), stream)
        return self._count

    @property
    def messages_sent(self) -> int:
        return self._count

    def next_deadline(self) -> float | None:
        interval = self.options.raw_keepalive_interval
        if self.state is not SessionState.OPEN or not interval:
            return None
        return self.last_send + interval

    def handle_timer(self, now: float) -> None:
        interval = self.options.raw_keepalive_interval
        if self.state is SessionState.OPEN and interval and now >= self.last_send + interval:
            self.scheduler.push_frame(_CONTROL, encode_raw(RAW_KEEPALIVE))
            self.last_send = now


_RAW_LEN = struct.Struct("!I")
