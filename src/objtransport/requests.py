"""Request/reply, headers, expiring and compressed messages over the native protocol.

* :func:`outgoing` turns a payload plus what travels with it (headers, a request id and its
  deadline, a reply's correlation, an expiry) into the bytes and DATA flags to queue, and
  compresses it when the connection agreed on a codec. A connection that cannot carry
  it (raw framing, UDP, a peer without the feature) raises :class:`UnsupportedFeature`.
* :class:`Exchange` holds the requests waiting for an answer, per connection: at most
  ``max_inflight_requests`` each; an answer resolves its future once; a late one is dropped
  and counted; a connection given up (or whose peer lost the session) cancels its requests.
* :class:`Responder` sends the answers: ``msg.reply(data)`` and the handler's return value;
  errors go back as a short text (never a traceback) with a status.

Deadlines and expiry travel as Unix times in ms (see docs/protocol.md section 1.9), so a
request sent again after a reconnection still carries its original deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .config import Priority
from .exceptions import (
    ConnectionNotFound,
    NoResponder,
    RequestCancelled,
    RequestTimeout,
    SendTimeout,
    UnsupportedFeature,
)
from .sansio.events import PRIORITY_NAMES, Message
from .sansio.framing import (
    FEATURE_META,
    FEATURE_ZLIB,
    FEATURE_ZSTD,
    FLAG_META,
    FLAG_TEXT,
    FLAG_ZIP,
)
from .sansio.headers import (
    CODEC_ZLIB,
    CODEC_ZSTD,
    MAX_ERROR_TEXT,
    HeaderValue,
    MetaLimits,
    ReplyStatus,
    compress,
    encode_meta,
)

if TYPE_CHECKING:
    from .connection import Connection
    from .drivers.base import Link

__all__ = ["Exchange", "MessagingCounters", "Responder", "outgoing"]

log = logging.getLogger("objtransport.requests")

_CODECS = {"zlib": (CODEC_ZLIB, FEATURE_ZLIB), "zstd": (CODEC_ZSTD, FEATURE_ZSTD)}
_PRIORITY_VALUES = {p.name.lower(): int(p) for p in Priority}


@dataclass
class MessagingCounters:
    """Service-wide request/reply and expiry figures (``get_metrics().messaging``)."""

    requests_sent: int = 0
    replies_received: int = 0
    late_replies: int = 0  # answers to requests that had timed out or were cancelled
    request_timeouts: int = 0
    requests_cancelled: int = 0
    replies_sent: int = 0
    errors_sent: int = 0  # NO_RESPONDER / HANDLER_ERROR / EXPIRED answers
    expired_requests: int = 0  # requests received after their deadline (handler not run)
    expired_sent: int = 0  # messages given up by this side because their ttl passed
    expired_received: int = 0  # messages that arrived after their ttl (not delivered)
    compressed_sent: int = 0
    #: expired_sent per priority (control, high, normal, low)
    expired_by_priority: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def expired(self, priority: int) -> None:
        self.expired_sent += 1
        self.expired_by_priority[priority] += 1

    def expired_all(self, lost: list[tuple[int, bytes, int, int, bool]]) -> None:
        """Messages given up by their ttl: (seq, payload, stream, priority, text) each."""
        for u in lost:
            self.expired(u[3])

    def as_dict(self) -> dict[str, int]:
        out = {k: v for k, v in asdict(self).items() if isinstance(v, int)}
        for name, n in zip(PRIORITY_NAMES, self.expired_by_priority, strict=True):
            out[f"expired_sent_{name}"] = n
        return out


def _features(link: Link) -> int:
    """The peer's HELLO features of a native link (0 for raw, UDP or message sessions)."""
    return int(getattr(link.session, "peer_features", 0))


def outgoing(link: Link, data: bytes | bytearray | memoryview, text: bool, *,
             headers: Mapping[str, HeaderValue] | None = None, request_id: int = 0,
             deadline: float = 0.0, reply_to: int = 0, status: int = 0,
             expires: float = 0.0, compression: str | None = None,
             min_size: int = 1024, counters: MessagingCounters | None = None,
             where: object = "") -> tuple[bytes | bytearray | memoryview, int]:
    """``(payload, flags)`` to queue on ``link`` (flags 0: send ``data`` as it is).

    Raises :class:`UnsupportedFeature` when something must travel in a meta block and the
    link cannot carry one, ``ValueError`` for headers beyond the limits."""
    flags = FLAG_TEXT if text else 0
    features = _features(link)
    needs_meta = bool(headers) or request_id or reply_to or expires
    if needs_meta:
        if not features & FEATURE_META:
            what = "requests" if request_id or reply_to else (
                "headers" if headers else "ttl")
            raise UnsupportedFeature(
                f"{what} need the native framing over a stream transport (TCP, TLS, "
                f"WebSocket, gRPC, QUIC): {str(where) or 'this connection'} cannot carry "
                "them")
        opts = link.session.options if headers else None
        meta = encode_meta(headers, request_id=request_id,
                           deadline_ms=int(deadline * 1000), reply_to=reply_to,
                           status=status, expires_ms=int(expires * 1000),
                           limits=None if opts is None
                           else MetaLimits(opts.max_headers, opts.max_header_bytes))
        flags |= FLAG_META
    else:
        meta = b""
    if compression is not None and len(data) >= min_size:
        codec, bit = _CODECS[compression]
        if features & bit:
            packed = compress(data, codec)
            if len(packed) < len(data):
                data = packed
                flags |= FLAG_ZIP
                if counters is not None:
                    counters.compressed_sent += 1
    if meta:
        return meta + bytes(data), flags
    return data, flags


async def queue(link: Link, payload: bytes | bytearray | memoryview, stream: int,
                prio: int, flags: int, timeout: float) -> None:
    """Queue an extended message (``flags`` are wire flags; the native session takes an
    ``int`` in place of its ``text`` argument as such) and wait for backpressure."""
    if link.send(payload, stream, prio, cast(bool, flags)):
        await link.wait_writable(timeout, prio)


def _expire(fut: asyncio.Future[Message], conn: Connection) -> None:
    if not fut.done():
        fut.set_exception(RequestTimeout(f"no reply from {conn.endpoint} within the "
                                         "request's timeout"))


class Exchange:
    """Requests waiting for their answer, per connection."""

    def __init__(self, max_inflight: int, counters: MessagingCounters) -> None:
        self.max_inflight = max_inflight
        self.counters = counters
        self._next_id = 0
        self._pending: dict[int, dict[int, asyncio.Future[Message]]] = {}
        self._slots: dict[int, asyncio.Semaphore] = {}

    def inflight(self, conn_id: int) -> int:
        """Requests of ``conn_id`` waiting for their answer."""
        return len(self._pending.get(conn_id, ()))

    async def request(self, conn: Connection, link_for: Callable[[], Awaitable[Link]],
                      data: bytes | bytearray | memoryview, timeout: float,
                      headers: Mapping[str, HeaderValue] | None, prio: int, stream: int,
                      compression: str | None, min_size: int) -> Message:
        """Send a request on ``conn`` and wait for its answer (see ``NetworkTransport.
        request``)."""
        loop = asyncio.get_running_loop()
        deadline_loop = loop.time() + timeout
        deadline = time.time() + timeout
        slots = self._slots.get(conn.id)
        if slots is None:
            slots = self._slots[conn.id] = asyncio.Semaphore(
                getattr(conn.options, "max_inflight_requests", self.max_inflight))
        if slots.locked():  # at the bound: wait for a slot, up to the deadline
            try:
                async with asyncio.timeout(timeout):
                    await slots.acquire()
            except TimeoutError:
                raise SendTimeout(f"request to {conn.endpoint}: {self.inflight(conn.id)} "
                                  "requests in flight (max_inflight_requests) for "
                                  f"{timeout:g} s") from None
        else:
            await slots.acquire()  # a free slot: returns at once
        try:
            return await self._exchange(conn, link_for, data, deadline, deadline_loop,
                                        headers, prio, stream, compression, min_size)
        finally:
            slots.release()

    async def _exchange(self, conn: Connection, link_for: Callable[[], Awaitable[Link]],
                        data: bytes | bytearray | memoryview, deadline: float,
                        deadline_loop: float, headers: Mapping[str, HeaderValue] | None,
                        prio: int, stream: int, compression: str | None,
                        min_size: int) -> Message:
        loop = asyncio.get_running_loop()
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[Message] = loop.create_future()
        pending = self._pending.get(conn.id)
        if pending is None:
            pending = self._pending[conn.id] = {}
        pending[rid] = fut
        # one timer for the whole exchange (cheaper than a timeout context per request)
        timer = loop.call_at(deadline_loop, _expire, fut, conn)
        try:
            link = conn.link
            if link is None or not link.session.is_open:
                link = await link_for()
                if fut.done():  # the deadline passed while (re)connecting: nothing sent
                    return await fut
            payload, flags = outgoing(link, data, False, headers=headers, request_id=rid,
                                      deadline=deadline, compression=compression,
                                      min_size=min_size, counters=self.counters,
                                      where=conn.endpoint)
            self.counters.requests_sent += 1
            if link.send(payload, stream, prio, cast(bool, flags)):
                await link.wait_writable(max(0.0, deadline_loop - loop.time()), prio)
            return await fut
        except RequestTimeout:
            self.counters.request_timeouts += 1
            raise
        finally:
            timer.cancel()
            pending.pop(rid, None)
            if not pending and self._pending.get(conn.id) is pending:
                del self._pending[conn.id]

    def on_replies(self, conn: Connection,
                   replies: list[tuple[int, int, bytes, dict[str, bytes] | None]]) -> None:
        """Answers arrived on ``conn``: resolve each request's future (once)."""
        pending = self._pending.get(conn.id, {})
        for rid, status, data, headers in replies:
            fut = pending.pop(rid, None)
            if fut is None or fut.done():
                self.counters.late_replies += 1
                continue
            self.counters.replies_received += 1
            if status == ReplyStatus.OK:
                fut.set_result(Message(data, conn.id, conn.transport_name,
                                       conn.peer_address, headers=headers))
            else:
                detail = data[:MAX_ERROR_TEXT].decode("utf-8", "replace")
                name = ReplyStatus(status).name if status in ReplyStatus._value2member_map_ \
                    else str(status)
                fut.set_exception(NoResponder(str(conn.endpoint), status,
                                              f"{name.lower()}: {detail}"))

    def cancel(self, conn: Connection, why: str) -> None:
        """``conn`` cannot answer any more (given up, closed, its session lost)."""
        pending = self._pending.pop(conn.id, None)
        if not pending:
            return
        for fut in pending.values():
            if not fut.done():
                self.counters.requests_cancelled += 1
                fut.set_exception(RequestCancelled(f"request to {conn.endpoint} cancelled: "
                                                   f"{why}"))

    def forget(self, conn_id: int) -> None:
        self._slots.pop(conn_id, None)


class Responder:
    """Sends answers to requests; one per service (messages hold it)."""

    def __init__(self, conns: Mapping[int, Connection], counters: MessagingCounters,
                 timeout: float) -> None:
        self._conns = conns
        self.counters = counters
        self.timeout = timeout
        #: what deadlines and expiry are compared with (Unix time; the service's ``clock``)
        self.clock: Callable[[], float] = time.time

    def _link(self, msg: Message) -> tuple[Connection, Link]:
        conn = self._conns.get(msg.conn_id)
        if conn is None:
            raise ConnectionNotFound(msg.conn_id)
        link = conn.link
        if link is None or not link.session.is_open:
            from .exceptions import ConnectionNotReady

            raise ConnectionNotReady(conn.id, conn.state.value, str(conn.endpoint))
        return conn, link

    def send(self, msg: Message, data: bytes | bytearray | memoryview,
             status: int = ReplyStatus.OK,
             headers: Mapping[str, HeaderValue] | None = None) -> bool:
        """Queue the answer to ``msg`` (once; later ones raise ``RuntimeError``). Returns
        True when the caller should wait for backpressure."""
        if msg.replied:
            raise RuntimeError(f"request {msg.request_id} was already answered")
        msg.replied = True
        conn, link = self._link(msg)
        opts = conn.options
        payload, flags = outgoing(link, data, False, headers=headers,
                                  reply_to=msg.request_id, status=status,
                                  compression=opts.compression,
                                  min_size=opts.compression_min_size,
                                  counters=self.counters, where=conn.endpoint)
        if status == ReplyStatus.OK:
            self.counters.replies_sent += 1
        else:
            self.counters.errors_sent += 1
        prio = _PRIORITY_VALUES.get(msg.priority, 2)
        return link.send(payload, msg.stream, prio, cast(bool, flags))

    async def reply(self, msg: Message, data: bytes | bytearray | memoryview,
                    headers: Mapping[str, HeaderValue] | None = None) -> None:
        """``await msg.reply(data)``."""
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"a reply must be bytes, not {type(data).__name__}")
        if self.send(msg, data, ReplyStatus.OK, headers):
            _, link = self._link(msg)
            await link.wait_writable(self.timeout, _PRIORITY_VALUES.get(msg.priority, 2))

    def error(self, msg: Message, status: int, text: str) -> None:
        """Answer ``msg`` with an error (a short text), unless it was answered already."""
        if msg.replied:
            return
        try:
            self.send(msg, text.encode("utf-8", "replace")[:MAX_ERROR_TEXT], status)
        except Exception as exc:  # the connection went away: the requester times out
            log.debug("cannot answer request %s: %s", msg.request_id, exc)

    def expired(self, msg: Message, now: float) -> bool:
        """True (and the requester told) when ``msg`` is a request past its deadline, or a
        message past its expiry: the handler must not run."""
        if msg.deadline and now > msg.deadline and msg.request_id:
            self.counters.expired_requests += 1
            self.error(msg, ReplyStatus.EXPIRED, "the deadline had passed on arrival")
            return True
        if msg.expires and now > msg.expires:
            self.counters.expired_received += 1
            return True
        return False

    def after_handler(self, msg: Message, result: Any,
                      wait: bool) -> Awaitable[None] | None:
        """A handler returned ``result`` for a request: answer with it if it is bytes;
        otherwise, if the handler did not reply itself, say there is no responder. With
        ``wait``, returns what to await for backpressure (if anything)."""
        if msg.replied:
            return None
        if isinstance(result, (bytes, bytearray, memoryview)):
            try:
                if self.send(msg, result) and wait:
                    _, link = self._link(msg)
                    return link.wait_writable(self.timeout,
                                              _PRIORITY_VALUES.get(msg.priority, 2))
            except Exception as exc:
                log.debug("cannot answer request %s: %s", msg.request_id, exc)
            return None
        self.error(msg, ReplyStatus.NO_RESPONDER,
                   "the handler returned no reply" if result is None
                   else f"the handler returned {type(result).__name__}, not bytes")
        return None

    def handler_failed(self, msg: Message, exc: BaseException) -> None:
        """The handler raised: the requester gets the exception's type, not its text or
        traceback (they may hold secrets)."""
        self.error(msg, ReplyStatus.HANDLER_ERROR, f"the handler raised {type(exc).__name__}")
