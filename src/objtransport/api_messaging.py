"""``MessagingAPI``: request/reply and receiving, for :class:`~objtransport.NetworkTransport`.

``request`` / ``request_to`` (answers matched by :class:`~.requests.Exchange`) and
``receive`` / ``messages`` (the :class:`~.inbox.Inbox`; a request past its deadline is
dropped there by the :class:`~.requests.Responder`). A mixin over
:class:`~.api_parts.ServiceParts`.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Unpack

from .api_parts import ServiceParts
from .api_sending import BYTES_LIKE, not_bytes, priority_of
from .exceptions import ConnectionNotFound, ReceiveTimeout, UnsupportedFeature
from .params import PriorityArg, SendToOptions, TransportArg
from .sansio.events import Message
from .sansio.headers import HeaderValue

__all__ = ["MessagingAPI"]


class MessagingAPI(ServiceParts):
    """Request/reply, and the inbox: ``receive()`` / ``messages()``."""

    async def request(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                      timeout: float | None = None,
                      headers: Mapping[str, HeaderValue] | None = None,
                      priority: PriorityArg = "normal", stream: int = 0) -> Message:
        """Send a request and return the peer's answer (a :class:`Message`).

        The peer's handler answers by returning bytes or with ``await msg.reply(data)``;
        the deadline (``timeout``, the service's by default) travels with the request and a
        peer that gets it later does not run its handler. Raises ``RequestTimeout`` after
        the deadline, ``NoResponder`` when the peer answers with an error (no handler
        replies there, it raised, or the deadline had passed), ``RequestCancelled`` when
        the connection is given up, ``SendTimeout`` when ``max_inflight_requests`` stay in
        flight until the deadline, ``UnsupportedFeature`` on a raw connection. Requests
        survive a reconnection (the session resumes): each is answered once, or fails.
        """
        if type(data) is not bytes and not isinstance(data, BYTES_LIKE):
            raise not_bytes(data)
        conn = self._conns.get(conn_id)
        if conn is None:
            group = self._groups.get(conn_id)
            if group is None:
                self._check_running()
                raise ConnectionNotFound(conn_id)
            return await group.request(lambda member, left: self.request(  # a member's
                member, data, timeout=left, headers=headers, priority=priority,
                stream=stream), stream, self.options.timeout if timeout is None else timeout)
        if not conn.native:
            raise UnsupportedFeature(f"request() needs the native framing: connection "
                                     f"{conn_id} to {conn.endpoint} is raw")
        timeout = self.options.timeout if timeout is None else timeout
        prio = priority_of(priority)
        opts = conn.options
        return await self._exchange.request(
            conn, partial(conn.ready_link, timeout), data, timeout, headers, prio, stream,
            opts.compression, opts.compression_min_size)

    async def request_to(self, host: str, port: int, data: bytes | bytearray | memoryview, *,
                         transport: TransportArg = "tcp", ssl: bool | None = None,
                         ssl_context: ssl_module.SSLContext | None = None,
                         timeout: float | None = None,
                         headers: Mapping[str, HeaderValue] | None = None,
                         priority: PriorityArg = "normal", stream: int = 0,
                         **options: Unpack[SendToOptions]) -> Message:
        """:meth:`request` through the endpoint's connection pool (as :meth:`send_to`)."""
        self._check_running()
        if type(data) is not bytes and not isinstance(data, BYTES_LIKE):
            raise not_bytes(data)
        assert self._pools is not None
        answers: list[Message] = []

        async def ask(conn_id: int, payload: bytes | bytearray | memoryview,
                      prio: PriorityArg, strm: int, left: float) -> None:
            answers.append(await self.request(conn_id, payload, timeout=left,
                                              headers=headers, priority=prio, stream=strm))

        await self._pools.send(host, port, data, transport, ssl, ssl_context, priority,
                               stream, timeout, options, send=ask)
        return answers[0]

    async def receive(self, conn_id: int | None = None,
                      timeout: float | None = None) -> Message:
        """The next message from any connection (or from ``conn_id``).

        Raises ``ReceiveTimeout`` (a ``TimeoutError``) after ``timeout`` s (None waits for
        ever), and ``ConnectionNotFound`` once ``conn_id`` is gone for good (disconnected,
        not reconnecting) and its messages were all taken, also while waiting.
        """
        if not self._running:
            self._check_running()
        conn = None
        if conn_id is not None:
            conn = self._conns.get(conn_id)
            if conn is None:
                msg = self._inbox.get_nowait(conn_id)
                if msg is not None:
                    return msg
                raise ConnectionNotFound(conn_id)
        inbox = self._inbox
        loop: asyncio.AbstractEventLoop | None = None
        deadline = None
        while True:
            msg = inbox.get_nowait(conn_id) if inbox.size else None
            if msg is None:
                if loop is None:  # one loop look-up and one deadline for the whole call
                    # the connection's own (get_running_loop costs a getpid syscall)
                    loop = asyncio.get_running_loop() if conn is None else conn.loop
                    deadline = None if timeout is None else loop.time() + timeout
                elif conn_id is not None and conn_id not in self._conns:
                    raise ConnectionNotFound(conn_id)  # it went while we waited, drained
                fut = inbox.waiter(conn_id, loop, deadline)  # awaited here: one frame
                try:
                    msg = await fut
                except TimeoutError:
                    where = "any connection" if conn_id is None else f"connection {conn_id}"
                    raise ReceiveTimeout(f"no message from {where} within {timeout:g} s"
                                         ) from None
                except BaseException:  # cancelled: a message handed over goes back
                    inbox.give_back(conn_id, fut)
                    raise
                finally:
                    if not fut.done():
                        fut.cancel()
                if msg is not None:  # handed over (Inbox.put): a plain message
                    return msg
                continue  # a message may have come: look again
            if not msg.flags or not self._responder.expired(msg, self._responder.clock()):
                return msg

    async def receive_many(self, conn_id: int | None = None, max_messages: int = 1000,
                           timeout: float | None = None) -> list[Message]:
        """The messages waiting (at least one, at most ``max_messages``), from any connection
        or from ``conn_id``: one await for many messages. Without ``conn_id`` the connections
        take turns, each giving what it has, in its order. Raises ``ReceiveTimeout`` when
        none came within ``timeout`` s (None waits for ever), and ``ConnectionNotFound`` as
        :meth:`receive` does."""
        self._check_running()
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        inbox = self._inbox
        if conn_id is not None and conn_id not in self._conns:
            msgs = self._fresh(inbox.get_many_nowait(conn_id, max_messages))
            if msgs:
                return msgs
            raise ConnectionNotFound(conn_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                msgs = await inbox.get_many(conn_id, max_messages, deadline)
            except TimeoutError:
                where = "any connection" if conn_id is None else f"connection {conn_id}"
                raise ReceiveTimeout(f"no message from {where} within {timeout:g} s"
                                     ) from None
            msgs = self._fresh(msgs)
            if msgs:
                return msgs
            if conn_id is not None and conn_id not in self._conns:
                raise ConnectionNotFound(conn_id)  # it went while we waited, drained

    def _fresh(self, msgs: list[Message]) -> list[Message]:
        """``msgs`` without those past their ttl (a request past its deadline is answered
        so, as ``receive()`` does)."""
        r = self._responder
        if not any(m.flags for m in msgs):
            return msgs
        now = r.clock()
        return [m for m in msgs if not m.flags or not r.expired(m, now)]

    async def messages(self, conn_id: int | None = None) -> AsyncIterator[Message]:
        """Iterate over received messages until the service stops."""
        while self._running:
            msg = await self._inbox.get(conn_id, None)
            if not msg.flags or not self._responder.expired(msg, self._responder.clock()):
                yield msg
