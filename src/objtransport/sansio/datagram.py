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
from .events import (
    PRIORITY_NAMES,
    Closed,
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
from .scheduler import Chunk
from .session import Session, SessionState

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
#: how many message numbers the duplicate filter remembers behind the newest
WINDOW = 4096
#: a DATA number further ahead than this of the newest is garbage, not a gap
MAX_JUMP = 1 << 20
#: a client resends its PING this often until the first PONG
PROBE_INTERVAL = 0.25
#: numbers of messages given up, remembered so late fragments count as expired
_GAVE_UP_KEEP = 1024
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
_TOKEN = struct.Struct("!Q")
_NOT_TEXT = 0xFF & ~FLAG_TEXT
_FRAG_FLAGS = FLAG_FRAG | FLAG_TEXT
_PING = int(FrameType.PING)
_PONG = int(FrameType.PONG)
_GOAWAY = int(FrameType.GOAWAY)
_ORDERLY = (GoAwayCode.NORMAL, GoAwayCode.SHUTDOWN)


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


class ReassemblyBudget:
    """Bytes of partial messages held by every peer that shares it (one UDP listener)."""

    __slots__ = ("limit", "used", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def __repr__(self) -> str:
        return f"<ReassemblyBudget used={self.used} peak={self.peak} limit={self.limit}>"


class SeqWindow:
    """Which message numbers are done (delivered or given up), in a bounded window.

    ``floor``: every number up to it is done or was passed over (counted in ``passed``);
    ``above``: numbers done beyond the floor. When the newest number gets more than ``size``
    ahead of the floor, the floor moves up and the numbers it passes that never completed
    count as missing. A number at or below the floor is a duplicate, unless it is small while
    the floor is far above (the peer started numbering again: ``restarts``).
    """

    __slots__ = ("floor", "above", "hi", "passed", "size", "restarts")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.floor = 0
        self.above: set[int] = set()
        self.hi = 0  # the highest number done
        self.passed = 0  # numbers the floor passed over that never completed
        self.restarts = 0

    def seen(self, seq: int) -> bool:
        """True when ``seq`` is already done (a duplicate)."""
        if not self.hi and not self.above and seq > self.size:
            self.floor = seq - 1  # joining a numbering already under way (a fresh window)
            return False
        if seq <= self.floor:
            if seq <= self.size and self.floor > 2 * self.size:
                self.passed += self.hi - self.floor - len(self.above)
                self.floor = self.hi = 0
                self.above.clear()
                self.restarts += 1
                return False
            return True
        return seq in self.above

    def mark(self, seq: int) -> None:
        """Record ``seq`` as done."""
        floor = self.floor
        if seq <= floor:
            return
        above = self.above
        if seq == floor + 1:
            floor = seq
            while above and floor + 1 in above:
                floor += 1
                above.discard(floor)
            self.floor = floor
            if floor > self.hi:
                self.hi = floor
            return
        above.add(seq)
        if seq > self.hi:
            self.hi = seq
        if seq - floor > self.size:
            self._advance(seq - self.size)

    def _advance(self, new_floor: int) -> None:
        above = self.above
        floor = self.floor
        span = new_floor - floor
        if span > 4 * len(above):
            done = [s for s in above if s <= new_floor]
            self.passed += span - len(done)
            above.difference_update(done)
        else:
            for s in range(floor + 1, new_floor + 1):
                if s in above:
                    above.discard(s)
                else:
                    self.passed += 1
        while above and new_floor + 1 in above:
            new_floor += 1
            above.discard(new_floor)
        self.floor = new_floor

    @property
    def missing(self) -> int:
        """Numbers below the newest one that never completed (passed over or still gaps)."""
        return self.passed + self.hi - self.floor - len(self.above)


class _Partial:
    """A fragmented message being put together: its pieces by offset."""

    __slots__ = ("total", "step", "final_off", "pieces", "held", "created", "stream",
                 "priority", "text")

    def __init__(self, total: int, stream: int, priority: int, text: bool,
                 now: float) -> None:
        self.total = total
        self.step = 0  # the size of every piece but the last (0: not known yet)
        self.final_off = -1  # offset of the last piece, while the step is not known
        self.pieces: dict[int, bytes] = {}
        self.held = 0
        self.created = now
        self.stream = stream
        self.priority = priority
        self.text = text

    def fits(self, offset: int, piece: int) -> bool:
        """Is a piece at ``offset`` consistent with the others (equal steps, no overlap)?"""
        final = offset + piece == self.total
        step = self.step
        if step:
            if offset % step:
                return False
            return piece <= step if final else piece == step
        if final:
            if self.final_off >= 0 and self.final_off != offset:
                return False
            self.final_off = offset
            return True
        fo = self.final_off
        if offset % piece or (fo >= 0 and (fo % piece or self.total - fo > piece)):
            return False
        self.step = piece
        return True

    def assemble(self) -> bytes:
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        step = self.step
        return b"".join([pieces[o] for o in range(0, self.total, step)])


class DatagramSession(Session):
    """One UDP peer: native (frames, fragments, PING/PONG) or raw (one datagram per message).

    ``role`` is "client" (a connected endpoint: PING probes until the first PONG, then
    keepalive and a liveness deadline) or "server" (a listener's peer: open at once, forgotten
    after ``idle_timeout`` of silence, or ``keepalive_interval + pong_timeout`` in native
    framing, since a native client pings every ``keepalive_interval``).
    """

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, *, native: bool = True, role: str = "client",
                 budget: ReassemblyBudget | None = None) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.native = native
        self.role = role
        self.budget = budget
        self.messages: list[Received] = []
        self.max_message_size = (options.max_message_size if native
                                 else min(options.max_message_size, MAX_UDP_PAYLOAD))
        self.peer_max_message = self.max_message_size
        self._piece = options.max_datagram_payload
        self._qos = options.qos
        self._count = 0  # messages queued (the last sequence number given out)
        self._received_bytes = 0
        self.window = SeqWindow()
        #: the highest (seq << 32 | offset) of the DATA datagrams accepted: one below it
        #: arrived after a datagram the sender numbered later (``reordered``)
        self._hi_key = 0
        self._partials: dict[int, _Partial] = {}
        self._gave_up: dict[int, None] = {}
        self.held = 0  # bytes of partial messages held
        self._need_head: memoryview | None = None
        # counters (see LOSS_COUNTERS)
        self.datagrams_sent = self.datagrams_received = self.fragments_received = 0
        self.fragments_expired = self.messages_dropped = self.duplicates = 0
        self.reordered = self.garbage = self.oversized = self.inconsistent = 0
        self.evicted = self.keepalives = 0
        self.overrun = 0  # datagrams dropped while the application had reading paused
        # liveness
        self.rtt_last: float | None = None
        self.pings_sent = 0
        self._ping_token = 0
        self._ping_sent_at: float | None = None
        self._next_ping = now
        if native and role == "client":
            self._send_ping(now)  # the probe: open once it is answered
            self._next_ping = now + PROBE_INTERVAL
        else:
            self._open()

    @classmethod
    def like(cls, other: Session, now: float, *, native: bool, role: str,
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
    def messages_missing(self) -> int:
        return self.window.missing

    @property
    def partial_messages(self) -> int:
        return len(self._partials)

    def loss_counters(self) -> dict[str, int]:
        """The datagram figures, named as in :data:`LOSS_COUNTERS`."""
        return {name: getattr(self, name) for name in LOSS_COUNTERS}

    # -- receiving -------------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        raise NotImplementedError("a datagram session receives whole datagrams")

    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        raise NotImplementedError("a datagram session receives whole datagrams")

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
            self._close(code, reason, by_peer=True, drop_queued=True,
                        error=code not in _ORDERLY)
        else:
            self.garbage += 1

    def _receive_raw(self, data: bytes | bytearray | memoryview, n: int) -> None:
        if n > self.max_message_size:
            self.oversized += 1
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
            if seq in self._gave_up:
                self.fragments_expired += 1
            else:
                self.duplicates += 1
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
        piece = n - FRAG_SIZE
        self.fragments_received += 1
        if total > self.max_message_size:
            self.oversized += 1
            return
        if offset + piece > total:
            self.inconsistent += 1
            return
        p = self._partials.get(seq)
        if p is None:
            if not self._accept_new(seq):
                return
            p = self._start(seq, total, stream, prio, bool(flags & FLAG_TEXT), now)
        elif total != p.total or stream != p.stream or prio != p.priority:
            self.inconsistent += 1
            return
        if not p.fits(offset, piece):
            self.inconsistent += 1
            return
        if offset in p.pieces:
            self.duplicates += 1
            return
        if not self._charge(piece, p):
            self._give_up(seq, evicted=True)
            return
        p.pieces[offset] = bytes(data[FRAG_SIZE:])
        p.held += piece
        key = seq << 32 | offset
        if key > self._hi_key:
            self._hi_key = key
        else:
            self.reordered += 1
        if p.held == total:
            self._complete(seq, p)

    def _start(self, seq: int, total: int, stream: int, prio: int, text: bool,
               now: float) -> _Partial:
        parts = self._partials
        if len(parts) >= self.options.max_partial_messages:
            self._give_up(next(iter(parts)), evicted=True)
        if not parts:
            self.timer_changed = True  # the reassembly deadline may come first now
        p = parts[seq] = _Partial(total, stream, prio, text, now)
        return p

    def _charge(self, n: int, keep: _Partial) -> bool:
        """Reserve ``n`` bytes, giving up this peer's oldest other partials if need be."""
        limit = self.options.max_reassembly_bytes
        budget = self.budget
        while self.held + n > limit or (budget is not None and budget.used + n > budget.limit):
            victim = next((s for s, p in self._partials.items() if p is not keep), None)
            if victim is None:
                return False
            self._give_up(victim, evicted=True)
        self.held += n
        if budget is not None:
            budget.used += n
            if budget.used > budget.peak:
                budget.peak = budget.used
        return True

    def _release(self, n: int) -> None:
        self.held -= n
        if self.budget is not None:
            self.budget.used -= n

    def _complete(self, seq: int, p: _Partial) -> None:
        del self._partials[seq]
        self._release(p.held)
        data = p.assemble()
        self.window.mark(seq)
        self._received_bytes += p.total
        self.messages_received += 1
        if p.stream or p.priority != 2 or p.text:
            self.messages.append(Message(data, self.conn_id, self.transport_name, self.peer,
                                         p.stream, PRIORITY_NAMES[p.priority], p.text))
        else:
            self.messages.append(data)

    def _give_up(self, seq: int, evicted: bool = False) -> None:
        """Drop a partial message: counted as dropped, its fragments as expired."""
        p = self._partials.pop(seq)
        self._release(p.held)
        self.messages_dropped += 1
        self.fragments_expired += len(p.pieces)
        if evicted:
            self.evicted += 1
        self.window.mark(seq)
        gave_up = self._gave_up
        gave_up[seq] = None
        if len(gave_up) > _GAVE_UP_KEEP:
            del gave_up[next(iter(gave_up))]

    def _discard_partials(self) -> None:
        for seq in list(self._partials):
            self._give_up(seq)

    def _on_pong(self, payload: bytes, now: float) -> None:
        (token,) = _TOKEN.unpack(payload)
        if token < 1 or token > self._ping_token:
            self.garbage += 1
            return
        if self.state is SessionState.HANDSHAKE:
            self._open()
            self._next_ping = now + self.options.keepalive_interval
            self.timer_changed = True
        if token == self._ping_token and self._ping_sent_at is not None:
            rtt = max(0.0, now - self._ping_sent_at)
            self._ping_sent_at = None
            self.rtt_last = rtt
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
        self._ping_token += 1
        self._ping_sent_at = now
        self.pings_sent += 1
        self.scheduler.push_frame(0, encode_frame(FrameType.PING,
                                                  _TOKEN.pack(self._ping_token)))

    def _queue_goaway(self, code: int, reason: str) -> None:
        if self.native:
            self._final.append(encode_goaway(code, reason))

    def _close(self, code: int, reason: str, *, by_peer: bool, drop_queued: bool,
               error: bool) -> None:
        super()._close(code, reason, by_peer=by_peer, drop_queued=drop_queued, error=error)
        self._discard_partials()

    def connection_lost(self, reason: str) -> None:
        super().connection_lost(reason)
        self._discard_partials()

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
            d = min(self._next_ping, self.created + o.hello_timeout)
        elif self.role == "server":
            d = self.last_receive + self._idle_limit()
        elif self.native:
            d = min(self._next_ping, self.last_receive + o.keepalive_interval + o.pong_timeout)
        elif o.raw_keepalive_interval:
            d = self.last_send + o.raw_keepalive_interval
        else:
            d = None
        if self._partials:
            first = next(iter(self._partials.values())).created + o.reassembly_timeout
            d = first if d is None else min(d, first)
        return d

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: reassembly expiry, probes, keepalive, liveness."""
        o = self.options
        parts = self._partials
        while parts:
            seq, p = next(iter(parts.items()))
            if p.created + o.reassembly_timeout > now:
                break
            self._give_up(seq)
        state = self.state
        if state is SessionState.HANDSHAKE:
            if now >= self.created + o.hello_timeout:
                self._close(GoAwayCode.HELLO_TIMEOUT,
                            f"no answer to PING within {o.hello_timeout:g} s",
                            by_peer=False, drop_queued=True, error=True)
            elif now >= self._next_ping:
                self._send_ping(now)
                self._next_ping = now + PROBE_INTERVAL
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
                self._close(GoAwayCode.IDLE_TIMEOUT,
                            f"peer silent for {now - self.last_receive:.1f} s (no PONG)",
                            by_peer=False, drop_queued=True, error=True)
            elif now >= self._next_ping:
                self._send_ping(now)
                self._next_ping = now + o.keepalive_interval
        elif o.raw_keepalive_interval and now >= self.last_send + o.raw_keepalive_interval:
            self.scheduler.push_frame(0, encode_raw(RAW_KEEPALIVE))
            self.last_send = now

    def _forget(self, reason: str) -> None:
        """A listener's idle peer: closed without a word (it may be gone), not an error."""
        self._set_state(SessionState.CLOSED)
        self.close_code = GoAwayCode.IDLE_TIMEOUT
        self.close_reason = reason
        self.scheduler.clear()
        self._discard_partials()
        self.events.append(Closed(GoAwayCode.IDLE_TIMEOUT, reason, False, False))
