"""Where received messages wait for ``receive()`` / ``messages()``, with backpressure.

Each connection has its own FIFO. ``get()`` without a connection takes from the connections
that have messages in turn (round robin), so one busy peer cannot starve the others, and the
order of each connection's messages is kept. A connection whose queue holds more than
``max_messages`` messages or ``max_bytes`` bytes is asked to pause reading (the peer is then
slowed by TCP flow control); it resumes when its queue drains to half.

One plain message that finds its connection's queue empty and a ``receive()`` (or ``get()``)
waiting on that connection is handed to the waiter directly (its future's result), not
queued: the waiter returns it without looking at the queue; a wait that ends otherwise
(cancelled) puts it back at the head of the queue (:meth:`Inbox.give_back`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from .deadlines import SharedDeadlines
from .sansio.events import Message, Received, as_message, new_message

__all__ = ["Inbox"]

FlowControl = Callable[[bool], None]  # called with True to pause reading, False to resume
#: a wait for a connection's next message: done with that message when one was handed over
#: (:meth:`_Queue.put`), else with None (look at the queue) or TimeoutError
Waiter = asyncio.Future[Message | None]


#: what a queue holds until its first message / first waiter: shared and never changed (an
#: empty deque costs ~760 bytes, two per connection); only put_many and _waiters_of
#: replace them with a queue's own deque before adding to it
_NO_ITEMS: deque[Received] = deque()
_NO_WAITERS: deque[Waiter] = deque()


class _Queue:
    """One connection's messages; :meth:`put` is the connection's delivery once registered
    (``conn.deliver``: one call per chunk of messages)."""

    __slots__ = ("items", "nbytes", "paused", "flow", "waiters", "conn", "conn_id", "inbox",
                 "ready", "any_waiters")

    def __init__(self, inbox: Inbox, conn_id: int, flow: FlowControl | None,
                 conn: Any = None) -> None:
        self.items = _NO_ITEMS
        self.conn = conn  # has .transport_name, .peer_address and .identity
        self.conn_id = conn_id
        self.nbytes = 0
        self.paused = False
        self.flow = flow
        self.waiters = _NO_WAITERS
        self.inbox = inbox  # its limits and size
        self.ready, self.any_waiters = inbox.ready_deque, inbox.any_waiters

    def put(self, msgs: list[Received], nbytes: int) -> None:
        """Queue messages of the connection (``nbytes`` = their payload bytes), or hand a
        lone plain one to the first waiter on the connection when none is queued."""
        items = self.items
        waiters = self.waiters
        if waiters and not items and len(msgs) == 1 and type(msgs[0]) is bytes:
            conn = self.conn
            while conn is not None and waiters:  # a connection gone: the queue's way
                w = waiters.popleft()
                if not w.done():  # plain_message inline (one call fewer per message)
                    msg = new_message(Message)
                    msg.data = msgs[0]
                    msg.conn_id = self.conn_id
                    msg.transport = conn.transport_name
                    msg.peer = conn.peer_address
                    msg.identity = conn.identity
                    w.set_result(msg)
                    return
        if not items:
            self.ready.append(self.conn_id)
            if items is _NO_ITEMS:
                items = self.items = deque()
        items.extend(msgs)
        self.nbytes += nbytes
        inbox = self.inbox
        inbox.size += len(msgs)
        if not self.paused and self.flow is not None and (
                len(items) > inbox.max_messages or self.nbytes > inbox.max_bytes):
            self.paused = True
            self.flow(True)
        while waiters:  # _wake inline (one waiter per receive() waiting on it)
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
        if self.any_waiters:
            _wake(self.any_waiters)


class Inbox:
    """Bounded per-connection queues of received messages."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queues: dict[int, _Queue] = {}
        #: connections with messages, in turn, and the waiters for any connection's (each
        #: deque is this inbox's for life: its queues hold them too)
        self._ready = self.ready_deque = deque[int]()
        self._waiters = self.any_waiters = deque[Waiter]()
        self._deadlines = SharedDeadlines()
        self.size = 0

    def register(self, conn_id: int, flow: FlowControl | None,
                 conn: Any) -> Callable[[list[Received], int], None]:
        """Create the queue of a connection; ``conn`` gives messages their ``transport`` and
        ``peer`` (``conn.transport_name``, ``conn.peer_address``) when they are taken.
        Returns what queues its messages (``(msgs, nbytes)``, as :meth:`put_many`) while it
        stays registered (a queue without ``flow`` is one whose connection is gone: it is
        forgotten once empty, so a registered one gets a flow control that does nothing)."""
        if flow is None:
            flow = _no_flow
        q = self._queues.setdefault(conn_id, _Queue(self, conn_id, flow))
        q.flow, q.conn = flow, conn
        return q.put

    def unregister(self, conn_id: int) -> None:
        """Forget a connection once its queue is empty (messages already queued stay)."""
        q = self._queues.get(conn_id)
        if q is not None:
            q.flow = None
            if not q.items:
                del self._queues[conn_id]
                for w in q.waiters:
                    if not w.done():
                        w.set_result(None)

    def put_many(self, conn_id: int, msgs: list[Received], nbytes: int) -> None:
        """Queue messages of one connection (``nbytes`` = their payload bytes)."""
        q = self._queues.get(conn_id)
        if q is None:
            q = self._queues[conn_id] = _Queue(self, conn_id, None)
        q.put(msgs, nbytes)

    def get_nowait(self, conn_id: int | None = None) -> Message | None:
        if conn_id is None:
            while self._ready:
                cid = self._ready[0]
                q = self._queues.get(cid)
                if q is None or not q.items:
                    self._ready.popleft()
                    continue
                msg = self._pop(cid, q)
                if q.items:
                    self._ready.rotate(-1)
                else:
                    self._ready.popleft()
                return msg
            return None
        q = self._queues.get(conn_id)
        if q is None or not q.items:
            return None
        items: deque[Any] = q.items
        if type(items[0]) is bytes and q.conn is not None:  # _pop's common case inline
            item = items.popleft()
            msg = new_message(Message)  # a plain payload: its five fields (events.py)
            msg.data = item
            msg.conn_id = conn_id
            conn = q.conn
            msg.transport = conn.transport_name
            msg.peer = conn.peer_address
            msg.identity = conn.identity
            q.nbytes -= len(item)
            self.size -= 1
            if q.paused or q.flow is None:  # else _settle has nothing to do
                self._settle(conn_id, q)
        else:
            msg = self._pop(conn_id, q)
        if not items:
            try:
                self._ready.remove(conn_id)
            except ValueError:
                pass
        return msg

    def get_many_nowait(self, conn_id: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages (of ``conn_id`` if given; else from the connections
        with messages in turn, as many of each as it has), in each connection's order."""
        out: list[Message] = []
        if conn_id is not None:
            q = self._queues.get(conn_id)
            if q is not None and q.items:
                self._take(conn_id, q, limit, out)
                if not q.items:
                    try:
                        self._ready.remove(conn_id)
                    except ValueError:
                        pass
            return out
        ready = self._ready
        while ready and len(out) < limit:
            cid = ready.popleft()
            q = self._queues.get(cid)
            if q is None or not q.items:
                continue
            self._take(cid, q, limit - len(out), out)
            if q.items:
                ready.append(cid)  # its turn comes again after the others
        return out

    def _take(self, conn_id: int, q: _Queue, limit: int, out: list[Message]) -> None:
        """Move up to ``limit`` of ``q``'s messages to ``out`` as messages."""
        items = q.items
        k = min(limit, len(items))
        conn = q.conn
        cid = conn_id
        tname = conn.transport_name if conn is not None else ""
        peer = conn.peer_address if conn is not None else None
        identity = conn.identity if conn is not None else None
        new = new_message
        pop = items.popleft
        append = out.append
        nbytes = 0
        for _ in range(k):
            item = pop()
            if type(item) is bytes:
                msg = new(Message)
                msg.data = item
                msg.conn_id = cid
                msg.transport = tname
                msg.peer = peer
            else:
                assert isinstance(item, Message)
                msg = item
            msg.identity = identity
            nbytes += len(msg.data)
            append(msg)
        q.nbytes -= nbytes
        self.size -= k
        self._settle(conn_id, q)

    def _settle(self, conn_id: int, q: _Queue) -> None:
        """After messages were taken from ``q``: resume reading at half; forget a queue
        whose connection is gone once it is empty."""
        if q.paused and len(q.items) <= self.max_messages // 2 and q.nbytes <= self.max_bytes // 2:
            q.paused = False
            if q.flow is not None:
                q.flow(False)
        if not q.items and q.flow is None:
            del self._queues[conn_id]

    async def get_many(self, conn_id: int | None, limit: int,
                       deadline: float | None) -> list[Message]:
        """Up to ``limit`` messages (see :meth:`get_many_nowait`), waiting for one if none
        is queued; raises TimeoutError at ``deadline`` (the loop's clock). Empty when the
        wait was woken with nothing to take (the connection went: the caller looks)."""
        out = self.get_many_nowait(conn_id, limit)
        if out:
            return out
        got = await self._wait(conn_id, asyncio.get_running_loop(), deadline)
        if got is None:
            return self.get_many_nowait(conn_id, limit)
        return [got, *self.get_many_nowait(conn_id, limit - 1)]  # got was handed over

    def _pop(self, conn_id: int, q: _Queue) -> Message:
        item = q.items.popleft()
        conn = q.conn
        if type(item) is bytes:
            msg = plain_message(item, conn_id, conn)
        else:
            msg = as_message(item, conn_id, "", None)
            if conn is not None:
                msg.identity = conn.identity
        q.nbytes -= len(msg.data)
        self.size -= 1
        if q.paused or q.flow is None:  # else _settle has nothing to do
            self._settle(conn_id, q)
        return msg

    async def get(self, conn_id: int | None, timeout: float | None) -> Message:
        """The next message (of ``conn_id`` if given); raises TimeoutError after ``timeout``."""
        msg = self.get_nowait(conn_id)
        if msg is not None:
            return msg
        loop = asyncio.get_running_loop()
        return await self.get_until(conn_id, loop,
                                    None if timeout is None else loop.time() + timeout)

    async def get_until(self, conn_id: int | None, loop: asyncio.AbstractEventLoop,
                        deadline: float | None) -> Message:
        """:meth:`get` once nothing is waiting: wait for the next message until
        ``deadline`` (``loop``'s time; None: for ever), then raise TimeoutError."""
        while True:
            msg = await self._wait(conn_id, loop, deadline)
            if msg is None:
                msg = self.get_nowait(conn_id)
            if msg is not None:
                return msg

    def waiter(self, conn_id: int | None, loop: asyncio.AbstractEventLoop,
               deadline: float | None) -> Waiter:
        """A future done when a message may have come (for ``conn_id``, or any), with
        that message if it was handed over (else None); it fails with TimeoutError at
        ``deadline``. No timer per wait: one for every waiter's
        deadline (SharedDeadlines). The caller awaits it in its own coroutine (one frame
        fewer to resume per message than awaiting :meth:`get_until`), cancels it if it
        stops waiting before it is done, and calls :meth:`give_back` if an exception
        ends the wait."""
        if conn_id is None:
            waiters = self._waiters
        else:  # _waiters_of, the common case inline
            q = self._queues.get(conn_id)
            waiters = (q.waiters if q is not None and q.waiters is not _NO_WAITERS
                       else self._waiters_of(conn_id))
        fut: Waiter = loop.create_future()
        waiters.append(fut)
        if deadline is not None:  # SharedDeadlines.add's common case inline
            dl = self._deadlines
            if deadline >= dl.armed_at and dl.room:
                dl.room -= 1
                dl.entries.append((deadline, fut))
            else:
                dl.add(loop, fut, deadline)
        return fut

    async def _wait(self, conn_id: int | None, loop: asyncio.AbstractEventLoop,
                    deadline: float | None) -> Message | None:
        """Until a message may have come (for ``conn_id``, or any): the message handed
        over, or None; raises TimeoutError at ``deadline`` (see :meth:`waiter`)."""
        fut = self.waiter(conn_id, loop, deadline)
        try:
            return await fut
        except BaseException:
            self.give_back(conn_id, fut)
            raise
        finally:
            if not fut.done():
                fut.cancel()

    def give_back(self, conn_id: int | None, fut: Waiter) -> None:
        """A wait ended by an exception (its task cancelled) after a message was handed to
        it: the message goes back to the head of its connection's queue, and the other
        waiters on the connection look."""
        if (conn_id is None or not fut.done() or fut.cancelled()
                or fut.exception() is not None):
            return
        msg = fut.result()
        if msg is None:
            return
        q = self._queues.get(conn_id)
        if q is None:  # forgotten meanwhile: kept as put_many keeps what comes late
            q = self._queues[conn_id] = _Queue(self, conn_id, None)
        if not q.items:
            self._ready.append(conn_id)
            if q.items is _NO_ITEMS:
                q.items = deque()
        q.items.appendleft(msg)
        q.nbytes += len(msg.data)
        self.size += 1
        _wake(q.waiters)

    def _waiters_of(self, conn_id: int) -> deque[Waiter]:
        q = self._queues.get(conn_id)
        if q is None:
            q = self._queues[conn_id] = _Queue(self, conn_id, None)
        if q.waiters is _NO_WAITERS:
            q.waiters = deque()
        return q.waiters

    def close(self) -> None:
        """Wake every waiter (they will find no message and wait again or time out)."""
        self._deadlines.close()
        _wake(self._waiters)
        for q in self._queues.values():
            _wake(q.waiters)


def plain_message(item: bytes, conn_id: int, conn: Any) -> Message:
    """The message of a plain payload of connection ``conn`` (None: gone)."""
    msg = new_message(Message)  # its five fields (events.py)
    msg.data = item
    msg.conn_id = conn_id
    if conn is not None:
        msg.transport = conn.transport_name
        msg.peer = conn.peer_address
        msg.identity = conn.identity
    else:  # queued after its connection left (put_many): as _take does
        msg.transport, msg.peer, msg.identity = "", None, None
    return msg


def _no_flow(pause: bool) -> None:
    """The flow control of a connection registered without one."""


def _wake(waiters: deque[Waiter]) -> None:
    while waiters:
        w = waiters.popleft()
        if not w.done():
            w.set_result(None)
