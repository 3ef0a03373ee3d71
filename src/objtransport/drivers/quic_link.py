"""One QUIC connection bound to one session: :class:`QuicLink` (docs/protocol.md section 8).

* **raw** (ALPN ``objtransport-raw/1``): the client's bidirectional stream 0 carries the
  ``{packet, 4}`` byte stream both ways, exactly as a TCP socket would;
* **native** (ALPN ``objtransport/1``): stream 0 carries the preface, HELLO, ACK, PING/PONG,
  GOAWAY and the DATA of objtransport stream 0; the DATA of objtransport stream N >= 1 goes
  on a unidirectional QUIC stream of its own, opened by the sender on first use. A lost
  packet then delays only its own QUIC stream. The link routes what the session queues frame
  by frame (each frame names its stream), and feeds the session whole frames only, so frames
  of different QUIC streams never interleave inside the session's decoder.

The session's scheduler decides the order (priorities, QoS): the link hands aioquic only
about ``QUIC_HIGH`` bytes ahead of what has left in packets, refilled after each transmit.
Unreliable messages (``send_datagram``) go as DATAGRAM frames (RFC 9221).

Closing: a native side that sends GOAWAY ends its data streams (FIN) first, then the
control stream, and waits (at most ``timeout``) for the peer to end its control stream
before closing the connection, so nothing in flight is cut off. A side that receives GOAWAY
holds it until every data stream of the peer is complete, then ends its control stream and
closes the connection. Raw: FIN on stream 0; whoever sees the other's FIN after sending its
own closes the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable
from time import monotonic
from typing import Any

from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from ..exceptions import ConnectionNotReady, MessageTooLarge
from ..sansio.core import ERROR_FREE, AnySession
from ..sansio.events import Acked, Closed, Event, HandshakeComplete, Received
from ..sansio.framing import FrameType, GoAwayCode
from ..sansio.reliability import ResumeState
from ..sansio.session import NativeSession
from ..sansio.throttle import TokenBucket
from .base import LinkParts
from .flow import FlowControl
from .pacing import Pacer
from .quic_config import DATAGRAM_FRAME_MAX, close_code_to_goaway, describe_close
from .quic_conn import ClientSocket, QuicPump
from .tcp import describe_connect_error

__all__ = ["QUIC_HIGH", "QuicEnded", "QuicLink"]

#: stream bytes handed to aioquic ahead of what left in packets (priorities act above it)
QUIC_HIGH = 128 * 1024
_LEN = struct.Struct("!I").unpack_from
_STREAM = struct.Struct("!I").unpack_from
_DATA = int(FrameType.DATA)
_GOAWAY = int(FrameType.GOAWAY)
_uids = itertools.count(1)


class QuicEnded(Exception):
    """The QUIC connection ended before its handshake completed (the session says why)."""


class _Inbound:
    """A peer stream's bytes not yet fed to the session (less than one frame, or held)."""

    __slots__ = ("buf", "fin", "skip")

    def __init__(self, skip: int = 0) -> None:
        self.buf = bytearray()
        self.fin = False
        self.skip = skip  # leading bytes fed as they come (the control stream's magic)


def _whole(data: bytes | bytearray, off: int, n: int, stop_goaway: bool,
           max_frame: int) -> tuple[int, bool]:
    """End of the last complete frame from ``off`` (stopping before a GOAWAY when asked),
    and whether it stopped at a GOAWAY. A frame longer than ``max_frame`` counts as whole
    (its header goes to the session, which refuses it before its body is buffered)."""
    while off + 4 <= n:
        (length,) = _LEN(data, off)
        if length > max_frame:
            return n, False
        if stop_goaway and off + 5 < n and data[off + 5] == _GOAWAY:
            return off, True
        end = off + 4 + length
        if end > n:
            break
        off = end
    return off, False


class QuicLink(FlowControl):
    """One QUIC connection bound to one session (native or raw)."""

    def __init__(self, pump: QuicPump, session: AnySession, parts: LinkParts, client: bool,
                 peer: Any) -> None:
        self.pump = pump
        self.quic = pump.quic
        self.client = client
        self.session = session
        self.native = isinstance(session, NativeSession)
        self._sched = session.scheduler
        self._rs: ResumeState | None = getattr(session, "rs", None)
        self.max_unacked = session.options.max_unacked_bytes
        self.timeout = session.options.timeout
        self.last_seq = 0
        self.on_messages: Callable[[list[Received]], None] = parts.on_messages
        self.on_event: Callable[[Any, Event], None] = parts.on_event
        self.max_pending = parts.max_pending
        self.pacer: Pacer = parts.pacer
        self.receive_bucket: TokenBucket | None = parts.receive_bucket
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[Closed] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.on_made: Callable[[Any], None] | None = None
        self.peer: Any = peer
        session.set_peer(peer)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain_waiters: list[tuple[asyncio.Future[None], int]] = []
        self._flushed_waiters: list[asyncio.Future[None]] = []
        self._read_pauses: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._pace_handle: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._flushing = False
        # streams
        self.control = 0  # the client's first bidirectional stream
        self._control_open = client  # a server may send on stream 0 once the client opened it
        self._out: dict[int, int] = {}  # objtransport stream -> our unidirectional stream
        self._in: dict[int, _Inbound] = {self.control: _Inbound(4 if self.native else 0)}
        self._peer_uni = 3 if client else 2  # the peer's first unidirectional stream id
        self._early: list[bytes | bytearray] = []  # data-stream frames before the HELLO
        self._route_left = 0  # bytes of the current outgoing frame still to route
        self._route_sid = 0
        self._route_magic = 4 if self.native else 0
        self._held_goaway = False
        # closing
        self._final_sent = False  # our GOAWAY / FIN is out
        self._peer_final = False  # the peer's control stream (raw: stream 0) ended
        self._quic_closed = False
        self._closed_by_peer = False
        # figures
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_dropped = 0
        self.quic_pings = 0  # raw keepalive: QUIC PING frames sent
        self.early_data_accepted: bool | None = None
        self.session_resumed = False
        self.alpn: str | None = None
        self.handshake_done: asyncio.Future[None] = self.loop.create_future()
        #: a client's own socket (``rebind()`` migrates the connection to a new port)
        self.socket: ClientSocket | None = None
        pump.handler = self.on_quic_event
        pump.on_transmitted = self._refill

    # -- starting ----------------------------------------------------------------------------
    def start(self) -> None:
        """Write what the session queued at creation (the client's preface and HELLO: in
        0-RTT when a ticket allows) and arm the timers."""
        self._process_events()
        self._flush()
        self._rearm()
        if not self.native:
            self._keepalive = self.loop.call_later(self.session.options.keepalive_interval,
                                                   self._ping)

    def _ping(self) -> None:
        self._keepalive = None
        if self.lost.done() or self._quic_closed:
            return
        self.quic.send_ping(next(_uids))
        self.quic_pings += 1
        self.pump.transmit()
        self._keepalive = self.loop.call_later(self.session.options.keepalive_interval,
                                               self._ping)

    def socket_error(self, exc: OSError) -> None:
        """The client's socket failed (e.g. ICMP port unreachable): the link is lost."""
        session = self.session
        if not session.closed:
            session.connection_lost(describe_connect_error(exc))
            self._process_events()
        self._close_quic(GoAwayCode.PROTOCOL_ERROR, "socket error")

    def rebind(self) -> Any:
        """Client: move the connection to a new local UDP port (connection migration: no
        reconnect, nothing lost); return the new local address."""
        if self.socket is None:
            raise RuntimeError("only a client's connection can move to a new port")
        local = self.socket.rebind()
        self.quic.send_ping(next(_uids))  # the server validates the new path at once
        self.pump.transmit()
        return local

    # -- QUIC events -------------------------------------------------------------------------
    def on_quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._on_stream(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, DatagramFrameReceived):
            self._on_datagram(event.data)
        elif isinstance(event, HandshakeCompleted):
            self.alpn = event.alpn_protocol
            self.early_data_accepted = event.early_data_accepted
            self.session_resumed = event.session_resumed
            if not self.handshake_done.done():
                self.handshake_done.set_result(None)
        elif isinstance(event, ConnectionTerminated):
            self._terminated(event)
        elif isinstance(event, StreamReset):
            if event.stream_id == self.control or event.stream_id in self._in:
                self.fail(f"the peer reset QUIC stream {event.stream_id} "
                          f"(code {event.error_code})", GoAwayCode.PROTOCOL_ERROR)

    def _on_stream(self, sid: int, data: bytes, fin: bool) -> None:
        session = self.session
        if sid == self.control:
            self._control_open = True
        if session.closed and not self.native:
            if fin and sid == self.control:
                self._peer_final_seen()
            return
        now = monotonic()
        if self.receive_bucket is not None:
            self._throttle(len(data), now)
        if not self.native:
            if sid != self.control:
                return  # raw peers use stream 0 only; anything else is ignored
            msgs = session.receive_data(data, now) if data else []
            self._delivered(msgs)
            if fin:
                self._peer_final_seen()
                if not session.closed:
                    # a raw peer ends its side between two messages: an orderly end
                    session.connection_lost("peer closed its stream")
                    self._process_events()
            return
        st = self._in.get(sid)
        if st is None:
            if sid % 4 != self._peer_uni:
                return  # not a stream of ours to read: ignored
            st = self._in[sid] = _Inbound()
        msgs = self._feed(sid, st, data, now)
        if fin:
            st.fin = True
            if sid == self.control:
                self._peer_final_seen()
            elif self._held_goaway and self._peer_data_done():
                msgs += self._feed(self.control, self._in[self.control], b"", now)
        self._delivered(msgs)

    def _feed(self, sid: int, st: _Inbound, data: bytes, now: float) -> list[Received]:
        """Feed the session the whole frames of ``st`` plus ``data``; keep the rest."""
        session = self.session
        out: list[Received] = []
        if st.skip:
            head = data[:st.skip]
            st.skip -= len(head)
            data = data[len(head):]
            out += session.receive_data(head, now)
        control = sid == self.control
        stop = control and len(self._in) > 1 and not self._peer_data_done()
        max_frame = session.options.max_frame_size + 8
        if st.buf:
            st.buf += data
            buf: bytes | bytearray = st.buf
        else:
            buf = data
        n = len(buf)
        end, held = _whole(buf, 0, n, stop, max_frame)
        if control:
            self._held_goaway = held
        if end:
            chunk = buf[:end] if end < n or buf is st.buf else buf
            if not control and not session.is_open:
                self._early.append(bytes(chunk))
            else:
                out += session.receive_data(chunk, now)
                if self._early and session.is_open:
                    early, self._early = self._early, []
                    for piece in early:
                        out += session.receive_data(piece, now)
        if buf is st.buf:
            del st.buf[:end]
        elif end < n:
            st.buf += buf[end:]
        return out

    def _peer_data_done(self) -> bool:
        """Every data stream the peer opened so far has ended (FIN) and been fed, with no
        stream id skipped (ids are used in order: a gap is a stream still to come)."""
        ids = [sid for sid in self._in if sid != self.control]
        if not ids:
            return True
        if (max(ids) - self._peer_uni) // 4 + 1 != len(ids):
            return False
        return all(self._in[sid].fin and not self._in[sid].buf for sid in ids)

    def _peer_final_seen(self) -> None:
        """The peer ended its control stream (raw: stream 0)."""
        if self._peer_final:
            return
        self._peer_final = True
        session = self.session
        if self._final_sent:
            self._close_quic(session.close_code, session.close_reason)
        elif self.native and not session.closed and not self._held_goaway:
            session.connection_lost("the peer ended its control stream without GOAWAY")
            self._process_events()

    def _terminated(self, event: ConnectionTerminated) -> None:
        session = self.session
        if not session.closed:
            if event.frame_type is None:  # the peer's application close: a GOAWAY code
                code = close_code_to_goaway(event.error_code)
                session.peer_closed(code, event.reason_phrase or f"closed by peer ({code})")
            else:
                session.connection_lost(describe_close(event.error_code, event.frame_type,
                                                       event.reason_phrase))
            self._process_events()
        self._quic_closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._finish()

    # -- receiving ---------------------------------------------------------------------------
    def _answer(self) -> None:
        self._schedule_flush()

    def _throttle(self, nbytes: int, now: float) -> None:
        bucket = self.receive_bucket
        assert bucket is not None
        bucket.consume(nbytes, now)
        if bucket.tokens(now) < 0 and "throttle" not in self._read_pauses:
            self.pause_reading("throttle")
            self.loop.call_later(bucket.time_until(0, now), self.resume_reading, "throttle")

    def pause_reading(self, reason: str = "consumer") -> None:
        """Stop reading: datagrams of this connection are dropped (QUIC sends them again
        later, and its congestion control slows the peer down)."""
        if not self._read_pauses:
            self.session.reading_paused(monotonic())  # not the peer's time
        self._read_pauses.add(reason)
        self.pump.paused = True

    def resume_reading(self, reason: str = "consumer") -> None:
        self._read_pauses.discard(reason)
        if not self._read_pauses:
            self.pump.paused = False
            self.session.reading_resumed(monotonic())

    # -- unreliable messages -----------------------------------------------------------------
    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Send one message as a QUIC DATAGRAM frame (unreliable, unordered).

        Raises ``MessageTooLarge`` (nothing sent) when it cannot fit one packet, and
        ``ConnectionNotReady`` unless the session is open.
        """
        session = self.session
        if not session.is_open:
            raise ConnectionNotReady(session.conn_id, session.state.value)
        limit = self.datagram_limit
        if len(data) > limit:
            raise MessageTooLarge(len(data), limit)
        self.quic.send_datagram_frame(bytes(data))
        self.datagrams_sent += 1
        session.bytes_sent += len(data)
        self.pump.transmit_soon()

    @property
    def datagram_limit(self) -> int:
        """The largest payload one DATAGRAM frame carries on this connection."""
        size = self.quic.configuration.max_datagram_size
        return min(DATAGRAM_FRAME_MAX, size - 64)  # short header, frame header, AEAD tag

    def datagram_counters(self) -> dict[str, int]:
        """Unreliable messages (DATAGRAM frames) sent and received on this link, and those
        dropped because the session was not open."""
        return {"quic_datagrams_sent": self.datagrams_sent,
                "quic_datagrams_received": self.datagrams_received,
                "quic_datagrams_dropped": self.datagrams_dropped}

    def _on_datagram(self, data: bytes) -> None:
        session = self.session
        if not session.is_open:
            self.datagrams_dropped += 1
            return
        self.datagrams_received += 1
        self._delivered([data])

    # -- sending -----------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message; return True when the caller should wait (``wait_writable``)."""
        self.last_seq = self.session.send_message(data, stream, priority, text)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)
            self._flush(now=True)  # a lone message goes out at once; the rest coalesces
        rs = self._rs
        return self._sched.pending_bytes > self.max_pending or (
            rs is not None and rs.unacked_bytes > self.max_unacked)

    @property
    def pending_bytes(self) -> int:
        """Bytes queued in the session plus what aioquic probably holds unsent."""
        return self.session.scheduler.pending_bytes + self.pump.unsent

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._flush()

    def _refill(self) -> None:
        """After a transmit: hand aioquic more if its buffers ran low."""
        if not self._flushing and self.pump.unsent < QUIC_HIGH // 2 and (
                self._sched.pending_bytes or self.session.has_final):
            self._flush()

    def _flush(self, now: bool = False) -> None:
        """Hand aioquic what the session queued, up to ``QUIC_HIGH`` unsent; if anything
        went, transmit (``now``: at once, else once at the end of this loop turn: an empty
        ``datagrams_to_send`` still costs aioquic tens of µs)."""
        if self._flushing or self._final_sent or self._quic_closed:
            return
        if not self._control_open:
            if self.session.closed:
                self._close_quic(self.session.close_code, self.session.close_reason)
            return  # a server speaks once the client opened stream 0
        self._flushing = True
        handed = self.pump.handed
        try:
            self._write()
        finally:
            self._flushing = False
        if self.pump.handed != handed:
            if now:
                self.pump.transmit()
            else:
                self.pump.transmit_soon()
        if self._drain_waiters:
            self._wake_drain_waiters()
        if self._flushed_waiters and not self._sched.pending_bytes:
            self._wake_flushed()

    def _write(self) -> None:
        session = self.session
        sched = self._sched
        pump = self.pump
        pacer = self.pacer
        now = monotonic()
        while sched.pending_bytes or session.has_final:
            budget = QUIC_HIGH - pump.unsent
            if budget <= 0:
                break
            strict = bool(pacer.buckets)
            if strict:
                if self._pace_handle is not None:
                    break
                allowed = pacer.allowance(now)
                if allowed <= 0:
                    self._pace_handle = self.loop.call_at(now + pacer.delay(now),
                                                          self._paced_flush)
                    break
                budget = min(budget, int(allowed))
            chunks = session.data_to_send(now, budget, strict)
            if not chunks:
                break
            n = self._route(chunks) if self.native else self._raw_out(chunks)
            pacer.consume(n, now)
        if session.closed and not sched.pending_bytes and not session.has_final:
            self._end_writing()

    def _paced_flush(self) -> None:
        self._pace_handle = None
        self._flush()

    def repace(self) -> None:
        """The limits changed: drop a pending pacing wait and flush under the new ones."""
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
        self._flush()

    def _raw_out(self, chunks: list[Any]) -> int:
        n = 0
        send = self.pump.send_stream
        for c in chunks:
            send(self.control, c)
            n += len(c)
        return n

    def _route(self, chunks: list[Any]) -> int:
        """Send native frames, each on the QUIC stream of its objtransport stream; runs of
        frames for one stream go in one call."""
        send = self.pump.send_stream
        control = self.control
        total = 0
        carry = b""
        for chunk in chunks:
            if carry:
                chunk = carry + bytes(chunk)
                carry = b""
            n = len(chunk)
            total += n
            view = memoryview(chunk)
            off = 0
            if self._route_magic:
                k = min(self._route_magic, n)
                send(control, view[:k])
                self._route_magic -= k
                off = k
            start = off
            sid = self._route_sid
            left = self._route_left
            while off < n:
                if left:
                    take = min(left, n - off)
                    off += take
                    left -= take
                    continue
                if n - off < 12:  # a header cut between chunks (not expected)
                    if off > start:
                        send(sid, view[start:off])
                    carry = bytes(view[off:])
                    total -= len(carry)
                    start = off = n
                    break
                (length,) = _LEN(chunk, off)
                nsid = control
                if chunk[off + 5] == _DATA:
                    (stream,) = _STREAM(chunk, off + 8)
                    if stream:
                        nsid = self._data_stream(stream)
                if nsid != sid:
                    if off > start:
                        send(sid, view[start:off])
                    start = off
                    sid = nsid
                left = length + 4
            if off > start:
                send(sid, view[start:off])
            self._route_sid = sid
            self._route_left = left
        return total

    def _data_stream(self, stream: int) -> int:
        sid = self._out.get(stream)
        if sid is None:
            sid = self._out[stream] = self.quic.get_next_available_stream_id(
                is_unidirectional=True)
            self.quic.send_stream_data(sid, b"")  # takes the id (the next one is another)
        return sid

    # -- closing -----------------------------------------------------------------------------
    def _end_writing(self) -> None:
        """Everything the closed session had is handed over: end our streams, then close
        the connection now (an error; or the peer already ended) or once the peer ends its
        side (at most ``timeout`` from now)."""
        if self._final_sent:
            return
        self._final_sent = True
        session = self.session
        pump = self.pump
        for sid in self._out.values():
            pump.send_stream(sid, b"", end=True)
        pump.send_stream(self.control, b"", end=True)
        code = session.close_code
        if code is not None and code not in ERROR_FREE:
            self._close_quic(code, session.close_reason)
            return
        if self._peer_final or self._closed_by_peer:
            # we end second: our FIN leaves in a packet of its own (the peer closes on it,
            # at once), then the connection closes
            pump.transmit()
            self._close_quic(code, session.close_reason)
            return
        # we end first: the connection stays until the peer's FIN (at most timeout); the
        # FINs go now (raw framing has no GOAWAY: nothing else would transmit them)
        pump.transmit()
        self._linger = self.loop.call_later(self.timeout, self._close_quic, code,
                                            session.close_reason)

    def _close_quic(self, code: int | None, reason: str) -> None:
        """Close the QUIC connection (application close carrying the GOAWAY code), send it,
        and end the link; aioquic drains the connection in the background."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._quic_closed:
            return
        self._quic_closed = True
        app = code if code is not None and 0 <= code < 0x3fff_ffff else GoAwayCode.NORMAL
        self.quic.close(error_code=int(app), reason_phrase=reason[:200])
        self.pump.transmit()
        if self.socket is not None:  # a client skips the draining period
            self.pump.stop()
            self.socket.close()
        self._finish()

    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: queued messages go out, then GOAWAY (native), then the streams
        end and the connection closes."""
        self.session.close(code, reason)
        self._process_events()
        self._flush()

    def fail(self, reason: str, code: int) -> None:
        self.session.fail(reason, code)
        self._process_events()
        self._flush()
        self._close_quic(code, reason)

    def abort(self) -> None:
        """Close the connection at once, discarding what is queued."""
        session = self.session
        if not session.closed:
            session.connection_lost("aborted")
            self._process_events()
        self._close_quic(GoAwayCode.PROTOCOL_ERROR, "aborted")

    def _finish(self) -> None:
        """The link is over: stop its timers, wake every waiter, resolve ``lost``."""
        session = self.session
        if not session.closed:
            session.connection_lost("connection closed")
            self._process_events()
        self._cancel_timer()
        for handle in (self._flush_handle, self._pace_handle, self._keepalive):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._pace_handle = self._keepalive = None
        if not self.handshake_done.done():
            self.handshake_done.set_exception(QuicEnded(session.close_reason))
            self.handshake_done.exception()
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_flushed()
        self._wake_drain_waiters(everyone=True)

    # -- events and time ---------------------------------------------------------------------
    def _process_events(self) -> None:
        events = self.session.take_events()
        if not events:
            return
        for ev in events:
            if isinstance(ev, Acked):
                self._rs = getattr(self.session, "rs", None)
                if self._drain_waiters:
                    self._wake_drain_waiters(everyone=True)
            elif isinstance(ev, Closed):
                self._closed_by_peer = ev.by_peer
                self._schedule_flush()
                if not self.closed.done():
                    self.closed.set_result(ev)
                if not self.ready.done():
                    self.ready.set_exception(self._closed_error())
                    self.ready.exception()
            elif isinstance(ev, HandshakeComplete):
                self._rs = getattr(self.session, "rs", None)
                if not self.ready.done():
                    self.ready.set_result(None)
            self.on_event(self, ev)
        if not self.closed.done():
            self._rearm()

    def _rearm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and not self.lost.done():
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.lost.done():
            return
        self.session.handle_timer(monotonic())
        self._process_events()
        self._flush()
        if not self.closed.done():
            self._rearm()
