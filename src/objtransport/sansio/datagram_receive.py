"""The receiving half of a UDP session: one datagram in, messages and events out.

:class:`DatagramReceiver` checks each datagram, drops duplicates with a
:class:`~.reassembly.SeqWindow`, has fragments put together by a
:class:`~.reassembly.Reassembly`, answers PINGs and takes PONGs, and keeps the loss
counters. :class:`~.datagram.DatagramSession` derives from it and adds sending and the
timers (docs/protocol.md section 6). Nothing a peer sends raises: each bad datagram is
counted and dropped. The counters are bumped inline here; its base
:class:`~.datagram_figures.DatagramFigures` reads them out, with the window's and the
reassembly's.
"""

from __future__ import annotations

import struct
from typing import Any

from ..config import Options
from .admission import COOKIE_SIZE, MAX_PING
from .core import SessionCore, SessionState
from .datagram_figures import LOSS_COUNTERS, DatagramFigures
from .datagram_packed import PackedFrames
from .events import PRIORITY_NAMES, HandshakeComplete, Message, PongReceived, Received
from .framing import (
    FLAG_FRAG,
    FLAG_PACK,
    FLAG_TEXT,
    FRAG_EXT,
    FRAME_HEADER,
    RAW_KEEPALIVE,
    VERSION,
    FrameType,
    decode_goaway,
    encode_frame,
)
from .liveness import Pinger
from .reassembly import Reassembly, ReassemblyBudget, SeqWindow

__all__ = ["FRAG_SIZE", "LOSS_COUNTERS", "MAX_UDP_PAYLOAD", "DatagramReceiver", "first_frame_size",
           "looks_native"]

#: the largest UDP payload over IPv4
MAX_UDP_PAYLOAD = 65_507
#: a DATA number further ahead than this of the newest is garbage, not a gap
MAX_JUMP = 1 << 20
FRAG_SIZE = FRAME_HEADER.size + FRAG_EXT.size  # 28

_unpack = FRAME_HEADER.unpack_from
_unpack_frag = FRAG_EXT.unpack_from
_NOT_TEXT = 0xFF & ~FLAG_TEXT
_FRAG_FLAGS = FLAG_FRAG | FLAG_TEXT
_PING = int(FrameType.PING)
_PONG = int(FrameType.PONG)
_GOAWAY = int(FrameType.GOAWAY)
_COOKIE_FRAME = 28 + COOKIE_SIZE
_PING_FLAGS = 0xFF & ~FLAG_PACK
_NO_TOKEN = bytes(8)
_TOKEN = struct.Struct("!Q")
_LEN = struct.Struct("!I")


def looks_native(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` is a native datagram that may open a conversation: a DATA frame
    (numbered) or a PING, with a length that matches the datagram (packed: its first frame,
    :func:`first_frame_size`). A listener admits an unknown address in native mode only on
    such a datagram."""
    n = first_frame_size(data)
    if n < 20:
        return False
    length, ver, typ, flags, prio, _stream, seq = _unpack(data, 0)
    if ver != VERSION or prio > 3:
        return False
    if typ == FrameType.DATA:
        return seq > 0 and not flags & ~_FRAG_FLAGS and (not flags & FLAG_FRAG or n > FRAG_SIZE)
    return (typ == _PING and (n == 28 or _COOKIE_FRAME <= n <= MAX_PING) and n == len(data)
            and not flags & _PING_FLAGS)  # a PING comes alone: it may admit the address


def first_frame_size(data: bytes | bytearray | memoryview) -> int:
    """The size of the first frame of a datagram: the datagram's when it holds one frame or
    several whole ones (packed, docs/protocol.md section 6), else 0."""
    n = len(data)
    if n < 20:
        return 0
    length = _LEN.unpack_from(data)[0]
    return length + 4 if 16 <= length <= n - 4 else 0

class DatagramReceiver(PackedFrames, DatagramFigures, SessionCore):
    """What a UDP peer's session does with each datagram it receives, and its counters."""

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, native: bool, role: str,
                 budget: ReassemblyBudget | None) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.native = native
        self.role = role
        self.messages: list[Received] = []
        self.max_message_size = (options.max_message_size if native
                                 else min(options.max_message_size, MAX_UDP_PAYLOAD))
        self.peer_max_message = self.max_message_size
        self._piece = options.max_datagram_payload
        self._received_bytes = 0
        self.window = SeqWindow()
        self.reassembly = Reassembly(options, self.window, budget)
        #: the highest (seq << 32 | offset) of the DATA datagrams accepted: one below it
        #: arrived after a datagram the sender numbered later (``reordered``)
        self._hi_key = 0
        # counters (see LOSS_COUNTERS; the reassembly keeps the fragment ones)
        self.datagrams_sent = self.datagrams_received = 0
        self.reordered = self.garbage = self.keepalives = 0
        self._duplicates = self._oversized = 0
        self.overrun = 0  # datagrams dropped while the application had reading paused
        self.pinger = Pinger(now)
        #: the listener's return-path cookie, sent after the token of every PING
        self.cookie = b""
        #: (client) the token after the cookie of the PINGs that may admit us
        #: (:func:`~.admission.encode_credential`)
        self.credential = b""
        #: the peer's PING or PONG carried PACK: it takes several frames in one datagram
        self.peer_packs = False

    def _open(self) -> None:
        self._set_state(SessionState.OPEN)
        self.events.append(HandshakeComplete(b"", self._piece + FRAG_SIZE,
                                             self.max_message_size))

    # -- receiving -------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        """One whole datagram; return the messages it completed."""
        self.receive_datagram(data, now)
        return self.take_messages()

    def take_messages(self) -> list[Received]:
        out = self.messages
        if not out:
            # a control datagram (PING, PONG, ACK): the session keeps its empty list; a
            # new one put in its place lived until the next datagram, a keepalive round,
            # and reached the collector's oldest generation (docs/design.md, "Keepalive
            # without garbage"); the caller's empty list dies at once
            return []
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
            if 16 <= length < n - 4 and ver == 1:
                self._receive_packed(data, now)
            else:
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
            if n - 20 > self.max_message_size:  # the listener's limit binds unfragmented too
                self._oversized += 1
                return
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
        elif typ == _PING and (n == 28 or _COOKIE_FRAME <= n <= MAX_PING):
            if flags & FLAG_PACK:
                self.peer_packs = True
            self.scheduler.push_frame(0, encode_frame(FrameType.PONG, bytes(data[20:28]),
                                                      flags=FLAG_PACK))
        elif typ == _PONG and n == 28:
            self._on_pong(bytes(data[20:]), now, flags)
        elif typ == _PONG and n == _COOKIE_FRAME and self.role == "client":
            self._on_cookie(bytes(data[20:28]), bytes(data[28:]))
        elif typ == _GOAWAY and n >= 22:
            code, reason = decode_goaway(bytes(data[20:]))
            self.peer_closed(code, reason)
        else:
            self.garbage += 1

    def receive_run(self, data: memoryview, seg: int, now: float) -> None:
        """``data`` holds datagrams of ``seg`` bytes each (the last may be shorter), as one
        read of a socket with UDP_GRO returns them: the same as :meth:`receive_datagram`
        on each, with the common one (a whole native DATA message next in order, normal
        priority, stream 0, no flags) handled inline, and the counters added once."""
        n = len(data)
        if not self.native or seg < 20:
            for off in range(0, n, seg):
                self.receive_datagram(data[off:off + seg], now)
            return
        if self.state is SessionState.CLOSED:
            return
        self.last_receive = now
        w = self.window
        append = self.messages.append
        limit = self.max_message_size + 20
        unpack = _unpack
        hi = self._hi_key
        got = nbytes = off = 0
        while off < n:
            end = off + seg
            if end > n:
                end = n
            size = end - off
            if size >= 20:
                length, ver, typ, flags, prio, stream, seq = unpack(data, off)
                if (typ == 2 and seq == w.floor + 1 and not flags and not stream and prio == 2
                        and length == size - 4 and ver == 1 and size <= limit
                        and not w.above):
                    w.floor = w.hi = seq
                    if seq << 32 > hi:
                        hi = seq << 32
                    else:
                        self.reordered += 1
                    append(bytes(data[off + 20:end]))
                    got += 1
                    nbytes += size - 20
                    off = end
                    continue
            # anything else: the general path, with the counters brought up to date first
            self._hi_key = hi
            self._add_received(got, nbytes)
            got = nbytes = 0
            self.receive_datagram(data[off:end], now)
            if self.closed:  # a GOAWAY in the run
                return
            hi = self._hi_key
            off = end
        self._hi_key = hi
        self._add_received(got, nbytes)

    def _add_received(self, count: int, nbytes: int) -> None:
        self.datagrams_received += count
        self.messages_received += count
        self._received_bytes += nbytes

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

    def _on_cookie(self, token: bytes, cookie: bytes) -> None:
        """A listener asks us to prove our address (docs/protocol.md, section 6.1): PING
        again at once with its cookie, and with every PING after it."""
        p = self.pinger
        if token == _NO_TOKEN and p.token:  # it answers DATA: it forgot us
            token = _TOKEN.pack(p.token)
        elif not p.known(token):
            self.garbage += 1
            return
        self.cookie = cookie
        self.scheduler.push_frame(0, encode_frame(FrameType.PING,
                                                  token + cookie + self.credential))

    def _on_pong(self, payload: bytes, now: float, flags: int = 0) -> None:
        p = self.pinger
        if not p.known(payload):
            self.garbage += 1
            return
        if flags & FLAG_PACK:
            self.peer_packs = True
        if self.state is SessionState.HANDSHAKE:
            self._open()
            p.next_at = now + self.options.keepalive_interval
            self.timer_changed = True
        rtt = p.pong(payload, now)
        if rtt is not None:
            self.events.append(PongReceived(rtt))
