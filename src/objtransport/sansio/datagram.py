"""UDP sessions without I/O: one datagram in, messages and events out; datagrams out.

A :class:`DatagramSession` has the surface of :class:`~.session.Session`, for a carrier that
keeps datagram boundaries and loses, duplicates and reorders datagrams (docs/protocol.md,
section 6). The driver does only this:

* each datagram received: ``receive_datagram(data, now)``; after a batch, ``take_messages()``
  and ``take_events()`` (``receive_data(data, now)`` does both for one datagram);
* sending: ``send_message(...)`` queues; ``datagrams_to_send(now, budget)`` returns the
  datagrams to send, each a buffer or a ``(header, piece)`` pair sent as one datagram;
* time: ``next_deadline()`` / ``handle_timer(now)``: PING probes and keepalive, the liveness
  deadline, reassembly expiry, forgetting an idle peer.

**Native framing.** Every datagram holds exactly one native frame (length field included, and
it must equal the datagram's size less 4). DATA above ``max_datagram_payload`` is sent as
fragments (the native fragment extension), which the receiver puts together in any arrival
order. Every message has a sequence number; a bounded window of the numbers already done
(delivered or given up) drops duplicates. No HELLO: a client sends PING at once and is open
when the first PONG arrives (or gives up after ``hello_timeout``); a listener's peer is open
as soon as its first valid datagram arrives.

**Raw framing.** One datagram is one message, no header; a message above the UDP limit
(65,507 bytes) raises ``MessageTooLarge`` and nothing is queued.

**Limits** (checked before anything is kept): a declared ``total`` above
``max_message_size`` is dropped; at most ``max_partial_messages`` messages in reassembly per
peer (the oldest is given up for a new one); at most ``max_reassembly_bytes`` held per peer
and ``budget.limit`` for every peer sharing the :class:`ReassemblyBudget` (a listener), counted
in bytes actually received, not in bytes declared. Nothing a peer sends closes the session:
each bad datagram is counted and dropped.
"""

from __future__ import annotations

import struct
from typing import Any

from ..config import Options
from ..exceptions import MessageTooLarge
from .core import AnySession, SessionCore, SessionState
from .events import (
    PRIORITY_NAMES,
    HandshakeComplete,
    Message,
    PongReceived,
    Received,
)
from .fragmentation import FragmentJob
from .framing import (
    FLAG_FRAG,
    FLAG_TEXT,
    FRAG_EXT,
    FRAME_HEADER,
    HEADER_SIZE,
    RAW_KEEPALIVE,
    VERSION,
    FrameType,
    GoAwayCode,
    decode_goaway,
    encode_frame,
    encode_goaway,
    encode_raw,
)
from .liveness import Pinger
from .reassembly import Reassembly, ReassemblyBudget, SeqWindow
from .scheduler import Chunk

__all__ = [
    "LOSS_COUNTERS",
    "MAX_UDP_PAYLOAD",
    "Datagram",
    "DatagramSession",
    "ReassemblyBudget",
    "SeqWindow",
    "looks_native",
]

#: the largest UDP payload over IPv4
MAX_UDP_PAYLOAD = 65_507
#: a DATA number further ahead than this of the newest is garbage, not a gap
MAX_JUMP = 1 << 20
#: a client resends its PING this often until the first PONG
PROBE_INTERVAL = 0.25
FRAG_SIZE = FRAME_HEADER.size + FRAG_EXT.size  # 28

#: one datagram to send: a buffer, or a fragment header and its piece
Datagram = Chunk | tuple[Chunk, Chunk]

#: what :meth:`DatagramSession.loss_counters` reports, in this order
LOSS_COUNTERS = (
    "datagrams_sent", "datagrams_received", "fragments_received", "fragments_expired",
    "messages_dropped", "messages_missing", "duplicates", "reordered", "garbage", "oversized",
    "inconsistent", "evicted", "overrun", "keepalives",
)

_unpack = FRAME_HEADER.unpack_from
_unpack_frag = FRAG_EXT.unpack_from
_pack_header = FRAME_HEADER.pack
_LEN = struct.Struct("!I")
_NOT_TEXT = 0xFF & ~FLAG_TEXT
_FRAG_FLAGS = FLAG_FRAG | FLAG_TEXT
_PING = int(FrameType.PING)
_PONG = int(FrameType.PONG)
_GOAWAY = int(FrameType.GOAWAY)


def looks_native(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` is a native datagram that may open a conversation: a DATA frame
    (numbered) or a PING, with a length that matches the datagram. A listener admits an
    unknown address in native mode only on such a datagram."""
    n = len(data)
    if n < 20:
        return False
    length, ver, typ, flags, prio, _stream, seq = _unpack(data, 0)
    if length != n - 4 or ver != VERSION or prio > 3:
        return False
    if typ == FrameType.DATA:
        return seq > 0 and not flags & ~_FRAG_FLAGS and (not flags & FLAG_FRAG or n > FRAG_SIZE)
    return typ == _PING and n == 28 and not flags


class DatagramSession(SessionCore):
    """One UDP peer: native (frames, fragments, PING/PONG) or raw (one datagram per message).

    ``role`` is "client" (a connected endpoint: PING probes until the first PONG, then
    keepalive and a liveness deadline) or "server" (a listener's peer: open at once, forgotten
    after ``idle_timeout`` of silence, or ``keepalive_interval + pong_timeout`` in native
    framing, since a native client pings every ``keepalive_interval``). Fragmented messages
    are put together by its :class:`~.reassembly.Reassembly`.
    """

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, *, native: bool = True, role: str = "client",
                 budget: ReassemblyBudget | None = None) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.native = native
        self.role = role
        self.messages: list[Received] = []
        self.max_message_size = (options.max_message_size if native
                                 else min(options.max_message_size, MAX_UDP_PAYLOAD))
        self.peer_max_message = self.max_message_size
        self._piece = options.max_datagram_payload
        self._qos = options.qos
        self._count = 0  # messages queued (the last sequence number given out)
        self._received_bytes = 0
        self.window = SeqWindow()
        self.reassembly = Reassembly(options, self.window, budget)
        #: the highest (seq << 32 | offset) of the DATA datagrams accepted: one below it
        #: arrived after a datagram the sender numbered later (``reordered``)
        self._hi_key = 0
        self._need_head: memoryview | None = None
        # counters (see LOSS_COUNTERS; the reassembly keeps the fragment ones)
        self.datagrams_sent = self.datagrams_received = 0
        self.reordered = self.garbage = self.keepalives = 0
        self._duplicates = self._oversized = 0
        self.overrun = 0  # datagrams dropped while the application had reading paused
        self.pinger = Pinger(now)
        if native and role == "client":
            self._send_ping(now)  # the probe: open once it is answered
            self.pinger.next_at = now + PROBE_INTERVAL
        else:
            self._open()

    @classmethod
    def like(cls, other: AnySession, now: float, *, native: bool, role: str,
             budget: ReassemblyBudget | None = None) -> DatagramSession:
        """A datagram session for the same connection as ``other`` (built by an owner that
        only knows stream framings)."""
        return cls(other.options, other.conn_id, other.transport_name, other.peer, now,
                   native=native, role=role, budget=budget)

    def _open(self) -> None:
        self._set_state(SessionState.OPEN)
        self.events.append(HandshakeComplete(b"", self._piece + FRAG_SIZE,
                                             self.max_message_size))

    # -- figures ---------------------------------------------------------------------------
    @property
    def bytes_received(self) -> int:
        return self._received_bytes

    @property
    def messages_sent(self) -> int:
        return self._count

    @property
    def acks(self) -> bool:
        """Datagram sessions never acknowledge: delivery is best effort."""
        return False

    @property
    def rtt_last(self) -> float | None:
        return self.pinger.rtt_last

    @property
    def pings_sent(self) -> int:
        return self.pinger.sent

    @property
    def messages_missing(self) -> int:
        return self.window.missing

    @property
    def partial_messages(self) -> int:
        return len(self.reassembly.partials)

    @property
    def held(self) -> int:
        """Bytes of partial messages held."""
        return self.reassembly.held

    @property
    def duplicates(self) -> int:
        return self._duplicates + self.reassembly.duplicates

    @property
    def oversized(self) -> int:
        return self._oversized + self.reassembly.oversized

    @property
    def fragments_received(self) -> int:
        return self.reassembly.fragments_received

    @property
    def fragments_expired(self) -> int:
        return self.reassembly.fragments_expired

    @property
    def messages_dropped(self) -> int:
        return self.reassembly.messages_dropped

    @property
    def inconsistent(self) -> int:
        return self.reassembly.inconsistent

    @property
    def evicted(self) -> int:
        return self.reassembly.evicted

    def loss_counters(self) -> dict[str, int]:
        """The datagram figures, named as in :data:`LOSS_COUNTERS`."""
        return {name: getattr(self, name) for name in LOSS_COUNTERS}

    # -- receiving -------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        """One whole datagram; return the messages it completed."""
        self.receive_datagram(data, now)
        return self.take_messages()

    def take_messages(self) -> list[Received]:
        out = self.messages
        self.messages = []
        return out

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Handle one datagram (the buffer may be reused once this returns); complete
        messages go to ``self.messages``, events to ``self.events``. Never raises for what
        the peer sent: a bad datagram is counted and dropped."""
        if self.state is SessionState.CLOSED:
            return
        self.last_receive = now
        self.datagrams_received += 1
        n = len(data)
        if not self.native:
            self._receive_raw(data, n)
            return
        if n < 20:
            self.garbage += 1
            return
        length, ver, typ, flags, prio, stream, seq = _unpack(data, 0)
        if length != n - 4 or ver != 1:
            self.garbage += 1
            return
        if typ == 2 and not flags & _NOT_TEXT and prio <= 3 and seq:
            w = self.window
            if seq == w.floor + 1 and not w.above:
                w.floor = w.hi = seq
            elif not self._accept_new(seq):
                return
            else:
                w.mark(seq)
            key = seq << 32
            if key > self._hi_key:
                self._hi_key = key
            else:
                self.reordered += 1
            self._received_bytes += n - 20
            self.messages_received += 1
            if stream or prio != 2 or flags:
                self.messages.append(Message(bytes(data[20:]), self.conn_id,
                                             self.transport_name, self.peer, stream,
                                             PRIORITY_NAMES[prio], bool(flags)))
            else:
                self.messages.append(bytes(data[20:]))
            return
        if typ == 2:
            self._fragment(data, n, flags, prio, stream, seq, now)
        elif typ == _PING and n == 28:
            self.scheduler.push_frame(0, encode_frame(FrameType.PONG, bytes(data[20:])))
        elif typ == _PONG and n == 28:
            self._on_pong(bytes(data[20:]), now)
        elif typ == _GOAWAY and n >= 22:
            code, reason = decode_goaway(bytes(data[20:]))
            self.peer_closed(code, reason)
        else:
            self.garbage += 1

    def _receive_raw(self, data: bytes | bytearray | memoryview, n: int) -> None:
        if n > self.max_message_size:
            self._oversized += 1
            return
        payload = bytes(data)
        if n == 1 and payload == RAW_KEEPALIVE and self.options.raw_keepalive_filter:
            self.keepalives += 1
            return
        self._received_bytes += n
        self.messages_received += 1
        self.messages.append(payload)

    def _accept_new(self, seq: int) -> bool:
        """A DATA number off the fast path: False (counted) for a duplicate or garbage."""
        w = self.window
        if seq - w.hi > MAX_JUMP and w.hi:
            self.garbage += 1
            return False
        restarts = w.restarts
        if w.seen(seq):
            if not self.reassembly.late(seq):
                self._duplicates += 1
            return False
        if w.restarts != restarts:
            self._hi_key = 0
        return True

    def _fragment(self, data: bytes | bytearray | memoryview, n: int, flags: int, prio: int,
                  stream: int, seq: int, now: float) -> None:
        if n <= FRAG_SIZE or flags & ~_FRAG_FLAGS or prio > 3 or not seq:
            self.garbage += 1
            return
        offset, total = _unpack_frag(data, 20)
        r = self.reassembly
        if not r.check(seq, offset, n - FRAG_SIZE, total, stream, prio):
            return
        p = r.partials.get(seq)
        if p is None:
            if not self._accept_new(seq):
                return
            p = r.start(seq, total, stream, prio, bool(flags & FLAG_TEXT), now)
            if len(r.partials) == 1:
                self.timer_changed = True  # the reassembly deadline may come first now
        if not r.add(seq, p, offset, bytes(data[FRAG_SIZE:])):
            return
        key = seq << 32 | offset
        if key > self._hi_key:
            self._hi_key = key
        else:
            self.reordered += 1
        if p.complete:
            data = r.finish(seq, p)
            self._received_bytes += p.total
            self.messages_received += 1
            if p.stream or p.priority != 2 or p.text:
                self.messages.append(Message(data, self.conn_id, self.transport_name,
                                             self.peer, p.stream, PRIORITY_NAMES[p.priority],
                                             p.text))
            else:
                self.messages.append(data)

    def _on_pong(self, payload: bytes, now: float) -> None:
        p = self.pinger
        if not p.known(payload):
            self.garbage += 1
            return
        if self.state is SessionState.HANDSHAKE:
            self._open()
            p.next_at = now + self.options.keepalive_interval
            self.timer_changed = True
        rtt = p.pong(payload, now)
        if rtt is not None:
            self.events.append(PongReceived(rtt))

    # -- sending ---------------------------------------------------------------------------
    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one message; return its number. Raises ``ConnectionNotReady`` unless open,
        ``MessageTooLarge`` above ``max_message_size`` (raw: above one datagram); nothing is
        queued then."""
        size = len(data)
        if not self.open or size > self.peer_max_message:
            if self.open and not self.native:
                raise MessageTooLarge(size, self.peer_max_message,
                                      "the UDP datagram limit (raw framing)")
            self._check_send(size)
        self._count = seq = self._count + 1
        self.bytes_sent += size
        if priority != 2:
            self.other_priority_messages[priority] += 1
        queue = priority if self._qos else 2
        sched = self.scheduler
        if not self.native:
            head = _LEN.pack(size)
        elif size <= self._piece:
            head = _pack_header(HEADER_SIZE + size, VERSION, 2, FLAG_TEXT if text else 0,
                                priority, stream, seq)
        else:
            sched.push(queue, FragmentJob(data, seq, stream, priority,
                                          FLAG_TEXT if text else 0, self._piece), stream)
            return seq
        if sched.blocked and (queue, stream) in sched.blocked:
            sched.push_frame(queue, head + bytes(data), stream)
        else:
            buf = sched.small[queue]
            buf += head
            buf += data
            sched.pending_bytes += size + len(head)
        return seq

    def encode_direct(self, data: bytes | bytearray | memoryview, stream: int = 0,
                      priority: int = 2, text: bool = False) -> bytes | None:
        """The one datagram of a message to send at once, bypassing the queue: only when
        nothing is queued (so priorities cannot be overtaken) and the message fits one
        datagram; else None (use :meth:`send_message`). Counted like a queued message."""
        size = len(data)
        if (not self.open or self.scheduler.pending_bytes or self._final
                or size > (self._piece if self.native else self.peer_max_message)):
            return None
        self._count = seq = self._count + 1
        self.bytes_sent += size
        if priority != 2:
            self.other_priority_messages[priority] += 1
        if self.native:
            dgram = _pack_header(HEADER_SIZE + size, VERSION, 2, FLAG_TEXT if text else 0,
                                 priority, stream, seq) + data
        else:
            dgram = bytes(data)
        self.scheduler.sent_bytes[priority if self._qos else 2] += len(dgram)
        return dgram

    def datagrams_to_send(self, now: float, budget: int = 1 << 62,
                          strict: bool = False) -> list[Datagram]:
        """The next datagrams to send, about ``budget`` bytes of them, in priority order."""
        out: list[Datagram] = []
        skip = 0 if self.native else 4
        for chunk in self.data_to_send(now, budget, strict):
            head = self._need_head
            if head is not None:  # the piece of a fragment whose header came last
                out.append((head, chunk))
                self._need_head = None
                continue
            n = len(chunk)
            if not skip and _LEN.unpack_from(chunk)[0] + 4 == n:
                out.append(chunk)  # one frame: the common case
                continue
            view = memoryview(chunk)
            off = 0
            while off < n:
                end = off + 4 + _LEN.unpack_from(chunk, off)[0]
                if end > n:
                    self._need_head = view[off:]
                    break
                out.append(view[off + skip:end])
                off = end
        return out

    def _send_ping(self, now: float) -> None:
        self.scheduler.push_frame(0, self.pinger.ping(now))

    def _queue_goaway(self, code: int, reason: str) -> None:
        if self.native:
            self._final.append(encode_goaway(code, reason))

    def _close(self, code: int, reason: str, *, by_peer: bool, drop_queued: bool,
               error: bool) -> None:
        super()._close(code, reason, by_peer=by_peer, drop_queued=drop_queued, error=error)
        self.reassembly.discard()

    def connection_lost(self, reason: str) -> None:
        super().connection_lost(reason)
        self.reassembly.discard()

    # -- time ------------------------------------------------------------------------------
    def _idle_limit(self) -> float:
        o = self.options
        if self.native:
            return min(o.idle_timeout, o.keepalive_interval + o.pong_timeout)
        return o.idle_timeout

    def next_deadline(self) -> float | None:
        state = self.state
        if state is SessionState.CLOSED:
            return None
        o = self.options
        if state is SessionState.HANDSHAKE:
            d = min(self.pinger.next_at, self.created + o.hello_timeout)
        elif self.role == "server":
            d = self.last_receive + self._idle_limit()
        elif self.native:
            d = min(self.pinger.next_at, self.last_receive + o.keepalive_interval + o.pong_timeout)
        elif o.raw_keepalive_interval:
            d = self.last_send + o.raw_keepalive_interval
        else:
            d = None
        first = self.reassembly.next_expiry()
        if first is not None:
            d = first if d is None else min(d, first)
        return d

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: reassembly expiry, probes, keepalive, liveness."""
        o = self.options
        self.reassembly.expire(now)
        state = self.state
        if state is SessionState.HANDSHAKE:
            if now >= self.created + o.hello_timeout:
                self.fail(f"no answer to PING within {o.hello_timeout:g} s",
                          GoAwayCode.HELLO_TIMEOUT)
            elif now >= self.pinger.next_at:
                self._send_ping(now)
                self.pinger.next_at = now + PROBE_INTERVAL
            return
        if state is not SessionState.OPEN:
            return
        if self.role == "server":
            limit = self._idle_limit()
            if now >= self.last_receive + limit:
                self._forget(f"peer silent for {now - self.last_receive:.1f} s: forgotten")
            return
        if self.native:
            if now >= self.last_receive + o.keepalive_interval + o.pong_timeout:
                self.fail(f"peer silent for {now - self.last_receive:.1f} s (no PONG)",
                          GoAwayCode.IDLE_TIMEOUT)
            elif now >= self.pinger.next_at:
                self._send_ping(now)
                self.pinger.next_at = now + o.keepalive_interval
        elif o.raw_keepalive_interval and now >= self.last_send + o.raw_keepalive_interval:
            self.scheduler.push_frame(0, encode_raw(RAW_KEEPALIVE))
            self.last_send = now

    def _forget(self, reason: str) -> None:
        """A listener's idle peer: closed without a word (it may be gone), not an error."""
        self.scheduler.clear()
        self._ended(GoAwayCode.IDLE_TIMEOUT, reason, by_peer=False, error=False)
        self.reassembly.discard()
