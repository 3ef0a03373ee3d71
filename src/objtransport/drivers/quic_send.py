"""The sending half of a QUIC link (:class:`QuicSending`, a base of
:class:`~.quic_link.QuicLink`): messages into the session, the session's frames into
aioquic's streams.

The session's scheduler decides the order (priorities, QoS, pacing); the link hands aioquic
only about ``QUIC_HIGH`` bytes ahead of what has left in packets, refilled after each
transmit. Native frames are routed one by one to the QUIC stream of their objtransport
stream (stream 0 and control frames: the control stream; stream N: a unidirectional QUIC
stream of its own, opened on first use); raw framing writes stream 0. The first message of
a loop turn goes out at once, the rest of the turn's together at its end. Like
:class:`~.flow.FlowControl` it declares the link attributes it uses.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from aioquic.quic.connection import QuicConnection

from ..sansio.framing import FrameType
from ..sansio.scheduler import PriorityScheduler
from .flow import FlowControl
from .pacing import PacedFlush, Pacer
from .quic_conn import QuicPump

__all__ = ["QUIC_HIGH", "QuicSending"]

#: stream bytes handed to aioquic ahead of what left in packets (priorities act above it)
QUIC_HIGH = 128 * 1024
#: a frame's length, type and (DATA) objtransport stream, read at once
_HEAD = struct.Struct("!IxB2xI").unpack_from
_HEAD_SIZE = 12
_DATA = int(FrameType.DATA)


class QuicSending(FlowControl):
    """``send`` / ``queue``, the flush into aioquic, routing frames to QUIC streams."""

    pump: QuicPump
    quic: QuicConnection
    native: bool
    control: int
    last_seq: int
    pacer: Pacer
    _sched: PriorityScheduler
    _flushing: bool
    _final_sent: bool
    _quic_closed: bool
    _control_open: bool
    _flush_handle: asyncio.Handle | None
    _paced: PacedFlush
    _out: dict[int, int]
    _route_left: int
    _route_sid: int
    _route_magic: int
    _close_quic: Callable[[int | None, str], None]
    _end_writing: Callable[[], None]

    # -- sending -------------------------------------------------------------------------------
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

    def _wake(self) -> None:
        """Something was queued: the first message of a loop turn goes out at once
        (latency), the rest of the turn's at its end (throughput)."""
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)
            self._flush(now=True)

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
        self._paced.run(self._more, self._room, session.data_to_send,
                        self._route if self.native else self._raw_out)
        if session.closed and not self._sched.pending_bytes and not session.has_final:
            self._end_writing()

    def _more(self) -> bool:
        return bool(self._sched.pending_bytes or self.session.has_final)

    def _room(self) -> int:
        return QUIC_HIGH - self.pump.unsent

    def repace(self) -> None:
        """The limits changed: drop a pending pacing wait and flush under the new ones."""
        self._paced.cancel()
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
        frames for one stream go in one call. One header read per frame: a chunk may end
        inside a frame (its rest comes first in the next chunk), never inside a header."""
        send = self.pump.send_stream
        control = self.control
        out = self._out
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
            sid = self._route_sid
            start = off
            off += self._route_left  # the end of the frame under way
            while off + _HEAD_SIZE <= n:
                length, ftype, stream = _HEAD(chunk, off)
                nsid = control
                if ftype == _DATA and stream:
                    nsid = out.get(stream) or self._data_stream(stream)
                if nsid != sid:
                    if off > start:
                        send(sid, view[start:off])
                    start = off
                    sid = nsid
                off += length + 4
            if off < n:  # a header cut between chunks (not expected)
                if off > start:
                    send(sid, view[start:off])
                carry = bytes(view[off:])
                total -= len(carry)
                self._route_left = 0
            else:
                if n > start:
                    send(sid, view[start:])
                self._route_left = off - n
            self._route_sid = sid
        return total

    def _data_stream(self, stream: int) -> int:
        sid = self._out.get(stream)
        if sid is None:
            sid = self._out[stream] = self.quic.get_next_available_stream_id(
                is_unidirectional=True)
            self.quic.send_stream_data(sid, b"")  # takes the id (the next one is another)
        return sid
