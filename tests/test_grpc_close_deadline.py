"""A gRPC connection's close honours the caller's ``timeout`` as a whole, also when the
peer never answers: a plain grpc.aio listener whose handler never reads nor writes. The
close ends in an abort at its deadline, and the link's own reader task (which may still
wait for grpc to report the cancelled call) is waited for within the same deadline, then
cancelled: no fixed waits added up past it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from objtransport import NetworkTransport, SendTimeout  # noqa: E402
from objtransport.drivers.base import StoppableLink  # noqa: E402
from objtransport.drivers.grpc import METHOD, SERVICE, GrpcLink  # noqa: E402
from objtransport.drivers.stream import StreamLink  # noqa: E402
from objtransport.drivers.websocket_link import WebSocketLink  # noqa: E402
from objtransport.events import Overloaded  # noqa: E402
from objtransport.sansio.envelope import encode_payload  # noqa: E402

from .test_grpc_stop import _ours_pending  # noqa: E402

#: what the close may take past its timeout: loop turns and grpc's threads on a loaded
#: 2-vCPU machine (the fixed waits this replaces added 0.5 to 1 s)
MARGIN = 0.25


async def _deaf_server(parked: asyncio.Event, first: int) -> tuple[Any, int]:
    """A grpc.aio server for the Transport service whose ``Connect`` handler never reads
    the client's stream and, after ``first`` messages, never answers (bytes in and out: no
    generated code)."""

    async def connect(request_iterator: Any, context: Any) -> AsyncIterator[bytes]:
        for i in range(first):
            yield encode_payload(b"m%d" % i, False)
        await parked.wait()
        yield b""

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD.rsplit("/", 1)[-1]: grpc.stream_stream_rpc_method_handler(connect)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


#: how the link is found when the close starts: the peer silent from the start; a write
#: stuck on HTTP/2 flow control (1 MiB unread); the reader paused (receive backpressure:
#: the peer's first messages fill a 4-message inbox nobody reads), where cancelling the
#: call does not wake it and only the close's own deadline ends it
CASES = ["silent", "stuck_write", "paused_reader"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("timeout", [0.2, 0.6])
async def test_close_returns_by_its_deadline_when_the_peer_never_answers(
        case: str, timeout: float) -> None:
    parked = asyncio.Event()  # never set
    server, port = await _deaf_server(parked, 20 if case == "paused_reader" else 0)
    client = await NetworkTransport(timeout=5.0, receive_queue_size=4).start()
    loop = asyncio.get_running_loop()
    events = client.events()
    try:
        conn = await client.connect("127.0.0.1", port, transport="grpc", framing="raw",
                                    max_reconnect_attempts=0)
        await client.send_data(conn, b"hello", timeout=1.0)
        if case == "stuck_write":  # past any HTTP/2 window: a write waits on the peer
            with contextlib.suppress(SendTimeout):
                for _ in range(64):
                    await client.send_data(conn, b"x" * 16 * 1024, timeout=0.5)
            assert client.connection_info(conn).pending_bytes > 0
        elif case == "paused_reader":
            async with asyncio.timeout(5):
                while True:
                    ev = await events.get()
                    if isinstance(ev, Overloaded) and ev.what == "paused_reading":
                        break
        started = loop.time()
        await asyncio.wait_for(client.disconnect(conn, timeout=timeout), 10)
        took = loop.time() - started
        assert took <= timeout + MARGIN, (took, timeout)
        # the link's reader ended (or was cancelled and ended) within that time
        pending = _ours_pending()
        assert pending == [], [t.get_stack() for t in pending]
    finally:
        events.close()
        await asyncio.wait_for(client.stop(), 10)
        parked.set()
        await server.stop(None)


def test_only_links_with_their_own_task_are_stoppable() -> None:
    """The owner finds the links to wait for by the ``StoppableLink`` protocol."""
    assert issubclass(GrpcLink, StoppableLink)
    assert not issubclass(StreamLink, StoppableLink)
    assert not issubclass(WebSocketLink, StoppableLink)
