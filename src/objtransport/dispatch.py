"""Handing received messages to a user handler, in order, with backpressure.

A plain function is called inline, once per message, as the chunk that carried the message
is decoded (the cheapest path). A coroutine function gets one task per connection that awaits
it message after message; while that task is behind by more than ``max_backlog`` messages the
connection stops reading. Exceptions from a handler are counted, and logged per connection
with their traceback: the first :data:`LOG_BURST` per minute, then one summary line with the
count (:class:`~.loglimit.LogBudget`). They never close the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .exceptions import ConnectionClosed, ConnectionNotReady
from .logfields import log_fields
from .loglimit import LogBudget
from .sansio.events import Message, Received, as_message, new_message

__all__ = ["LOG_BURST", "Handler", "HandlerRunner"]

#: handler exceptions logged per connection and minute; the rest are counted and summarised
LOG_BURST = 10

log = logging.getLogger("objtransport.handler")

Handler = Callable[[Message], Any] | Callable[[Message], Awaitable[Any]]
FlowControl = Callable[[bool], None]


class HandlerRunner:
    """Runs one handler for one connection."""

    def __init__(self, handler: Callable[[Any], Any], conn: Any, flow: FlowControl,
                 tasks: set[asyncio.Task[None]], max_backlog: int,
                 on_error: Callable[[Any, BaseException], None],
                 responder: Any = None) -> None:
        self.handler = handler
        #: answers requests (:class:`~.requests.Responder`); messages with a meta block
        #: (requests, expiring messages) go through it
        self.responder = responder
        self.conn = conn  # for conn.id, conn.transport_name and conn.peer_address
        self.conn_id = conn.id
        self.flow = flow
        self.tasks = tasks
        self.max_backlog = max_backlog
        self.on_error = on_error
        self.is_async = inspect.iscoroutinefunction(handler)
        self.errors = 0
        self._log_budget = LogBudget(LOG_BURST, 60.0)
        self._backlog: deque[Received] = deque()
        self._task: asyncio.Task[None] | None = None
        self._paused = False

    def deliver(self, msgs: list[Received], nbytes: int) -> None:
        """The messages one read brought (``nbytes``: their payload bytes)."""
        if not self.is_async:
            handler = self.handler
            cid = self.conn.id
            tname = self.conn.transport_name
            peer = self.conn.peer_address
            identity = self.conn.identity
            new = new_message
            for m in msgs:
                try:
                    # the Message is built here and usually freed right after the call
                    if type(m) is bytes:
                        msg = new(Message)  # a plain message: its five fields (events.py)
                        msg.data = m
                        msg.conn_id = cid
                        msg.transport = tname
                        msg.peer = peer
                        msg.identity = identity
                        handler(msg)
                    else:
                        self._call(m, identity)
                except Exception as exc:  # the user's bug must not kill the connection
                    self._failed(exc)
            return
        self._backlog.extend(msgs)
        if len(self._backlog) > self.max_backlog and not self._paused:
            self._paused = True
            self.flow(True)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"objtransport-handler-{self.conn_id}")
            self.tasks.add(self._task)
            self._task.add_done_callback(self.tasks.discard)

    async def _run(self) -> None:
        backlog = self._backlog
        handler: Callable[[Message], Awaitable[Any]] = self.handler
        try:
            conn = self.conn
            while backlog:
                msg = as_message(backlog.popleft(), conn.id, conn.transport_name,
                                 conn.peer_address)
                msg.identity = conn.identity
                try:
                    if msg.flags and self.responder is not None:
                        await self._await_flagged(msg)
                    else:
                        await handler(msg)
                except Exception as exc:
                    self._failed(exc)
                if self._paused and len(backlog) <= self.max_backlog // 2:
                    self._paused = False
                    self.flow(False)
        finally:
            self._task = None

    def _call(self, msg: Received, identity: str | None) -> None:
        """A plain handler and a message that is not a plain payload."""
        assert isinstance(msg, Message)
        msg.identity = identity
        if msg.flags and self.responder is not None:
            self._call_flagged(msg)
        else:
            self.handler(msg)

    def _call_flagged(self, msg: Message) -> None:
        """A plain handler and a message with a meta block: skip it if it expired; answer
        a request with what the handler returns (or an error)."""
        r = self.responder
        if r.expired(msg, r.clock()):
            return
        if not msg.request_id:
            self.handler(msg)
            return
        try:
            result = self.handler(msg)
        except Exception as exc:
            r.handler_failed(msg, exc)
            raise
        r.after_handler(msg, result, wait=False)

    async def _await_flagged(self, msg: Message) -> None:
        """As :meth:`_call_flagged`, for a coroutine handler."""
        r = self.responder
        if r.expired(msg, r.clock()):
            return
        handler: Callable[[Message], Awaitable[Any]] = self.handler
        if not msg.request_id:
            await handler(msg)
            return
        try:
            result = await handler(msg)
        except Exception as exc:
            r.handler_failed(msg, exc)
            raise
        waiting = r.after_handler(msg, result, wait=True)
        if waiting is not None:
            await waiting

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if isinstance(exc, (ConnectionNotReady, ConnectionClosed)) \
                and getattr(self.conn, "closing", False):
            # a reply to a connection being closed (e.g. by stop()): expected, not a bug
            log.info("handler for connection %s: %s (the connection is closing)",
                     self.conn_id, exc, extra=self._log_fields())
        else:
            self._log_failure(exc)
        self.on_error(self.conn, exc)

    def _log_failure(self, exc: BaseException) -> None:
        budget = self._log_budget
        write, missed = budget.take(time.monotonic())
        if missed:
            self._log_suppressed(missed)
        if not write:
            return
        last = (f"; the next ones within {budget.interval:g} s are counted in "
                "metrics.handler_errors and summarised") if budget.exhausted else ""
        log.error("handler for connection %s raised %r%s", self.conn_id, exc, last,
                  exc_info=exc, extra=self._log_fields())

    def _log_suppressed(self, n: int) -> None:
        log.error("handler for connection %s raised %d more exception(s), not logged one "
                  "by one (at most %d a minute; counted in metrics.handler_errors)",
                  self.conn_id, n, LOG_BURST, extra=self._log_fields())

    def _log_fields(self) -> dict[str, object]:
        return log_fields(self.conn_id, getattr(self.conn, "endpoint", ""))

    async def drain(self) -> None:
        """Wait until the backlog is handled."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        missed = self._log_budget.flush()
        if missed:
            self._log_suppressed(missed)
