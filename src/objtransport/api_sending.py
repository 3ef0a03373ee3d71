"""``SendingAPI``: the sending methods of :class:`~objtransport.NetworkTransport`.

``send_data``, ``send_many``, ``send_nowait`` (the per-message paths: one ``dict.get`` on
the registry's id -> connection dict, then the link), the codecs' ``send_json`` /
``send_msgpack`` and ``send_to`` (pools and group targets); ``set_bandwidth``, ``flush``
and ``unconfirmed`` are in :mod:`~objtransport.api_confirming`. A mixin over
:class:`~.api_parts.ServiceParts`: the methods are the service's own, so calling them
costs no extra layer.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl as ssl_module
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Unpack

from .api_parts import ServiceParts
from .codecs import JSON_TYPE, MSGPACK_TYPE, json_bytes, msgpack_bytes
from .config import Priority
from .connection import Connection
from .drivers.base import Link
from .exceptions import (
    ConnectionNotFound,
    ConnectionNotReady,
    SendTimeout,
    UnsupportedFeature,
)
from .groups import GroupSpec
from .params import SEND_DATA_KEYS, PriorityArg, SendDataOptions, SendToOptions, TransportArg
from .sansio.headers import HeaderValue
from .send_extended import send_extended

__all__ = ["SendingAPI"]

#: priority names resolved without parsing (a str only: ``True == 1`` would find 1 in a
#: dict keyed by ints, so a Priority or an int goes through ``Priority.parse``)
PRIORITIES: dict[object, int] = {p.name.lower(): int(p) for p in Priority}


def priority_of(priority: object) -> int:
    """The queue of ``priority`` (a name, a :class:`Priority` or its value); ``ValueError``
    for anything else (``True``, ``1.0``, ``["high"]``, ``"urgent"``)."""
    if type(priority) is str:
        prio = PRIORITIES.get(priority)
        if prio is not None:
            return prio
    return int(Priority.parse(priority))  # type: ignore[arg-type]

#: payload types accepted besides ``bytes`` (checked after the ``type(data) is bytes`` fast path)
BYTES_LIKE = (bytearray, memoryview)


def not_bytes(data: object) -> TypeError:
    return TypeError(f"a message payload must be bytes, bytearray or memoryview, not "
                     f"{type(data).__name__}")


class SendingAPI(ServiceParts):
    """Sending: messages, batches, pools and group targets."""

    async def send_data(self, conn_id: int, data: bytes | bytearray | memoryview,
                        **options: Unpack[SendDataOptions]) -> None:
        """Queue one message on a connection; return once it is queued.

        Keyword-only: ``priority`` (``"normal"``), ``stream`` (0), ``text`` (False),
        ``timeout`` (None: the service's), ``wait_ack`` (False: True returns once the peer
        acknowledged it), ``reliable`` (True), ``headers`` (None), ``ttl`` (None); another
        name raises ``TypeError`` (at the await).

        ``headers`` (``{"key": "value" | b"value"}``, at most ``max_headers`` entries and
        ``max_header_bytes`` in all) arrive as ``msg.headers``. ``ttl`` (seconds, on the
        service's ``clock``): a message still waiting to be queued, still queued, or
        written and not acknowledged when it passes is given up: not sent, or not sent
        again after a resume (a SKIP frame takes its number; a large message whose first
        fragment left finishes). It is counted in ``get_metrics().messaging["expired_sent"]``
        (and per priority), listed by :meth:`unconfirmed`, and published as
        ``SessionLost(reason="expired")``; a receiver that gets one late does not deliver
        it. A peer without SKIP (an older version) gets it as before. Both need the native framing
        (``UnsupportedFeature`` otherwise); with ``compression=`` agreed, messages of at
        least ``compression_min_size`` bytes are compressed when that saves space.

        ``reliable=False`` on QUIC sends the message as one DATAGRAM frame (unreliable,
        unordered; ``MessageTooLarge`` above one packet, nothing sent); other transports
        deliver it as usual.

        Waits (backpressure) while the connection has more than ``max_pending_bytes`` queued.
        While a native connection reconnects, the message is kept for the next link (up to
        ``max_pending_bytes``) and the call returns; past that it waits for the link and
        raises ``SendTimeout`` after ``timeout`` (``ConnectionNotReady`` for a connection
        that cannot queue: raw framing, or a first connection). Raises
        ``ConnectionNotFound`` for an unknown id, ``MessageTooLarge`` above
        ``max_message_size``, ``CircuitOpenError`` when the endpoint's circuit is open.
        """
        # the common case first, in one pass of cheap tests: bytes, a connection with an
        # open link, no compression, no option (or priority alone); anything else takes
        # the general way below
        try:
            conn = self._conns[conn_id]  # a subscript: cheaper than .get(), and an id is known
        except KeyError:
            pass
        else:
            if type(data) is bytes:
                link = conn.link
                # conn.plain: no compression configured (fixed with the connection's options)
                if link is not None and conn.plain and link.session.open:
                    if not options:  # queue()'s defaults: stream 0, normal, binary
                        queue = link.queue  # an attribute (a slot), then a call: cheaper
                        if queue(data):     # than a method call on a slot
                            await self._wait_room(conn, link, None, 2)
                        return
                    if len(options) == 1:
                        p = options.get("priority")
                        prio = PRIORITIES.get(p) if type(p) is str else None
                        if prio is not None:
                            if link.queue(data, 0, prio, False):
                                await self._wait_room(conn, link, None, prio)
                            return
        if not SEND_DATA_KEYS.issuperset(options):
            raise TypeError("send_data() got an unexpected keyword argument "
                            f"{sorted(set(options) - SEND_DATA_KEYS)[0]!r}")
        await self._send_data(conn_id, data, options.get("priority", "normal"),
                              options.get("stream", 0), options.get("text", False),
                              options.get("timeout"), options.get("wait_ack", False),
                              options.get("reliable", True), options.get("headers"),
                              options.get("ttl"))

    async def _wait_room(self, conn: Connection, link: Link, timeout: float | None,
                         prio: int) -> None:
        """Backpressure after a message was queued: wait until the link has room again;
        a ``SendTimeout`` counts as a failure for the endpoint's breaker."""
        try:
            await link.wait_writable(self.options.timeout if timeout is None else timeout, prio)
        except SendTimeout:
            conn.breaker.record_failure(asyncio.get_running_loop().time())
            raise

    async def _send_data(self, conn_id: int, data: bytes | bytearray | memoryview,
                         priority: PriorityArg, stream: int, text: bool,
                         timeout: float | None, wait_ack: bool, reliable: bool,
                         headers: Mapping[str, HeaderValue] | None,
                         ttl: float | None) -> None:
        """send_data in general: groups, payloads other than bytes, headers, ttl,
        compression, ``wait_ack``, ``reliable=False``, a link not open (reconnecting), and
        the errors."""
        if type(data) is not bytes and not isinstance(data, BYTES_LIKE):
            raise not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is None:
                self._check_running()
                raise ConnectionNotFound(conn_id)
            if headers is not None or ttl is not None:  # not dropped silently
                raise UnsupportedFeature(
                    f"headers and ttl do not travel through group {conn_id} (a failover "
                    "re-sends the payload alone): send on a member, net.pick_member(group)")
            await group.send(data, priority_of(priority), stream,
                             text, timeout, wait_ack)
            return
        prio = priority_of(priority)
        if headers is not None or ttl is not None or conn.options.compression is not None:
            await send_extended(conn, data, prio, stream, text,
                                self.options.timeout if timeout is None else timeout, headers,
                                ttl, self._messaging)
            return
        link = conn.link
        if link is None or not link.session.open:
            if reliable and not wait_ack and conn.queue_offline(data, stream, prio, text):
                return  # reconnecting: it goes out on the next link
            link = await conn.ready_link(self.options.timeout if timeout is None else timeout)
        if not reliable:
            send_datagram = getattr(link, "send_datagram", None)
            if send_datagram is not None:
                send_datagram(data)
                return
        if wait_ack:
            link.send(data, stream, prio, text)
            await conn.wait_acked(self.options.timeout if timeout is None else timeout,
                                  link.last_seq)
            return
        if link.queue(data, stream, prio, text):
            await self._wait_room(conn, link, timeout, prio)

    async def send_many(self, conn_id: int, datas: Iterable[bytes | bytearray | memoryview],
                        *, priority: PriorityArg = "normal", stream: int = 0,
                        text: bool = False, timeout: float | None = None) -> None:
        """Queue many messages on a connection, in order; return once all are queued.

        The cheap way to send many small messages: one backpressure check for the batch,
        after it is queued (so pass batches of a bounded size), and the frames of normal
        messages on stream 0 built in one pass into one buffer. Waits and raises as
        :meth:`send_data`; a message that is refused (too large, not bytes) raises and ends
        the batch there, the messages before it stay queued. ``ConnectionClosed`` from the
        wait after queueing means the batch *is* queued: with ACKs a resumed session sends
        it again (or ``unconfirmed()`` reports it); do not send it again yourself.
        """
        conn = self._conns.get(conn_id)
        if conn is None:
            self._check_running()
            raise ConnectionNotFound(conn_id)
        wait = self.options.timeout if timeout is None else timeout
        prio = priority_of(priority)
        link = conn.link
        if link is None or not link.session.open:
            rest = iter(datas)
            for data in rest:  # reconnecting: kept for the next link while there is room
                if not conn.queue_offline(data, stream, prio, text):
                    datas = itertools.chain((data,), rest)
                    break
            else:
                return
            link = await conn.ready_link(wait)
        if link.queue_many(datas, stream, prio, text):
            try:
                await link.wait_writable(wait, prio)
            except SendTimeout:
                conn.breaker.record_failure(asyncio.get_running_loop().time())
                raise

    def send_nowait(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                    priority: PriorityArg = "normal", stream: int = 0,
                    text: bool = False) -> None:
        """Queue one message without waiting: for plain-function handlers and callbacks.

        Raises ``SendTimeout`` at once instead of waiting when more than
        ``max_pending_bytes`` are already queued (nothing is queued then),
        ``ConnectionNotReady`` when the connection is not connected, and the errors of
        :meth:`send_data`.
        """
        if type(data) is not bytes and not isinstance(data, BYTES_LIKE):
            raise not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            self._check_running()
            raise ConnectionNotFound(conn_id)
        link = conn.link
        if link is None or not link.session.open:
            raise ConnectionNotReady(conn.id, conn.state.value, str(conn.endpoint))
        prio = 2 if priority == "normal" else priority_of(priority)  # as send_data
        # the backlog ahead of a message is part of what is queued: look at it only then
        if (link.session.scheduler.pending_bytes > link.max_pending
                and link.backlog(prio) > link.max_pending):
            raise SendTimeout(f"send_nowait to {conn.endpoint}: {link.pending_bytes} bytes "
                              "already queued (max_pending_bytes); use send_data to wait")
        link.queue(data, stream, prio, text)  # the session's own queue() on most links

    async def send_json(self, conn_id: int, obj: Any, *,
                        headers: Mapping[str, HeaderValue] | None = None,
                        **kwargs: Any) -> None:
        """``send_data`` of ``obj`` as compact UTF-8 JSON, with ``content-type:
        application/json`` (read it with ``msg.json()``)."""
        await self.send_data(conn_id, json_bytes(obj),
                             headers={**(headers or {}), "content-type": JSON_TYPE}, **kwargs)

    async def send_msgpack(self, conn_id: int, obj: Any, *,
                           headers: Mapping[str, HeaderValue] | None = None,
                           **kwargs: Any) -> None:
        """``send_data`` of ``obj`` as MessagePack, with ``content-type:
        application/msgpack`` (read it with ``msg.msgpack()``); needs
        ``objtransport[msgpack]``."""
        await self.send_data(conn_id, msgpack_bytes(obj),
                             headers={**(headers or {}), "content-type": MSGPACK_TYPE},
                             **kwargs)

    async def send_to(self, host: str | Sequence[str],
                      port: int | bytes | bytearray | memoryview,
                      data: bytes | bytearray | memoryview | None = None, *,
                      transport: TransportArg = "tcp", ssl: bool | None = None,
                      ssl_context: ssl_module.SSLContext | None = None,
                      priority: PriorityArg = "normal", stream: int = 0,
                      timeout: float | None = None, **options: Unpack[SendToOptions]) -> int:
        """Send one message through the endpoint's connection pool; return the connection id
        used. The pool opens at most ``pool_size`` connections per endpoint.

        ``send_to(target, data)`` with the targets of :meth:`connect_group` (a list of
        ``"host:port"`` or ``"dns:///name:port"``) sends through a group kept per target
        (``p2c``, ``redeliver=True``), made on first use."""
        self._check_running()
        if not isinstance(port, int):  # send_to(target, data)
            if data is not None:
                raise TypeError("send_to(target, data) takes no third argument")
            key = (host if isinstance(host, str) else tuple(host), transport, ssl, ssl_context)
            group = await self._groups.for_target(key, GroupSpec(
                host, transport, ssl=ssl, ssl_context=ssl_context, options=options))
            await self.send_data(group.id, port, priority=priority, stream=stream,
                                 timeout=timeout)
            return group.id
        if type(data) is not bytes and not isinstance(data, BYTES_LIKE):
            raise not_bytes(data)
        if not isinstance(host, str):
            raise TypeError("send_to(host, port, data), or send_to(target, data)")
        assert self._pools is not None
        return await self._pools.send(host, port, data, transport, ssl, ssl_context, priority,
                                      stream, timeout, options)

    async def _send_member(self, conn_id: int, data: bytes | bytearray | memoryview,
                           priority: int, stream: int, text: bool, timeout: float,
                           wait_ack: bool) -> None:
        await self.send_data(conn_id, data, priority=Priority(priority), stream=stream,
                             text=text, timeout=timeout, wait_ack=wait_ack)

    async def _send_pooled(self, conn_id: int, data: bytes | bytearray | memoryview,
                           priority: PriorityArg, stream: int, timeout: float) -> None:
        await self.send_data(conn_id, data, priority=priority, stream=stream, timeout=timeout)
