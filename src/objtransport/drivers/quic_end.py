"""How a QUIC link ends (:class:`QuicEnding`, a base of :class:`~.quic_link.QuicLink`).

A native side that sends GOAWAY ends its data streams (FIN) first, then the control stream,
and waits (at most ``timeout``) for the peer to end its control stream before closing the
connection; a side that receives GOAWAY ends its control stream once every data stream of
the peer is complete. Raw: FIN on stream 0; whoever sees the other's FIN after sending its
own closes the connection. ``_finish`` stops the timers, wakes every waiter and resolves
``lost``. Like :class:`~.flow.FlowControl` it declares the link attributes it uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated

from ..sansio.core import ERROR_FREE
from ..sansio.framing import GoAwayCode
from .flow import FlowControl
from .pacing import PacedFlush
from .quic_config import close_code_to_goaway, describe_close
from .quic_conn import ClientSocket, QuicPump

__all__ = ["QuicEnded", "QuicEnding"]


class QuicEnded(Exception):
    """The QUIC connection ended before its handshake completed (the session says why)."""


class QuicEnding(FlowControl):
    """``close`` / ``fail`` / ``abort``, the streams' ends, and the end of the connection."""

    pump: QuicPump
    quic: QuicConnection
    native: bool
    control: int
    timeout: float
    lost: asyncio.Future[None]
    handshake_done: asyncio.Future[None]
    socket: ClientSocket | None
    _out: dict[int, int]
    _held_goaway: bool
    _final_sent: bool
    _peer_final: bool
    _quic_closed: bool
    _closed_by_peer: bool
    _linger: asyncio.TimerHandle | None
    _keepalive: asyncio.TimerHandle | None
    _flush_handle: asyncio.Handle | None
    _paced: PacedFlush
    _flush: Callable[..., None]
    _process_events: Callable[[], None]

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
        # a refused client must read its GOAWAY: a close this soon after the handshake
        # would reach it as a transport APPLICATION_ERROR without our code
        if code is not None and code not in ERROR_FREE and code != GoAwayCode.UNAUTHENTICATED:
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
        self.pump.close(int(app), reason)
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
        for handle in (self._flush_handle, self._keepalive):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._keepalive = None
        self._paced.cancel()
        if not self.handshake_done.done():
            self.handshake_done.set_exception(QuicEnded(session.close_reason))
            self.handshake_done.exception()
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_flushed()
        self._wake_drain_waiters(everyone=True)
