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
from .chunk_pool import CHUNK_POOL_MIN, WRITE_CHUNK
from .core import AnySession, Payload, Session, SessionCore, SessionState
from .fragmentation import FragmentJob
from .framing import (
    FRAME_HEADER,
    HEADER_SIZE,
    MAGIC,
    PLAIN_DATA,
    PLAIN_HEADER,
    VERSION,
    GoAwayCode,
    encode_goaway,
    wire_flags,
)
from .handshake import (
    ACK_BYTES,
    ACK_DELAY,
    ACK_EVERY,
    ACK_PIGGYBACK,
    WINDOW_WAIT,
    ResumeLookup,
)
from .native_receive import NativeReceiver
from .raw import RawSession
from .reliability import ResumeState, Unacked
from .scheduler import Chunk

__all__ = [
    "ACK_BYTES",
    "ACK_DELAY",
    "ACK_EVERY",
    "ACK_PIGGYBACK",
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
_pack_plain = PLAIN_HEADER.pack
_CONTROL = int(Priority.CONTROL)


class NativeSession(NativeReceiver):
    """The native protocol: preface, HELLO, DATA (fragmented when large), PING/PONG, GOAWAY.

    The receiving half is :class:`~.native_receive.NativeReceiver`'s; here are sending and
    the timers.
    """

    __slots__ = ()

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, session_id: bytes, send_preface: bool = True,
                 resume: ResumeState | None = None, role: str = "peer",
                 resume_lookup: ResumeLookup | None = None, *,
                 token: str | None = None) -> None:
        """``role``: "peer" (both sides send HELLO at once; no resume), "client" (sends
        HELLO first, resumes ``resume``) or "server" (answers the client's HELLO, finding
        the session to resume with ``resume_lookup``). A client's ``token`` travels in its
        HELLO."""
        super().__init__(options, conn_id, transport, peer, now, session_id, resume, role,
                         resume_lookup)
        self.token = token
        if send_preface and role != "server":
            self._send_hello()

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
        rs.queued += size  # the only per-message bookkeeping for ACKs, resume, figures
        if priority == 2 and not stream and not text and size <= self._fragment:
            # the common case: a normal small message on stream 0
            sched = self.scheduler
            if not sched.blocked:
                buf = sched.small[2]
                buf += _pack_plain(HEADER_SIZE + size, PLAIN_DATA, seq)
                buf += data
                sched.pending_bytes += size + 20
                return seq
            sched.push_frame(2, _pack_plain(HEADER_SIZE + size, PLAIN_DATA, seq) + bytes(data),
                             0)
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
        # send_message's common case, and the answer, in one call (two counters move:
        # the sequence number and the bytes numbered; the figures derive from them)
        rs = self.rs
        rs.next_seq = seq = rs.next_seq + 1
        rs.queued = queued = rs.queued + size
        buf = sched.small[2]
        buf += _pack_plain(HEADER_SIZE + size, PLAIN_DATA, seq)
        buf += data
        was = sched.pending_bytes
        sched.pending_bytes = pending = was + size + 20  # the frame: the u32 length first
        if was and pending <= sched.full_at:  # the common case: neither a wake nor a write
            return pending > self.send_high or queued - rs.freed > self._unacked_high
        if not was:
            self.on_wake()
        elif was <= sched.full_at:  # crossed it now: written at once, in chunks (core.py)
            self.on_full()
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
        pack = _pack_plain
        rest: Iterator[Payload] | None = None
        try:
            for data in it:
                size = len(data)
                if size > limit:
                    rest = chain((data,), it)
                    break
                buf += pack(HEADER_SIZE + size, PLAIN_DATA, seq + 1)
                buf += data
                seq += 1
                total += size
        finally:
            del buf[start + total + 20 * (seq - seq0):]  # a frame cut by an error
            rs.next_seq = seq
            rs.queued += total
            sched.pending_bytes += len(buf) - start
        return rest

    def expires(self, seq: int, deadline: float) -> None:
        """Message ``seq`` (as ``send_message`` returned it) is worthless after
        ``deadline``, on the clock the caller later passes to :meth:`expire`."""
        self.rs.expires(seq, deadline)

    def expire(self, now: float) -> list[Unacked]:
        """Give up the unacknowledged messages whose deadline passed by ``now`` (peer with
        ``SKIP`` only): those still queued and not begun are removed and a SKIP frame
        queued for each; the others get theirs after a resume. Returns them all (seq,
        payload, stream, priority, text), to report. Not for the hot path."""
        rs = self.rs
        if not rs.expiring:
            return []
        sched = self.scheduler
        before = sched.pending_bytes
        lost, removed = rs.expire(now)
        self._dropped += before - sched.pending_bytes
        for seq in sorted(removed):
            self._send_skip(seq)
        if removed and not before:
            self.on_wake()
        return lost

    def _unacked_over(self) -> bool:
        rs = self.rs
        return rs.queued - rs.freed > self._unacked_high

    def data_to_send(self, now: float, budget: int = 1 << 62,
                     strict: bool = False) -> list[Chunk]:
        due = self._ack_due
        if due is not None and now >= due - ACK_PIGGYBACK:
            self._send_ack()  # rides with this write: no lone ACK (and no wake-up) later
        if self._window:
            out = self._windowed(now, budget)
        elif self._final:
            out = super().data_to_send(now, budget, strict)
        else:  # SessionCore.data_to_send without a GOAWAY to add, inline (every write)
            sched = self.scheduler
            if not sched.pending_bytes:
                return []
            small = sched.small
            buf = small[2]
            n = len(buf)
            if n == sched.pending_bytes and (not strict or n <= budget):
                # all that is queued is normal small frames (pending_bytes counts every
                # queue: the others are empty): Scheduler.pop's common case inline, and
                # for its one chunk what follows below
                small[2] = bytearray()
                sched.pending_bytes = 0
                sched.full_at = WRITE_CHUNK  # the mark: a write chunk above the empty queue
                sched.sent_bytes[2] += n
                self.last_send = now
                rs = self.rs
                sent = rs.queued - self._queued0 - self._dropped  # the queue is empty
                if sent > self.bytes_sent:
                    self.bytes_sent = sent
                if self._acks and rs.acked != rs.next_seq:
                    if n < CHUNK_POOL_MIN:
                        rs.sent.append((rs.next_seq, rs.queued, buf, None))
                    else:
                        rs.wrote(buf)
                return [buf]
            else:
                out = sched.pop(budget, strict)
            if out:
                self.last_send = now
                # bytes_queued inline: the payload bytes numbered since the session began
                sent = self.rs.queued - self._queued0 - self._dropped - sched.pending_bytes
                if sent > self.bytes_sent:
                    self.bytes_sent = sent
        if out and self._acks:  # kept, as written, until the peer acknowledges it
            rs = self.rs
            if rs.acked != rs.next_seq:  # else control frames only (ResumeState.wrote)
                if len(out) == 1 and len(out[0]) < CHUNK_POOL_MIN:  # small: kept as is
                    rs.sent.append((rs.next_seq, rs.queued, out[0], None))
                else:  # large chunks are kept as copies in pool buffers
                    rs.wrote(out[0] if len(out) == 1 else tuple(out))
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

    def _queue_goaway(self, code: int, reason: str) -> None:
        # a listener that has not spoken yet still starts with the magic, so any native
        # peer can read why it is refused
        magic = b"" if self._preface_sent else MAGIC
        rs = self.rs
        if self._acks and rs.floor > rs.ack_sent:
            # what we received is acknowledged before we go: the peer must not report
            # delivered messages as unconfirmed (or wait for an ACK that never comes)
            self._send_ack()
        self._final += (magic + encode_goaway(code, reason),)
        self.has_final = True

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
                what = "authentication" if self.authenticating else "HELLO"
                self.fail(f"no {what} within {opts.hello_timeout:g} s",
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
            self.rs.trim_pool()  # an idle connection keeps no spare chunk buffers
            if self.pinger.sent_at is None:
                self._send_ping(now)
            else:
                self.pinger.next_at = now + opts.keepalive_interval
