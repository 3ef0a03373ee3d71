"""Batch delivery: a handler that gets one :class:`Batch` per read, not one call per message.

``listen(..., handler=fn, batch=True)`` (or ``connect``) hands ``fn`` the messages one read
of one connection brought, in order, as one object: its cost is per read, not per message
(no :class:`~.sansio.events.Message` is built for a plain payload). ``batch.payloads`` is a
``list[bytes]``, one payload per message.

Messages that are more than a payload (a request, headers, a ttl, a text message, another
stream or priority: see :attr:`Batch.plain`) travel in the same batch, in their place:
``batch.payloads`` still holds their payload, and ``batch.messages`` gives every message of
the batch as a full :class:`~.sansio.events.Message`. A message whose ttl (or a request whose
deadline) had passed on arrival is left out, as the per-message path skips its handler.
Requests are answered with ``msg.reply_nowait(data)`` (any handler) or ``await
msg.reply(data)`` (an ``async def`` one); a request still unanswered when the handler
returns is answered with an error (``NoResponder`` at the requester; ``HANDLER_ERROR`` if
the handler raised), as a per-message handler that returns no bytes.

A plain function runs inline, as the read is decoded. A coroutine function runs in one task
per connection, batch after batch, in order; while more than ``max_backlog`` messages wait
for it the connection stops reading, and resumes at half (as :class:`~.dispatch.HandlerRunner`
does). Exceptions are counted and logged the same way; they never close the connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from operator import countOf
from typing import Any

from .dispatch import HandlerRunner
from .sansio.events import Message, Received, new_message
from .sansio.headers import ReplyStatus

__all__ = ["Batch", "BatchHandler", "BatchRunner"]


class Batch:
    """The messages one read of one connection brought, in order.

    ``conn_id``, ``transport``, ``peer`` and ``identity`` are the connection's (as on a
    :class:`~.sansio.events.Message`); ``payloads`` the payload of each message;
    ``nbytes`` their total size. ``len(batch)`` is the number of messages; iterating gives
    the payloads.
    """

    __slots__ = ("conn_id", "transport", "peer", "identity", "payloads", "nbytes", "_items",
                 "_messages")

    def __init__(self, conn_id: int, transport: str, peer: Any, identity: str | None,
                 payloads: list[bytes], nbytes: int,
                 items: list[Received] | None = None) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.peer = peer
        self.identity = identity
        self.payloads = payloads
        self.nbytes = nbytes
        #: the items as received, when some are full messages (None: all plain payloads)
        self._items = items
        self._messages: list[Message] | None = None

    def __len__(self) -> int:
        return len(self.payloads)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.payloads)

    def __repr__(self) -> str:
        return (f"Batch(conn_id={self.conn_id}, transport={self.transport!r}, "
                f"messages={len(self.payloads)}, nbytes={self.nbytes}, plain={self.plain})")

    @property
    def plain(self) -> bool:
        """Every message is a plain payload (stream 0, priority normal, binary, no headers,
        request or ttl): ``payloads`` says all there is to say."""
        return self._items is None

    @property
    def messages(self) -> list[Message]:
        """Every message of the batch as a full :class:`~.sansio.events.Message`, in order
        (built on first use: for a plain batch this costs what per-message delivery does)."""
        out = self._messages
        if out is None:
            out = self._messages = self._build()
        return out

    @property
    def requests(self) -> list[Message]:
        """The messages that wait for an answer (``msg.reply_nowait`` / ``msg.reply``)."""
        items = self._items
        if items is None:
            return []
        return [m for m in items if isinstance(m, Message) and m.request_id]

    def _build(self) -> list[Message]:
        cid, tname, peer, identity = self.conn_id, self.transport, self.peer, self.identity
        new = new_message
        out: list[Message] = []
        append = out.append
        for item in self.payloads if self._items is None else self._items:
            if type(item) is bytes:
                msg = new(Message)
                msg.data = item
                msg.conn_id = cid
                msg.transport = tname
                msg.peer = peer
                msg.identity = identity
                append(msg)
            else:
                assert isinstance(item, Message)
                append(item)
        return out


BatchHandler = Callable[[Batch], Any] | Callable[[Batch], Awaitable[Any]]


class BatchRunner(HandlerRunner):
    """Runs one batch handler for one connection (errors and logging: the base class's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: reads waiting for an async handler: (messages, payload bytes); their batch is
        #: made when it is handed over (what expired meanwhile is left out then)
        self._reads: deque[tuple[list[Received], int]] = deque()
        self._waiting = 0  # messages in self._reads

    def deliver(self, msgs: list[Received], nbytes: int) -> None:
        if not self.is_async:
            batch = self._batch(msgs, nbytes)
            if batch is None:
                return
            try:
                self.handler(batch)
            except Exception as exc:  # the user's bug must not kill the connection
                self._answer_rest(batch, exc)
                self._failed(exc)
            else:
                self._answer_rest(batch, None)
            return
        self._reads.append((msgs, nbytes))
        self._waiting += len(msgs)
        if self._waiting > self.max_backlog and not self._paused:
            self._paused = True
            self.flow(True)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"objtransport-batch-handler-{self.conn_id}")
            self.tasks.add(self._task)
            self._task.add_done_callback(self.tasks.discard)

    def _batch(self, msgs: list[Received], nbytes: int) -> Batch | None:
        """The batch handed over now (None: every message had expired)."""
        # not all plain payloads? (a scan at C speed: identity compares, ~17 ns a message;
        # `Message in map(type, msgs)` costs twice that, an equality compare each)
        if countOf(map(type, msgs), bytes) != len(msgs):
            return self._mixed(msgs)
        conn = self.conn
        return Batch(conn.id, conn.transport_name, conn.peer_address, conn.identity,
                     msgs, nbytes)  # type: ignore[arg-type]  # all bytes: checked

    def _mixed(self, msgs: list[Received]) -> Batch | None:
        """A batch with full messages among the payloads: expired ones are left out (a
        request past its deadline is answered so), the others get the identity."""
        conn = self.conn
        identity = conn.identity
        r = self.responder
        now = r.clock() if r is not None else 0.0
        items: list[Received] = []
        for m in msgs:
            if type(m) is not bytes:
                assert isinstance(m, Message)
                if m.flags and r is not None and r.expired(m, now):
                    continue
                m.identity = identity
            items.append(m)
        if not items:
            return None
        payloads = [m if type(m) is bytes else m.data for m in items]  # type: ignore[union-attr]
        # (without the expired ones: the payloads' own size here)
        return Batch(conn.id, conn.transport_name, conn.peer_address, identity, payloads,
                     sum(map(len, payloads)), items)

    def _answer_rest(self, batch: Batch, exc: BaseException | None) -> None:
        """The handler is done with ``batch``: answer the requests it did not answer."""
        if batch.plain or self.responder is None:
            return
        r = self.responder
        for msg in batch.requests:
            if exc is not None:
                r.handler_failed(msg, exc)
            elif not msg.replied:
                r.error(msg, ReplyStatus.NO_RESPONDER, "the batch handler did not reply")

    async def _run(self) -> None:
        reads = self._reads
        handler: Callable[[Batch], Awaitable[Any]] = self.handler
        try:
            while reads:
                msgs, nbytes = reads.popleft()
                batch = self._batch(msgs, nbytes)
                if batch is not None:
                    try:
                        await handler(batch)
                    except Exception as exc:
                        self._answer_rest(batch, exc)
                        self._failed(exc)
                    else:
                        self._answer_rest(batch, None)
                self._waiting -= len(msgs)
                if self._paused and self._waiting <= self.max_backlog // 2:
                    self._paused = False
                    self.flow(False)
        finally:
            self._task = None
