"""One WebSocket over one asyncio transport, on the public sans-I/O API of ``websockets``.

:class:`WsConnection` is the asyncio protocol under a WebSocket link. It pumps bytes between
the transport and a ``websockets`` :class:`~websockets.client.ClientProtocol` or
:class:`~websockets.server.ServerProtocol`, the way that library's own asyncio layer does:
``receive_data`` -> ``events_received`` -> ``data_to_send`` -> ``transport.write``. On top of
that it does what a message carrier needs and nothing else:

* data frames are reassembled into whole messages and handed to ``on_message`` from
  ``data_received`` (no queue, no task per message); a message over ``max_message`` fails the
  connection with 1009 as soon as its fragments pass the limit;
* pongs that answer our pings report their round trip to ``on_pong``;
* the opening handshake: the client sends its request and resolves ``handshake`` on the
  response; the server hands the request to ``on_request`` (which answers it);
* the closing handshake: once a close is expected, the transport is aborted if the peer does
  not finish it within ``close_timeout``;
* a Close frame received in the middle of a fragmented message ends the connection normally:
  the incomplete message is dropped and the peer's close is echoed (``websockets`` would
  answer 1002, "incomplete fragmented message"; RFC 6455 allows control frames between
  fragments, a Close included).

Reading and writing pause with the transport (``pause_reading`` / ``drain``).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

__all__ = ["WsConnection", "close_frame"]

_TEXT, _BINARY, _CONT, _CLOSE, _PONG = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE,
                                        Opcode.PONG)
_OPEN, _CLOSED = State.OPEN, State.CLOSED
#: no status code in a Close frame, and no Close frame at all (RFC 6455 7.1.5, 7.4.1)
_NO_STATUS, _ABNORMAL = 1005, 1006


def close_frame(code: int, reason: str, mask: bool) -> bytes:
    """A Close frame on the wire (RFC 6455 5.5.1); 1005 is sent as an empty Close."""
    payload = b"" if code == _NO_STATUS else struct.pack("!H", code) + reason.encode()[:123]
    n = len(payload)
    if not mask:
        return bytes((0x88, n)) + payload
    key = os.urandom(4)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * 32)[:n], "big")
              ).to_bytes(n, "big") if n else b""
    return bytes((0x88, 0x80 | n)) + key + masked


class WsConnection(asyncio.Protocol):
    """Pumps one ``websockets`` sans-I/O protocol over one asyncio transport."""

    def __init__(self, protocol: ClientProtocol | ServerProtocol, close_timeout: float,
                 on_request: Callable[[WsConnection, Request], None] | None = None) -> None:
        self.protocol = protocol
        self.client = isinstance(protocol, ClientProtocol)
        self.close_timeout = close_timeout
        self.on_request = on_request
        #: server: shown the first bytes; True when it answered them itself (a wrong peer)
        self.on_first_bytes: Callable[[WsConnection, bytes], bool] | None = None
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        #: the opening handshake ended (either way; see ``protocol.handshake_exc``)
        self.handshake: asyncio.Future[Response | None] = self.loop.create_future()
        #: the transport is gone
        self.lost: asyncio.Future[None] = self.loop.create_future()
        #: whole messages: ``on_message(payload, text)``; ``early`` holds those before it
        self.on_message: Callable[[bytes, bool], None] | None = None
        self.early: list[tuple[bytes, bool]] = []
        self.on_pong: Callable[[float], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        #: the largest message accepted (1009 above it); None: the protocol's max_size only
        self.max_message: int | None = None
        #: the peer's Close that came inside a fragmented message, echoed by us
        self.echoed: Close | None = None
        #: we failed the connection (1003, 1007, 1009): nothing more is delivered
        self.failed = False
        self._parts: list[bytes] | None = None  # a fragmented message being received
        self._text = False
        self._size = 0
        self._pings: dict[bytes, float] = {}
        self._ping_count = 0
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        #: server: loop time by which the opening handshake must be done (the listener's
        #: handshake_timeout from the accept, TLS included); None: ``close_timeout``
        self.open_by: float | None = None

    # -- asyncio protocol callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # any loop's stream transport will do
        self.transport = t
        self.peer = t.get_extra_info("peername")
        t.set_write_buffer_limits(high=256 * 1024)
        if not self.client:  # a peer that never completes the opening handshake
            by = self.open_by
            self._arm(self.close_timeout if by is None else max(0.0, by - self.loop.time()))

    def data_received(self, data: bytes) -> None:
        p = self.protocol
        state = p.state
        if state is _CLOSED:
            return  # after our echo of a Close inside a fragmented message
        if self.on_first_bytes is not None:
            check, self.on_first_bytes = self.on_first_bytes, None
            if check(self, data):
                return
        p.receive_data(data)
        events = p.events_received()
        for ev in events:
            if self.failed:
                break  # nothing after the frame we failed the connection on is delivered
            if type(ev) is Frame:
                self._frame(ev)
            else:
                self._handshake_event(ev)
        if p.state is not state and p.state is not _OPEN and not self.failed:
            self._closing_started(events)
        self.send_data()
        if p.close_expected():
            self._arm(self.close_timeout)

    def eof_received(self) -> None:
        p = self.protocol
        p.receive_eof()
        for ev in p.events_received():  # an HTTP response without Content-Length
            self._handshake_event(ev)
        self.send_data()  # the WebSocket has its own close: no writing after EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state is CLOSED from here on
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.handshake.done():
            self.handshake.set_result(None)
        self.lost.set_result(None)
        self._wake_drain_waiters()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain_waiters()

    # -- receiving -------------------------------------------------------------------------
    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        data = frame.data
        if type(data) is not bytes:
            data = bytes(data)
        if op is _BINARY or op is _TEXT:
            if frame.fin:
                limit = self.max_message
                if limit is not None and len(data) > limit:
                    self._too_big(len(data))
                else:
                    self._deliver(data, op is _TEXT)
                return
            self._parts, self._text, self._size = [data], op is _TEXT, len(data)
        elif op is _CONT:
            parts = self._parts
            if parts is None:  # dropped as too big; the protocol is failing already
                return
            parts.append(data)
            self._size += len(data)
            limit = self.max_message
            if limit is not None and self._size > limit:
                self._parts = None
                self._too_big(self._size)
            elif frame.fin:
                self._parts = None
                self._deliver(b"".join(parts), self._text)
        elif op is _PONG:
            self._pong(data)

    def _deliver(self, data: bytes, text: bool) -> None:
        on_message = self.on_message
        if on_message is None:
            self.early.append((data, text))
        else:
            on_message(data, text)

    def _too_big(self, size: int) -> None:
        self.fail(1009, f"message of {size} bytes or more exceeds max_message_size "
                        f"({self.max_message})")

    def fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 7.1.7) on what we received: send a Close with
        ``code``, deliver nothing more, end the connection."""
        if self.protocol.state is _OPEN:
            self.failed = True
            self._parts = None
            self.protocol.fail(code, reason)
            self.send_data()
            self._arm(self.close_timeout)

    def _closing_started(self, events: list[Any]) -> None:
        """The protocol left OPEN while receiving. A Close frame inside a fragmented message
        makes ``websockets`` fail with 1002; end normally instead: learn the peer's code (the
        protocol only tells it once CLOSED, so give it the end of the stream, as the
        connection ends here anyway) and echo it in place of the 1002."""
        if self._parts is None or any(type(ev) is Frame and ev.opcode is _CLOSE
                                      for ev in events):
            return
        p = self.protocol
        p.receive_eof()
        code = p.close_code
        if code is None or code == _ABNORMAL:
            return  # a real protocol error inside the message: the 1002 stands
        self._parts = None
        self.echoed = Close(code, p.close_reason or "")
        writes = p.data_to_send()
        for i in range(len(writes) - 1, -1, -1):
            if writes[i]:  # the last frame written is the failing Close
                writes[i] = close_frame(code, self.echoed.reason, self.client)
                break
        self._write(writes)

    # -- the opening handshake -------------------------------------------------------------
    def _handshake_event(self, ev: Any) -> None:
        if isinstance(ev, Request):
            if self.on_request is not None:
                self.on_request(self, ev)
            if self.protocol.state is _OPEN and self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif isinstance(ev, Response) and not self.handshake.done():
            self.handshake.set_result(ev)

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the handshake agreed on (the client checked the server's)."""
        hs = self.handshake
        response = hs.result() if hs.done() else None
        if response is None:
            return None
        return response.headers.get("Sec-WebSocket-Protocol")

    def respond(self, response: Response) -> None:
        """Server side: send the handshake response (101 opens the WebSocket)."""
        protocol = self.protocol
        assert isinstance(protocol, ServerProtocol), "only a server answers a request"
        protocol.send_response(response)
        if not self.handshake.done():
            self.handshake.set_result(response)
        self.send_data()
        if protocol.close_expected():
            self._arm(self.close_timeout)

    # -- sending ---------------------------------------------------------------------------
    def send_data(self) -> None:
        """Write what the protocol queued (after any ``send_*``, ``fail`` or ``receive_*``)."""
        writes = self.protocol.data_to_send()
        if writes:
            self._write(writes)

    def _write(self, writes: list[bytes]) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        for data in writes:
            if data:
                t.write(data)
            elif t.can_write_eof():  # half-close; TLS cannot, so close instead
                try:
                    t.write_eof()
                except (OSError, RuntimeError):  # pragma: no cover - loop dependent
                    t.close()
            else:
                t.close()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (nothing if it started already)."""
        p = self.protocol
        if p.state is _OPEN:
            p.send_close(code, reason)
            self.send_data()
            self._arm(self.close_timeout)

    def ping(self) -> None:
        """Send a ping; its pong reports the round trip to ``on_pong``."""
        p = self.protocol
        if p.state is not _OPEN:
            return
        self._ping_count += 1
        data = self._ping_count.to_bytes(8, "big")
        self._pings[data] = time.perf_counter()  # uvloop's loop.time() counts ms only
        p.send_ping(data)
        self.send_data()

    def _pong(self, data: bytes) -> None:
        sent = self._pings.pop(data, None)
        if sent is None:
            return  # unsolicited
        for key in [k for k, t in self._pings.items() if t <= sent]:
            del self._pings[key]  # a pong may answer only the last of several pings
        if self.on_pong is not None:
            self.on_pong(time.perf_counter() - sent)

    @property
    def writing_paused(self) -> bool:
        return self._paused

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._paused and not self.lost.done():
            fut: asyncio.Future[None] = self.loop.create_future()
            self._drain_waiters.append(fut)
            await fut

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # -- ending ----------------------------------------------------------------------------
    def _arm(self, delay: float) -> None:
        """Abort the transport unless it ends (or, server side, the handshake completes)
        within ``delay`` seconds."""
        if self._timer is None and not self.lost.done():
            self._timer = self.loop.call_later(delay, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_codes(self) -> tuple[Close | None, Close | None, bool | None]:
        """Once the transport is gone: the Close received, the Close sent, and whether the
        received one came first (from ``close_exc``; our echo counts as sent)."""
        echoed = self.echoed
        if echoed is not None:
            return echoed, echoed, True
        exc = self.protocol.close_exc
        return exc.rcvd, exc.sent, exc.rcvd_then_sent
