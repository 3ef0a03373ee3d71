"""UDP sessions without I/O: one datagram in, messages and events out; datagrams out.

A :class:`DatagramSession` has the surface of :class:`~.core.AnySession`, for a carrier that
keeps datagram boundaries and loses, duplicates and reorders datagrams (docs/protocol.md,
section 6). The driver does only this:

* each datagram received: ``receive_datagram(data, now)``; after a batch, ``take_messages()``
  and ``take_events()`` (``receive_data(data, now)`` does both for one datagram);
* sending: ``send_message(...)`` queues; ``datagrams_to_send(now, budget)`` returns the
  datagrams to send, each a buffer or a ``(header, piece)`` pair sent as one datagram;
* time: ``next_deadline()`` / ``handle_timer(now)``: PING probes and keepalive, the liveness
  deadline, reassembly expiry, forgetting an idle peer.

**Native framing.** A datagram holds one native frame (length field included, and it must
equal the datagram's size less 4), or several whole ones back to back (packed) once the peer
announced it takes them (``FLAG_PACK`` on its PING or PONG, ``peer_packs``): :meth:`pack`.
DATA above ``max_datagram_payload`` is sent as
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
from .core import AnySession, SessionState
from .datagram_receive import (
    LOSS_COUNTERS,
    MAX_UDP_PAYLOAD,
    DatagramReceiver,
    looks_native,
)
from .fragmentation import FragmentJob
from .framing import (
    FLAG_PACK,
    FLAG_TEXT,
    FRAME_HEADER,
    HEADER_SIZE,
    RAW_KEEPALIVE,
    VERSION,
    FrameType,
    GoAwayCode,
    encode_frame,
    encode_goaway,
    encode_raw,
)
from .reassembly import ReassemblyBudget, SeqWindow
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

#: a client resends its PING this often until the first PONG
PROBE_INTERVAL = 0.25

#: one datagram to send: a buffer, or a fragment header and its piece
Datagram = Chunk | tuple[Chunk, Chunk]

_pack_header = FRAME_HEADER.pack
_LEN = struct.Struct("!I")
_PING = int(FrameType.PING)
_FRAG_HEAD = 28  # a fragment's header, length field included


class DatagramSession(DatagramReceiver):
    """One UDP peer: native (frames, fragments, PING/PONG) or raw (one datagram per message).

    ``role`` is "client" (a connected endpoint: PING probes until the first PONG, then
    keepalive and a liveness deadline) or "server" (a listener's peer: open at once, forgotten
    after ``idle_timeout`` of silence, or ``keepalive_interval + pong_timeout`` in native
    framing, since a native client pings every ``keepalive_interval``). What it does with
    the datagrams it receives is :class:`~.datagram_receive.DatagramReceiver`'s.
    """

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, *, native: bool = True, role: str = "client",
                 budget: ReassemblyBudget | None = None) -> None:
        super().__init__(options, conn_id, transport, peer, now, native, role, budget)
        self._qos = options.qos
        self._count = 0  # messages queued (the last sequence number given out)
        self._need_head: memoryview | None = None
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

    @property
    def messages_sent(self) -> int:
        return self._count

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
        self.bytes_queued += size
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
        self.bytes_queued += size
        self.bytes_sent += size  # nothing was queued: it goes now
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
        return self.pack(out) if self.peer_packs and len(out) > 1 else out

    def pack(self, dgrams: list[Datagram]) -> list[Datagram]:
        """``dgrams`` with runs of whole frames joined into datagrams of at most
        ``max_datagram_payload + 28`` bytes (a full fragment's size), for a peer that takes
        packed datagrams (``peer_packs``): the same bytes in fewer datagrams. Fragments
        (header and piece pairs) and PINGs (they may be what admits us) go alone."""
        limit = self._piece + _FRAG_HEAD
        out: list[Datagram] = []
        run: list[Chunk] = []
        size = 0
        for d in dgrams:
            if isinstance(d, tuple) or d[5] == _PING:
                if run:
                    out.append(run[0] if len(run) == 1 else b"".join(run))
                    run = []
                    size = 0
                out.append(d)
                continue
            n = len(d)
            if size + n > limit and run:
                out.append(run[0] if len(run) == 1 else b"".join(run))
                run = []
                size = 0
            run.append(d)
            size += n
        if run:
            out.append(run[0] if len(run) == 1 else b"".join(run))
        return out

    def _send_ping(self, now: float) -> None:
        frame = self.pinger.ping(now)
        flags = FLAG_PACK if self.peer_packs else 0
        if self.cookie or flags:  # the token too, until the listener admitted us
            extra = self.credential if self.state is SessionState.HANDSHAKE else b""
            frame = encode_frame(FrameType.PING, frame[20:] + self.cookie + extra, flags=flags)
        self.scheduler.push_frame(0, frame)

    def _on_pong(self, payload: bytes, now: float, flags: int = 0) -> None:
        opening = self.state is SessionState.HANDSHAKE
        super()._on_pong(payload, now, flags)
        if opening and self.peer_packs and self.open:
            self._send_ping(now)  # with PACK: the listener packs what it sends us at once

    def _queue_goaway(self, code: int, reason: str) -> None:
        if self.native:
            self._final += (encode_goaway(code, reason),)
            self.has_final = True

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
        if self.role == "server" and not self._count:
            # a raw peer nobody answered yet may be a forged address: its slot goes soon
            return min(o.idle_timeout, o.handshake_timeout)
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

    def forget(self, reason: str) -> None:
        """End a listener's peer now as if it had gone idle (its listener evicts it)."""
        if self.state is not SessionState.CLOSED:
            self._forget(reason)

    def _forget(self, reason: str) -> None:
        """A listener's idle peer: closed without a word (it may be gone), not an error."""
        self.drop_queued()
        self._ended(GoAwayCode.IDLE_TIMEOUT, reason, by_peer=False, error=False)
        self.reassembly.discard()
