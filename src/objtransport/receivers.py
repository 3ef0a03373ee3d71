"""Where a connection's received messages go: the inbox (``receive()``/``messages()``) or the
connection's handler (:class:`~.dispatch.HandlerRunner`). :meth:`Receivers.attach` binds a
connection's own (``conn.deliver``: the runner's ``deliver`` or the inbox queue's ``put``),
so a chunk of messages goes from the connection to it in one call; :meth:`Receivers.deliver`
is the route of a connection not (or no longer) attached."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from .batch import BatchHandler, BatchRunner
from .connection import Connection
from .counters import ServiceTotals
from .dispatch import Handler, HandlerRunner
from .events import HandlerFailed
from .inbox import Inbox
from .lifecycle import emit
from .sansio.events import Received

__all__ = ["Receivers"]


class Receivers:
    """The inbox and the handler runners, by connection id."""

    def __init__(self, inbox: Inbox, max_backlog: int, tasks: set[asyncio.Task[None]],
                 totals: ServiceTotals) -> None:
        self.inbox = inbox
        self._max_backlog = max_backlog
        self._tasks = tasks
        self._totals = totals
        self._handlers: dict[int, HandlerRunner] = {}
        #: answers requests delivered to handlers (:class:`~.requests.Responder`)
        self.responder: Any = None

    def attach(self, conn: Connection, handler: Handler | BatchHandler | None,
               batch: bool = False) -> None:
        """Messages of ``conn`` go to ``handler`` (one :class:`~.batch.Batch` per read with
        ``batch``), or to the inbox without one."""
        flow = conn.flow_control
        if handler is None:
            conn.deliver = self.inbox.register(conn.id, flow, conn)
        else:
            runner = BatchRunner if batch else HandlerRunner
            r = self._handlers[conn.id] = runner(handler, conn, flow, self._tasks,
                                                 self._max_backlog, self._handler_failed,
                                                 self.responder)
            conn.deliver = r.deliver

    def detach(self, conn: Connection) -> None:
        """The connection is gone: its handler task ends; queued messages stay readable
        (what still comes takes :meth:`deliver`)."""
        conn.deliver = partial(self.deliver, conn)
        runner = self._handlers.pop(conn.id, None)
        if runner is not None:
            runner.cancel()
        self.inbox.unregister(conn.id)

    def deliver(self, conn: Connection, msgs: list[Received], nbytes: int) -> None:
        """Messages decoded from one chunk of ``conn`` (``nbytes`` payload bytes)."""
        runner = self._handlers.get(conn.id)
        if runner is None:
            self.inbox.put_many(conn.id, msgs, nbytes)
        else:
            runner.deliver(msgs, nbytes)

    def _handler_failed(self, conn: Connection, exc: BaseException) -> None:
        """A handler raised (the runner logged it once): count it, publish ``HandlerFailed``."""
        self._totals.handler_errors += 1
        emit(conn, HandlerFailed, error=exc)
