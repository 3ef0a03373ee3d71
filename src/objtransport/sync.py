"""A blocking mirror of :class:`objtransport.NetworkTransport`, for code that is not async.

::

    from objtransport.sync import NetworkTransport

    with NetworkTransport() as net:
        listener = net.listen("127.0.0.1", 0, handler=lambda msg: msg.data.upper())
        conn = net.connect("127.0.0.1", listener.port)
        print(net.request(conn, b"hello", timeout=2.0).data)   # b'HELLO'

One event loop runs in a background thread (as ``websockets.sync`` and grpc's blocking API
do); every method hands a coroutine to it and waits for the result, so any number of threads
may call one instance at once. **Handlers run in that loop thread**: a slow handler holds up
every connection of the instance (reading, sending, keepalives), so keep them short or hand
the work to your own threads; from a handler, answer by returning bytes or with
:meth:`NetworkTransport.send_nowait` (a blocking method called from the loop thread raises
``RuntimeError`` instead of deadlocking).

The loop stops with :meth:`close` (or the ``with`` block); an instance that is garbage
collected, or still open when the interpreter exits, is closed then, within ``timeout``
seconds (queued messages go out first, as ``stop()`` does), never hanging the exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, Unpack

from . import service
from .connection import ConnectionInfo
from .dispatch import Handler
from .exceptions import ServiceNotRunning, TransportError
from .listener import Listener
from .params import (
    ClientFraming,
    ConnectOptions,
    FramingName,
    ListenOptions,
    PriorityArg,
    SendToOptions,
    ServiceOptions,
    TransportArg,
)
from .sansio.events import Message
from .sansio.headers import HeaderValue
from .service import TransportMetrics
from .sync_prefetch import PREFETCH, Prefetched

__all__ = ["NetworkTransport"]

T = TypeVar("T")

#: how long closing at garbage collection or interpreter exit may take, at most
_EXIT_TIMEOUT = 2.0


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        # as asyncio.run does: what still runs (a receive() blocked in another thread) is
        # cancelled and awaited; its caller gets ServiceNotRunning
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
              net: service.NetworkTransport | None, timeout: float,
              calls: set[concurrent.futures.Future[Any]] | None = None) -> None:
    """Stop the service (bounded), then the loop, then join the thread (bounded); calls
    still blocked in other threads (a ``receive`` without timeout) end with
    ``ServiceNotRunning``."""
    try:
        _stop(loop, thread, net, timeout)
    finally:
        for fut in list(calls or ()):
            fut.cancel()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
          net: service.NetworkTransport | None, timeout: float) -> None:
    if loop.is_closed() or not thread.is_alive():
        return
    if net is not None and threading.get_ident() != thread.ident:
        fut = asyncio.run_coroutine_threadsafe(net.stop(timeout), loop)
        try:
            fut.result(timeout + 1.0)
        except Exception:  # stopping is best effort here: the loop goes anyway
            fut.cancel()
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # closed meanwhile
        return
    if threading.get_ident() != thread.ident:
        thread.join(timeout + 1.0)


class NetworkTransport:
    """The blocking service: ``with NetworkTransport() as net: ...``. Takes the keyword
    arguments of :class:`objtransport.NetworkTransport`; ``close_timeout`` bounds how long
    closing (also at exit) waits for queued messages."""

    def __init__(self, *, transport: TransportArg = "tcp", close_timeout: float = _EXIT_TIMEOUT,
                 **options: Unpack[ServiceOptions]) -> None:
        self.close_timeout = close_timeout
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=_run_loop, args=(self._loop, ready),
                                        name="objtransport-sync", daemon=True)
        self._thread.start()
        ready.wait()
        self._closed = False
        #: calls waiting for the loop thread (cancelled if the instance closes under them)
        self._calls: set[concurrent.futures.Future[Any]] = set()
        #: what messages() fetched ahead and has not handed out (sync_prefetch.py)
        self._prefetched = Prefetched()

        async def make() -> service.NetworkTransport:
            return await service.NetworkTransport(transport=transport, **options).start()

        try:
            self._net = self._call(make())
        except BaseException:
            _shutdown(self._loop, self._thread, None, close_timeout)
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._thread,
                                           self._net, close_timeout, self._calls)

    # -- plumbing ----------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop thread and wait for its result (or exception)."""
        if threading.get_ident() == self._thread.ident:
            coro.close()
            raise RuntimeError("a blocking objtransport.sync method was called from a "
                               "handler (the loop thread): return the reply, or use "
                               "send_nowait")
        if self._closed:
            coro.close()
            raise ServiceNotRunning("objtransport.sync.NetworkTransport is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        self._calls.add(fut)
        try:
            return fut.result(timeout)
        except concurrent.futures.CancelledError:
            raise ServiceNotRunning("the service stopped during the call") from None
        except BaseException:
            fut.cancel()  # e.g. KeyboardInterrupt in the calling thread
            raise
        finally:
            self._calls.discard(fut)

    def _call_fn(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kwargs)

        return self._call(run())

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the service (queued messages go out first, up to ``close_timeout``), then
        the loop thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()  # runs _shutdown once

    def __enter__(self) -> NetworkTransport:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the API -----------------------------------------------------------------------------
    def listen(self, host: str = "127.0.0.1", port: int = 0, *,
               transport: TransportArg = "tcp", handler: Handler | None = None,
               framing: FramingName = "native", batch: bool = False,
               **options: Unpack[ListenOptions]) -> Listener:
        """Start a listener (read its port from ``.port``). ``handler`` runs in the loop
        thread; for a request, the bytes it returns are the reply. ``batch=True``: it is
        called once per read with a :class:`~objtransport.Batch`."""
        return self._call(self._net.listen(host, port, transport=transport, handler=handler,
                                           framing=framing, batch=batch, **options))

    def connect(self, host: str, port: int, *, transport: TransportArg = "tcp",
                framing: ClientFraming = "native", handler: Handler | None = None,
                batch: bool = False, **options: Unpack[ConnectOptions]) -> int:
        """Open a connection; returns its id."""
        return self._call(self._net.connect(host, port, transport=transport, framing=framing,
                                            handler=handler, batch=batch, **options))

    def disconnect(self, conn_id: int, timeout: float | None = None) -> None:
        self._call(self._net.disconnect(conn_id, timeout))

    def send_data(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                  priority: PriorityArg = "normal", stream: int = 0, text: bool = False,
                  timeout: float | None = None, wait_ack: bool = False,
                  headers: Mapping[str, HeaderValue] | None = None,
                  ttl: float | None = None) -> None:
        """Queue one message; returns once it is queued (as the async ``send_data``)."""
        self._call(self._net.send_data(conn_id, data, priority=priority, stream=stream,
                                       text=text, timeout=timeout, wait_ack=wait_ack,
                                       headers=headers, ttl=ttl))

    def send_nowait(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                    priority: PriorityArg = "normal", stream: int = 0) -> None:
        """Queue one message without waiting; the one sending method a handler (in the loop
        thread) may call."""
        if threading.get_ident() == self._thread.ident:
            self._net.send_nowait(conn_id, data, priority=priority, stream=stream)
        else:
            self._call_fn(self._net.send_nowait, conn_id, data, priority=priority,
                          stream=stream)

    def send_to(self, host: str, port: int, data: bytes | bytearray | memoryview, *,
                transport: TransportArg = "tcp", priority: PriorityArg = "normal",
                stream: int = 0, timeout: float | None = None,
                **options: Unpack[SendToOptions]) -> int:
        return self._call(self._net.send_to(host, port, data, transport=transport,
                                            priority=priority, stream=stream,
                                            timeout=timeout, **options))

    def send_json(self, conn_id: int, obj: Any, **kwargs: Any) -> None:
        self._call(self._net.send_json(conn_id, obj, **kwargs))

    def send_msgpack(self, conn_id: int, obj: Any, **kwargs: Any) -> None:
        self._call(self._net.send_msgpack(conn_id, obj, **kwargs))

    def request(self, conn_id: int, data: bytes | bytearray | memoryview, *,
                timeout: float | None = None,
                headers: Mapping[str, HeaderValue] | None = None,
                priority: PriorityArg = "normal", stream: int = 0) -> Message:
        """Send a request and block for its answer (see the async ``request``)."""
        return self._call(self._net.request(conn_id, data, timeout=timeout, headers=headers,
                                            priority=priority, stream=stream))

    def request_to(self, host: str, port: int, data: bytes | bytearray | memoryview, *,
                   transport: TransportArg = "tcp", timeout: float | None = None,
                   headers: Mapping[str, HeaderValue] | None = None,
                   **options: Unpack[SendToOptions]) -> Message:
        return self._call(self._net.request_to(host, port, data, transport=transport,
                                               timeout=timeout, headers=headers, **options))

    def reply(self, msg: Message, data: bytes | bytearray | memoryview, *,
              headers: Mapping[str, HeaderValue] | None = None) -> None:
        """Answer a request obtained from :meth:`receive` or :meth:`messages`."""

        async def run() -> None:
            await msg.reply(data, headers=headers)

        self._call(run())

    def receive(self, conn_id: int | None = None, timeout: float | None = None) -> Message:
        """The next message (from any connection, or ``conn_id``); ``ReceiveTimeout``
        after ``timeout`` seconds (None: wait for ever)."""
        kept = self._prefetched.take(conn_id, 1)
        if kept:
            return kept[0]
        return self._call(self._net.receive(conn_id, timeout))

    def receive_many(self, conn_id: int | None = None, max_messages: int = 1000,
                     timeout: float | None = None) -> list[Message]:
        """The messages waiting (at least one, at most ``max_messages``) in one call: the
        cheap way to receive many (see the async ``receive_many``)."""
        kept = self._prefetched.take(conn_id, max_messages)
        if kept:
            return kept
        return self._call(self._net.receive_many(conn_id, max_messages, timeout))

    def messages(self, conn_id: int | None = None) -> Iterator[Message]:
        """``for msg in net.messages():`` until the instance is closed. It takes what is
        waiting (up to 256 messages) in one call to the loop thread and yields them one by
        one; those not yet yielded when the loop is left are kept for the next
        :meth:`receive`, :meth:`receive_many` or :meth:`messages`."""
        prefetched = self._prefetched
        while not self._closed:
            msgs = prefetched.take(conn_id, PREFETCH)
            if not msgs:
                try:
                    msgs = self._call(self._net.receive_many(conn_id, PREFETCH))
                except (ServiceNotRunning, TransportError):
                    if self._closed or not self._net_running():
                        return
                    raise
            for i, msg in enumerate(msgs):
                try:
                    yield msg
                except GeneratorExit:
                    prefetched.keep(msgs[i + 1:])  # left early: the rest is not lost
                    raise

    def _net_running(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def flush(self, conn_id: int, timeout: float | None = None) -> None:
        self._call(self._net.flush(conn_id, timeout))

    def unconfirmed(self, conn_id: int) -> list[bytes]:
        result: list[bytes] = self._call_fn(self._net.unconfirmed, conn_id)
        return result

    def connections(self) -> list[int]:
        result: list[int] = self._call_fn(self._net.connections)
        return result

    def connection_info(self, conn_id: int) -> ConnectionInfo:
        result: ConnectionInfo = self._call_fn(self._net.connection_info, conn_id)
        return result

    def get_metrics(self) -> TransportMetrics:
        result: TransportMetrics = self._call_fn(self._net.get_metrics)
        return result
