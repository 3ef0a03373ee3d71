"""WebSocket (ws:// and wss://) on the ``websockets`` library's asyncio API.

One :class:`WebSocketLink` per WebSocket connection pumps whole WebSocket messages between a
``websockets`` connection and a sans-I/O session:

* **native** (subprotocol ``objtransport.v1``): the WebSocket is a byte pipe for the native
  frames. Each binary message received goes to ``NativeSession.receive_data``; everything the
  session queued during a loop turn leaves as one binary message (split at ``CARRIER_MAX``
  bytes), so the library's per-message cost is paid once per batch;
* **raw** (any other peer): one WebSocket message is one application message
  (:class:`~objtransport.sansio.message.MessageSession`); a text message is delivered as its
  UTF-8 bytes with ``Message.text`` set. Keepalive is WebSocket ping/pong, its RTT reported
  as ``PongReceived``.

Received messages go from ``data_received`` straight to the session through a frame sink
that replaces the library's message queue (:class:`_FrameSink`). A task that waits for the
end of the connection and a writer task per link (owned by the link, cancelled when it ends)
and one ``loop.call_at`` timer at the session's deadline. ``websockets`` exceptions are mapped into
the objtransport tree here and never reach the caller.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import (
    ConnectionClosed as WsConnectionClosed,
)
from websockets.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from ..config import Options, TransportKind
from ..exceptions import ConnectError, TransportError
from ..sansio.core import AnySession
from ..sansio.framing import GoAwayCode
from ..sansio.message import MessageSession
from .base import LinkParts
from .message_link import MessageLink
from .tcp import describe_connect_error

__all__ = ["CARRIER_MAX", "DEFAULT_PATH", "SUBPROTOCOL", "WebSocketDriver", "WebSocketLink"]

log = logging.getLogger("objtransport.websocket")

#: the subprotocol that selects the native framing
SUBPROTOCOL = Subprotocol("objtransport.v1")
#: the URL path a listener serves and a client asks for, unless ``path=`` says otherwise
DEFAULT_PATH = "/"
#: the largest binary message carrying native frames (a sender splits above it)
CARRIER_MAX = MessageLink.carrier_max
#: the first native carrier message of a connection (then doubling up to CARRIER_MAX)
CARRIER_START = 16 * 1024
WRITE_HIGH = 256 * 1024
MAX_QUEUE = 64  # frames websockets buffers before it pauses reading

#: GOAWAY codes -> WebSocket close codes (a code >= 1000 is used as it is)
_CLOSE_CODES = {
    GoAwayCode.NORMAL: 1000,
    GoAwayCode.SHUTDOWN: 1001,
    GoAwayCode.PROTOCOL_ERROR: 1002,
    GoAwayCode.UNSUPPORTED_VERSION: 1002,
    GoAwayCode.FRAME_TOO_LARGE: 1009,
    GoAwayCode.MESSAGE_TOO_LARGE: 1009,
    GoAwayCode.OVERLOADED: 1013,
}
_ORDERLY = (1000, 1001)
_GOAWAY_VALUES = frozenset(int(c) for c in GoAwayCode)


def ws_close_code(code: int | None) -> int:
    """The WebSocket close code for a session's close code."""
    if code is None or code < 0:
        return 1011
    if 1000 <= code <= 4999:
        return code
    return _CLOSE_CODES.get(GoAwayCode(code), 1011) if code in _GOAWAY_VALUES else 1011


def _set_max_size(ws: ServerConnection | ClientConnection, limit: int) -> None:
    """Per-connection receive limit, once the framing is known (checked before buffering)."""
    protocol: Any = ws.protocol
    if hasattr(protocol, "max_message_size"):
        protocol.max_message_size = limit
    else:  # pragma: no cover - websockets < 15
        protocol.max_size = limit


class _FrameSink:
    """Stands in for the message assembler of a ``websockets`` connection: each complete
    data message goes to the link from ``data_received``, with no task in between (the
    library's ``recv()`` costs a task wake-up per message, 15-35 us of round-trip time on
    these machines). Messages that arrive before the link attaches wait in ``early``."""

    def __init__(self) -> None:
        self.deliver: Callable[[bytes, bool], None] | None = None
        self.early: list[tuple[bytes, bool]] = []
        self._parts: list[bytes] = []
        self._text = False
        self.ended = False

    def put(self, frame: Frame) -> None:  # called by websockets for TEXT, BINARY, CONT
        if self.ended:
            raise EOFError("stream of frames ended")
        data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        if frame.opcode is Opcode.CONT:
            self._parts.append(data)
            if not frame.fin:
                return
            data, self._parts = b"".join(self._parts), []
            text = self._text
        else:
            text = frame.opcode is Opcode.TEXT
            if not frame.fin:
                self._parts, self._text = [data], text
                return
        if self.deliver is None:
            self.early.append((data, text))
        else:
            self.deliver(data, text)

    def close(self) -> None:  # called by websockets when the connection is lost
        self.ended = True


class _DirectServerConnection(ServerConnection):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.recv_messages = _FrameSink()  # type: ignore[assignment]


class _DirectClientConnection(ClientConnection):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.recv_messages = _FrameSink()  # type: ignore[assignment]


class WebSocketLink(MessageLink):
    """One WebSocket connection bound to one session (native or message)."""

    def __init__(self, ws: ServerConnection | ClientConnection, session: AnySession,
                 parts: LinkParts) -> None:
        self.ws = ws
        self._init_link(session, parts, ws.remote_address)
        self._reader: asyncio.Task[None] | None = None
        self._idle = False  # the writer task waits for work (the fast path may write)
        self._flush_handle: asyncio.Handle | None = None
        if self.native:
            # native carriers start small and double per message up to CARRIER_MAX ("slow
            # start"): after a reconnect, resent frames arrive (and are acknowledged) in
            # pieces, not as one large message that a link breaking again would lose whole
            self.carrier_max = CARRIER_START

    def _carriers(self, data: bytes | bytearray | memoryview
                  ) -> list[bytes | bytearray | memoryview]:
        """``data`` (native frames, a byte stream) cut into carrier messages of
        ``carrier_max`` bytes, doubling per message up to CARRIER_MAX."""
        n = len(data)
        size = self.carrier_max
        if n <= size:
            if size < CARRIER_MAX:
                self.carrier_max = min(CARRIER_MAX, size * 2)
            return [data]
        view = memoryview(data)
        out: list[bytes | bytearray | memoryview] = []
        off = 0
        while off < n:
            out.append(view[off:off + size])
            off += size
            size = min(CARRIER_MAX, size * 2)
        self.carrier_max = size
        return out

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Client side: run the reader in a task of its own."""
        self._reader = self.loop.create_task(self.run(), name="objtransport-ws-reader")
        self._reader.add_done_callback(_log_failure)

    async def run(self) -> None:
        """Read until the connection ends (a server handler awaits this)."""
        self._writer = self.loop.create_task(self._write_loop(), name="objtransport-ws-writer")
        self._process_events()
        self._kick()
        self._rearm()
        try:
            await self._read_loop()
        finally:
            self._finish()

    async def _read_loop(self) -> None:
        """Messages arrive through the sink (``_on_ws_message``); this task only waits for
        the end: of the WebSocket, or of the session (then the orderly close)."""
        ws = self.ws
        sink = ws.recv_messages
        assert isinstance(sink, _FrameSink), "connections are made by _Direct*Connection"
        sink.deliver = self._on_ws_message
        early, sink.early = sink.early, []
        for data, text in early:
            self._on_ws_message(data, text)
        lost = self.loop.create_task(ws.wait_closed(), name="objtransport-ws-closed")
        try:
            ends: list[asyncio.Future[Any]] = [lost, self.closed]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            if not lost.done():
                self._kick()  # the session ended: the writer sends what is left, closes
                await asyncio.wait([lost], timeout=self.session.options.timeout)
        finally:
            if not lost.done():
                lost.cancel()
        exc = ws.protocol.close_exc
        self._ws_closed(exc)

    def _on_ws_message(self, data: bytes, text: bool) -> None:
        """One WebSocket message, straight from ``data_received``."""
        session = self.session
        if session.closed:
            return
        msession = self._msession
        now = self.loop.time()
        if text:
            if msession is None:
                self._close_ws(1003, "objtransport.v1 carries binary messages only")
                return
            try:
                bytes(data).decode()
            except UnicodeDecodeError:
                self._close_ws(1007, "invalid UTF-8 in a text message")
                return
            msgs = msession.receive_message(data, True, now)
        elif msession is not None:
            msgs = msession.receive_message(data, False, now)
        else:
            msgs = session.receive_data(data, now)
        if self.receive_bucket is not None:
            self._pace_receive_now(len(data), now)
        self._delivered(msgs)

    def _answer(self) -> None:
        self._schedule_flush()  # the rest of this loop turn coalesces with it

    def _close_ws(self, code: int, reason: str) -> None:
        """Start the WebSocket closing handshake from a callback (no await)."""
        protocol = self.ws.protocol
        if protocol.state is State.OPEN:
            protocol.send_close(code, reason)
            self.ws.send_data()

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
        if not self.ws.transport.is_closing():
            self.ws.transport.pause_reading()

    def resume_reading(self, reason: str = "consumer") -> None:
        super().resume_reading(reason)
        if not self._read_pauses and not self.ws.transport.is_closing():
            self.ws.transport.resume_reading()

    def _ws_closed(self, exc: WsConnectionClosed) -> None:
        """The WebSocket ended: record its close code and reason on the session."""
        session = self.session
        if session.closed:
            return
        rcvd, sent = exc.rcvd, exc.sent
        if rcvd is not None and (sent is None or exc.rcvd_then_sent):
            session.peer_closed(rcvd.code, rcvd.reason or f"closed by peer (code {rcvd.code})",
                                error=rcvd.code not in _ORDERLY)
        elif sent is not None:
            session.carrier_closed(sent.code, sent.reason or f"closed (code {sent.code})",
                                   error=sent.code not in _ORDERLY)
        else:
            session.connection_lost("connection lost (no close frame)")
        self._process_events()

    def _finish(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._finish_common()
        transport = self.ws.transport
        if not transport.is_closing():
            transport.abort()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message; return True when the caller should wait (``wait_writable``)."""
        self.last_seq = self.session.send_message(data, stream, priority, text)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)
            self._flush()  # a lone message goes out at once; the rest of the turn coalesces
        rs = self._rs
        return self._sched.pending_bytes > self.max_pending or (
            rs is not None and rs.unacked_bytes > self.max_unacked)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._flush()

    def _flush(self) -> None:
        """Write one batch without awaiting, when nothing stands in the way (the writer task
        idle, no pacing, the socket buffer below its high-water mark); otherwise, and for
        whatever is left, the writer task takes over."""
        session = self.session
        ws = self.ws
        if (not self._idle or self.pacer.buckets or session.closed
                or ws.protocol.state is not State.OPEN
                or ws.transport.get_write_buffer_size() > WRITE_HIGH):
            self._kick()
            return
        now = self.loop.time()
        protocol = ws.protocol
        msession = self._msession
        n = 0
        if msession is not None:
            for payload, text in msession.messages_to_send(now, CARRIER_MAX):
                n += len(payload)
                if text:
                    protocol.send_text(payload)
                else:
                    protocol.send_binary(payload)
        else:
            chunks = session.data_to_send(now, CARRIER_MAX)
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                n = len(data)
                for piece in self._carriers(data):
                    protocol.send_binary(piece)
        if n:
            ws.send_data()
        if session.scheduler.pending_bytes or session.has_final:
            self._kick()
        if self._drain_waiters:
            self._wake_drain_waiters()
        if self._flushed_waiters and not session.scheduler.pending_bytes:
            self._wake_flushed()

    async def _write_loop(self) -> None:
        ws = self.ws
        session = self.session
        msession = session if isinstance(session, MessageSession) else None
        wake = self._wake
        try:
            while True:
                self._idle = True
                try:
                    await wake.wait()
                finally:
                    self._idle = False
                wake.clear()
                if msession is not None and msession.ping_due:
                    msession.ping_due = False
                    await self._ping(msession)
                while True:
                    budget, strict = await self._budget()
                    now = self.loop.time()
                    if msession is not None:
                        items = msession.messages_to_send(now, budget, strict)
                        if not items:
                            break
                        n = 0
                        for payload, text in items:
                            n += len(payload)
                            await ws.send(payload, text=text)
                    else:
                        chunks = session.data_to_send(now, budget, strict)
                        if not chunks:
                            break
                        n = await self._send_native(chunks)
                    self.pacer.consume(n, now)
                    if self._drain_waiters:
                        self._wake_drain_waiters()
                if self._drain_waiters:
                    self._wake_drain_waiters()
                if self._flushed_waiters and not session.scheduler.pending_bytes:
                    self._wake_flushed()
                if session.closed and not session.scheduler.pending_bytes \
                        and not session.has_final:
                    await ws.close(ws_close_code(session.close_code),
                                   session.close_reason[:120])
                    return
        except WsConnectionClosed:
            return  # the reader sees it too and records why

    async def _send_native(self, chunks: list[Any]) -> int:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        n = len(data)
        for piece in self._carriers(data):
            await self.ws.send(piece)
        return n

    async def _ping(self, session: MessageSession) -> None:
        pong = await self.ws.ping()

        def done(fut: asyncio.Future[float]) -> None:
            if fut.cancelled() or fut.exception() is not None or session.closed:
                return
            session.pong_received(fut.result(), self.loop.time())
            self._process_events()
            self._rearm()

        pong.add_done_callback(done)  # type: ignore[attr-defined]

    # -- backpressure ----------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes queued in the session plus bytes in the socket's buffer."""
        t = self.ws.transport
        buffered = t.get_write_buffer_size() if not t.is_closing() else 0
        return self.session.scheduler.pending_bytes + buffered

    # -- closing ---------------------------------------------------------------------------
    def abort(self) -> None:
        """Drop the connection at once, discarding what is queued."""
        self._aborted = True
        self.ws.transport.abort()


class WebSocketServer:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.port: int = next(iter(server.sockets)).getsockname()[1]

    def close(self) -> None:
        # the service closes the accepted connections itself, in order
        self.server.close(close_connections=False)

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


def _url(host: str, port: int, path: str, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{shown}:{port}{path}"


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must be a string starting with '/', not {path!r}")
    return path


class WebSocketDriver:
    """ws:// and wss://, native (subprotocol ``objtransport.v1``) or raw per connection."""

    kind = TransportKind.WEBSOCKET
    extra_options: frozenset[str] = frozenset({"path"})

    async def open(self, host: str, port: int, parts: LinkParts,
                   ssl_context: ssl_module.SSLContext | None, options: Options,
                   server_hostname: str | None) -> WebSocketLink:
        """Open the WebSocket, then wait for the session handshake (native).

        Raises ``ConnectError`` naming the URL and the reason: refused, TLS, timed out, an
        HTTP status that refused the upgrade (``.status``), a peer that is no WebSocket
        server, or a server that does not speak ``objtransport.v1`` in native mode.
        """
        path = _check_path(parts.extra.get("path", DEFAULT_PATH))
        url = _url(host, port, path, ssl_context is not None)
        native = parts.native is not False
        link: WebSocketLink | None = None
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(options.timeout):
                ws = await connect(
                    url, ssl=ssl_context, server_hostname=server_hostname,
                    subprotocols=[SUBPROTOCOL] if native else None, compression=None,
                    open_timeout=None, ping_interval=None, ping_timeout=None,
                    close_timeout=options.timeout, proxy=None,
                    max_size=CARRIER_MAX if native else options.max_message_size,
                    max_queue=MAX_QUEUE, write_limit=WRITE_HIGH,
                    create_connection=_DirectClientConnection)
                if native and ws.subprotocol != SUBPROTOCOL:
                    raise ConnectError(url, "the server did not accept the objtransport.v1 "
                                       "subprotocol (a plain WebSocket server? connect "
                                       "with framing='raw')")
                session: AnySession = parts.make_session(native)
                if not native:
                    session = MessageSession.like(session, asyncio.get_running_loop().time())
                link = WebSocketLink(ws, session, parts)
                link.start()
                await asyncio.shield(link.ready)
            return link
        except InvalidStatus as exc:
            status = exc.response.status_code
            _abort(ws, link)
            raise ConnectError(url, f"WebSocket upgrade refused: HTTP {status} "
                               f"{_phrase(status)}", status) from exc
        except InvalidMessage as exc:
            _abort(ws, link)
            raise ConnectError(url, "not a WebSocket server (invalid HTTP response: "
                               f"{exc.__cause__ or exc})") from exc
        except (InvalidHandshake, InvalidURI) as exc:
            _abort(ws, link)
            raise ConnectError(url, f"WebSocket handshake failed: {exc}") from exc
        except WsConnectionClosed as exc:
            _abort(ws, link)
            raise ConnectError(url, f"closed during the handshake: {exc}") from exc
        except (OSError, TimeoutError, ssl_module.SSLError) as exc:
            _abort(ws, link)
            raise ConnectError(url, describe_connect_error(exc)) from exc
        except TransportError as exc:
            _abort(ws, link)
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(url, f"handshake failed: {exc}") from exc
        except BaseException:
            _abort(ws, link)
            raise

    async def serve(self, host: str, port: int, accept: Callable[[], LinkParts | None],
                    ssl_context: ssl_module.SSLContext | None, options: Options,
                    extra: dict[str, Any]) -> WebSocketServer:
        """Serve ``path`` (other paths get 404). Each connection is native when the client
        asks for ``objtransport.v1``, raw otherwise."""
        path = _check_path(extra.get("path", DEFAULT_PATH))
        raw_limit = options.max_message_size

        def process_request(conn: ServerConnection, request: Request) -> Response | None:
            if urlsplit(request.path).path != path:
                return conn.respond(HTTPStatus.NOT_FOUND,
                                    f"no WebSocket endpoint at {request.path}\n")
            return None

        def select(conn: ServerConnection, offered: Any) -> Subprotocol | None:
            return SUBPROTOCOL if SUBPROTOCOL in offered else None

        async def handler(ws: ServerConnection) -> None:
            parts = accept()
            if parts is None:
                await ws.close(1013, "too many connections")
                return
            native = ws.subprotocol == SUBPROTOCOL
            _set_max_size(ws, CARRIER_MAX if native else raw_limit)
            session: AnySession = parts.make_session(native)
            if not native:
                session = MessageSession.like(session, asyncio.get_running_loop().time())
            link = WebSocketLink(ws, session, parts)
            if parts.on_link is not None:
                parts.on_link(link)
            if link.on_made is not None:
                link.on_made(link)
            await link.run()

        try:
            server = await serve(
                handler, host, port, ssl=ssl_context, process_request=process_request,
                select_subprotocol=select, compression=None, ping_interval=None,
                ping_timeout=None, open_timeout=options.timeout,
                close_timeout=options.timeout, max_size=max(raw_limit, CARRIER_MAX),
                max_queue=MAX_QUEUE, write_limit=WRITE_HIGH, backlog=1024,
                reuse_address=True, create_connection=_DirectServerConnection)
        except OSError as exc:
            raise ConnectError(f"{host}:{port}",
                               f"cannot listen: {describe_connect_error(exc)}") from exc
        return WebSocketServer(server)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("WebSocket link failed", exc_info=task.exception())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _abort(ws: ClientConnection | None, link: WebSocketLink | None) -> None:
    if link is not None:
        link.abort()
    elif ws is not None:
        ws.transport.abort()
