"""How a stream link ends (:class:`StreamEnding`, a base of :class:`~.stream.StreamLink`).

An orderly ``close`` (queued messages, then GOAWAY, then the socket), ``fail`` (GOAWAY with
the fault's code if it can still go, then the socket at once), ``abort``, and
``connection_lost``: the session is told, waiters are woken, every handle is cancelled and
the memory of incomplete messages goes back. Like :class:`~.flow.FlowControl` it declares
the link attributes it uses; the link sets them in its ``__init__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..sansio.framing import GoAwayCode
from ..sansio.session import Session
from .flow import FlowControl
from .overload import OverloadGuard
from .pacing import ReadThrottle

__all__ = ["StreamEnding"]


class StreamEnding(FlowControl):
    """``close`` / ``fail`` / ``abort`` and the end of the socket."""

    __slots__ = ("_closing", "_flush_handle", "_pace_handle", "close_error")

    session: Session
    transport: asyncio.Transport | None
    lost: asyncio.Future[None]
    close_error: BaseException | None
    _closing: bool
    _flush_handle: asyncio.Handle | None
    _pace_handle: asyncio.TimerHandle | None
    _read_throttle: ReadThrottle
    _overload: OverloadGuard
    _flush: Callable[[], None]
    _process_events: Callable[[], None]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.close_error = exc
        reason = f"connection lost: {exc}" if exc else "connection closed"
        self._lost(reason)
        self.session.drop_incomplete()  # their memory (and budget) goes back
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_flushed()
        self._cancel_timer()
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
        self._read_throttle.cancel()
        self._overload.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._wake_drain_waiters()

    def close(self, code: int = GoAwayCode.NORMAL, reason: str = "closed") -> None:
        """Orderly close: queued messages go out, then GOAWAY, then the socket closes."""
        if self.transport is None:  # accepted, TLS handshake not done: nothing to send
            self.abort()
            return
        self.session.close(code, reason)
        self._process_events()
        self._flush()

    def fail(self, reason: str, code: int) -> None:
        """End the link for a fault this side found: GOAWAY ``code`` (native) if it can
        still go, then the socket is closed at once."""
        self.session.fail(reason, code)
        self._process_events()
        self.abort()

    def abort(self) -> None:
        """Close the socket at once, discarding what is queued."""
        self._closing = True
        self._slow_write = True
        if self.transport is not None:
            self.transport.abort()
        elif not self.lost.done():  # no socket yet (a TLS handshake): no one else will say
            self.connection_lost(ConnectionAbortedError("closed before the TLS handshake"))

    def _close_transport(self) -> None:
        if self._closing or self.transport is None:
            return
        if self.session.scheduler.pending_bytes or self.session.has_final:
            return  # _flush closes once everything is out
        self._closing = True
        self._slow_write = True
        self._cancel_timer()
        self.transport.close()

    def _lost(self, reason: str) -> None:
        self.session.connection_lost(reason)
        self._process_events()
