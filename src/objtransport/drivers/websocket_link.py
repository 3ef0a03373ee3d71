"""One WebSocket connection bound to one session: :class:`WebSocketLink`.

* **native** (subprotocol ``objtransport.v1``): the WebSocket is a byte pipe for the native
  frames. Each binary message received goes to ``NativeSession.receive_data``; everything the
  session queued during a loop turn leaves as one binary message (split at ``CARRIER_MAX``
  bytes), so the per-message cost of WebSocket framing is paid once per batch;
* **raw** (any other peer): one WebSocket message is one application message
  (:class:`~objtransport.sansio.message.MessageSession`); a text message is delivered as its
  UTF-8 bytes with ``Message.text`` set. Keepalive is WebSocket ping/pong, its RTT reported
  as ``PongReceived``.

Whole messages come from :class:`~.websocket_conn.WsConnection` straight out of
``data_received``. The link owns one writer task (cancelled when it ends); the session's
deadline is filed in the loop's wheel when far (keepalive) or gets a ``loop.call_at`` when
near (:class:`~.wheel_timer.WheelTimer`); the first message of a loop turn is written at
once, the rest of the turn coalesces.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

from websockets.frames import Close
from websockets.protocol import State

from ..sansio.core import AnySession
from ..sansio.framing import GoAwayCode
from .base import LinkParts
from .message_link import MessageLink
from .websocket_conn import WsConnection

__all__ = ["CARRIER_MAX", "CARRIER_START", "WRITE_HIGH", "WebSocketLink", "ws_close_code"]

#: the largest binary message carrying native frames (a sender splits above it)
CARRIER_MAX = MessageLink.carrier_max
#: the first native carrier message of a connection (then doubling up to CARRIER_MAX)
CARRIER_START = 16 * 1024
WRITE_HIGH = 256 * 1024

#: GOAWAY codes -> WebSocket close codes (a code >= 1000 is used as it is)
_CLOSE_CODES = {
    GoAwayCode.NORMAL: 1000,
    GoAwayCode.SHUTDOWN: 1001,
    GoAwayCode.PROTOCOL_ERROR: 1002,
    GoAwayCode.UNSUPPORTED_VERSION: 1002,
    GoAwayCode.FRAME_TOO_LARGE: 1009,
    GoAwayCode.MESSAGE_TOO_LARGE: 1009,
    GoAwayCode.OVERLOADED: 1013,
    GoAwayCode.UNAUTHENTICATED: 1008,
}
_ORDERLY = (1000, 1001)
_GOAWAY_VALUES = frozenset(int(c) for c in GoAwayCode)
_OPEN = State.OPEN


def ws_close_code(code: int | None) -> int:
    """The WebSocket close code for a session's close code."""
    if code is None or code < 0:
        return 1011
    if 1000 <= code <= 4999:
        return code
    return _CLOSE_CODES.get(GoAwayCode(code), 1011) if code in _GOAWAY_VALUES else 1011


def _end_session(session: AnySession, close: Close, by_peer: bool) -> None:
    """Record how the WebSocket ended on the session (its code, reason and who closed)."""
    code, reason = close.code, close.reason
    error = code not in _ORDERLY
    if by_peer:
        session.peer_closed(code, reason or f"closed by peer (code {code})", error=error)
    else:
        session.carrier_closed(code, reason or f"closed (code {code})", error=error)


class WebSocketLink(MessageLink):
    """One WebSocket connection bound to one session (native or message)."""

    def __init__(self, conn: WsConnection, session: AnySession, parts: LinkParts) -> None:
        self.conn = conn
        self._init_link(session, parts, conn.peer)
        self._idle = False  # the writer task waits for work (the fast path may write)
        self._flush_handle: asyncio.Handle | None = None
        self._give_up: asyncio.TimerHandle | None = None
        if self.native:
            # native carriers start small and double per message up to CARRIER_MAX ("slow
            # start"): after a reconnect, resent frames arrive (and are acknowledged) in
            # pieces, not as one large message that a link breaking again would lose whole
            self.carrier_max = CARRIER_START
        # a listener's protocol bounds frames by the larger of both (it learns the framing
        # from the handshake); the link bounds messages by its own
        conn.max_message = CARRIER_MAX if self.native else session.options.max_message_size

    def _carriers(self, chunks: list[Any]) -> list[bytes | bytearray | memoryview]:
        """``chunks`` (native frames, a byte stream) as carrier messages of at most
        ``carrier_max`` bytes, doubling per message up to CARRIER_MAX ("slow start").
        Small chunks are joined; a large one (a big message's payload) is sliced, never
        copied here, so a 1 MiB message costs no join before the library frames it. The
        small chunks just before a large one go alone and do not count as a step."""
        size = self.carrier_max
        if len(chunks) == 1 and len(chunks[0]) <= size:
            if size < CARRIER_MAX:
                self.carrier_max = min(CARRIER_MAX, size * 2)
            return [chunks[0]]
        out: list[bytes | bytearray | memoryview] = []
        small: list[Any] = []
        small_n = 0
        for chunk in chunks:
            m = len(chunk)
            if m < CARRIER_START:
                if small_n + m > size:
                    out.append(b"".join(small))
                    size = min(CARRIER_MAX, size * 2)
                    small, small_n = [], 0
                small.append(chunk)
                small_n += m
                continue
            if small:  # the frame headers before a payload: not a step of slow start
                out.append(small[0] if len(small) == 1 else b"".join(small))
                small, small_n = [], 0
            view = memoryview(chunk)
            off = 0
            while off < m:
                out.append(view[off:off + size])
                off += size
                size = min(CARRIER_MAX, size * 2)
        if small:
            out.append(small[0] if len(small) == 1 else b"".join(small))
            size = min(CARRIER_MAX, size * 2)
        self.carrier_max = size
        return out

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Take over the connection: messages, pongs and its end come to this link."""
        conn = self.conn
        self._writer = self.loop.create_task(self._write_loop(), name="objtransport-ws-writer")
        self.closed.add_done_callback(self._closing)
        conn.on_pong = self._on_pong
        conn.on_lost = self._on_lost
        self._process_events()
        self._kick()
        self._rearm()
        conn.on_message = self._on_ws_message
        early, conn.early = conn.early, []
        for data, text in early:
            self._on_ws_message(data, text)
        if conn.lost.done():
            self._on_lost()

    def _closing(self, _: object) -> None:
        """The session ended: the writer sends what is left and the Close; the transport
        goes if the WebSocket has not ended within the timeout."""
        if not self.conn.lost.done():
            self._give_up = self.loop.call_later(self.session.options.timeout,
                                                 self.conn.abort)

    def _on_lost(self) -> None:
        if self.lost.done():
            return
        self._ws_closed()
        self._finish()

    def _on_ws_message(self, data: bytes, text: bool) -> None:
        """One WebSocket message, straight from ``data_received``."""
        session = self.session
        if session.closed:
            return
        msession = self._msession
        now = monotonic()
        if text:
            if msession is None:
                self._fail_ws(1003, "objtransport.v1 carries binary messages only")
                return
            try:
                data.decode()
            except UnicodeDecodeError:
                self._fail_ws(1007, "invalid UTF-8 in a text message")
                return
            msgs = msession.receive_message(data, True, now)
        elif msession is not None:
            msgs = msession.receive_message(data, False, now)
        else:
            msgs = session.receive_data(data, now)
        if self.receive_bucket is not None:
            self._pace_receive_now(len(data), now)
        self._delivered(msgs)

    def _on_pong(self, rtt: float) -> None:
        session = self._msession
        if session is None or session.closed:
            return
        session.pong_received(rtt, monotonic())
        self._process_events()
        self._rearm()

    def _answer(self) -> None:
        self._schedule_flush()  # the rest of this loop turn coalesces with it

    def _fail_ws(self, code: int, reason: str) -> None:
        """Fail the WebSocket from a callback (no await): send the Close, drop the rest."""
        self.conn.fail(code, reason)

    def _pace_receive_now(self, nbytes: int, now: float) -> None:
        """Receive throttling without awaiting: stop reading until the bucket refills."""
        bucket = self.receive_bucket
        assert bucket is not None
        bucket.consume(nbytes, now)
        if bucket.tokens(now) < 0 and "throttle" not in self._read_pauses:
            self.pause_reading("throttle")
            self.loop.call_later(bucket.time_until(0, now), self.resume_reading, "throttle")

    def pause_reading(self, reason: str = "consumer") -> None:
        super().pause_reading(reason)
        t = self.conn.transport
        if t is not None and not t.is_closing():
            t.pause_reading()

    def resume_reading(self, reason: str = "consumer") -> None:
        super().resume_reading(reason)
        t = self.conn.transport
        if not self._read_pauses and t is not None and not t.is_closing():
            t.resume_reading()

    def _ws_closed(self) -> None:
        """The WebSocket ended: record its close code and reason on the session."""
        session = self.session
        if session.closed:
            return
        rcvd, sent, rcvd_first = self.conn.close_codes()
        if rcvd is not None and (sent is None or rcvd_first):
            _end_session(session, rcvd, by_peer=True)
        elif sent is not None:
            _end_session(session, sent, by_peer=False)
        else:
            session.connection_lost("connection lost (no close frame)")
        self._process_events()

    def _finish(self) -> None:
        for handle in (self._flush_handle, self._give_up):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._give_up = None
        self._finish_common()
        self.conn.abort()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message; return True when the caller should wait (``wait_writable``)."""
        self.last_seq = self.session.send_message(data, stream, priority, text)
        self._on_wake()
        rs = self._rs
        return self._sched.pending_bytes > self.max_pending or (
            rs is not None and rs.unacked_bytes > self.max_unacked)

    def _on_wake(self) -> None:
        """Something was queued: a lone message goes out at once; the rest of the loop
        turn coalesces into the next carrier."""
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)
            self._flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._flush()

    def _flush(self) -> None:
        """Write one batch without awaiting, when nothing stands in the way (the writer task
        idle, no pacing, the transport below its high-water mark); otherwise, and for
        whatever is left, the writer task takes over."""
        session = self.session
        conn = self.conn
        if (not self._idle or self.pacer.buckets or session.closed
                or conn.protocol.state is not _OPEN or conn.writing_paused):
            self._kick()
            return
        self._write_batch(monotonic(), CARRIER_MAX, False)
        if session.scheduler.pending_bytes or session.has_final:
            self._kick()
        self._after_write()

    def _write_batch(self, now: float, budget: int, strict: bool) -> int:
        """Hand the next batch to the protocol and the transport; return its payload bytes,
        or -1 when nothing was queued (an empty message still counts as one)."""
        protocol = self.conn.protocol
        msession = self._msession
        n = -1
        if msession is not None:
            for payload, text in msession.messages_to_send(now, budget, strict):
                n = max(n, 0) + len(payload)
                if text:
                    protocol.send_text(payload)
                else:
                    protocol.send_binary(payload)
        else:
            chunks = self.session.data_to_send(now, budget, strict)
            if chunks:
                n = 0
                for piece in self._carriers(chunks):
                    n += len(piece)
                    protocol.send_binary(piece)
        if n >= 0:
            self.conn.send_data()
        return n

    async def _write_loop(self) -> None:
        conn = self.conn
        session = self.session
        msession = self._msession
        wake = self._wake
        while True:
            self._idle = True
            try:
                await wake.wait()
            finally:
                self._idle = False
            wake.clear()
            if conn.protocol.state is not _OPEN:
                return
            if msession is not None and msession.ping_due:
                msession.ping_due = False
                conn.ping()
            while conn.protocol.state is _OPEN:
                await conn.drain()
                budget, strict = await self._budget()
                if conn.protocol.state is not _OPEN:
                    return
                now = monotonic()
                n = self._write_batch(now, budget, strict)
                if n < 0:
                    break
                self.pacer.consume(n, now)
                if self._drain_waiters:
                    self._wake_drain_waiters()
            self._after_write()
            if session.closed and not session.scheduler.pending_bytes \
                    and not session.has_final:
                conn.close(ws_close_code(session.close_code), session.close_reason[:120])
                return

    # -- backpressure ----------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes queued in the session plus bytes in the socket's buffer."""
        t = self.conn.transport
        buffered = t.get_write_buffer_size() if t is not None and not t.is_closing() else 0
        return self.session.scheduler.pending_bytes + buffered

    # -- closing ---------------------------------------------------------------------------
    def abort(self) -> None:
        """Drop the connection at once, discarding what is queued."""
        self._aborted = True
        self.conn.abort()
