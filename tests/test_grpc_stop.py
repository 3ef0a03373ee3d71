"""Stopping a service in the middle of a gRPC call leaves nothing of ours behind: the raw
link's writes started in a sender's step (drivers/eager.py) are the link's, ended with it,
so no task of ours is left pending and none is destroyed pending."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

import objtransport  # noqa: E402
from objtransport import NetworkTransport, SendTimeout, TransportError  # noqa: E402
from objtransport.drivers.eager import Eager  # noqa: E402

from .test_grpc import G, echo_listener, pb  # noqa: E402, F401 - pb: the stubs fixture

SRC = str(Path(objtransport.__file__).parent)


def _ours_pending() -> list[asyncio.Task[object]]:
    """Tasks not done that run code of the package (or carry one of its task names)."""
    out = []
    for task in asyncio.all_tasks():
        if task.done() or task is asyncio.current_task():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if task.get_name().startswith("objtransport") or (
                code is not None and code.co_filename.startswith(SRC)):
            out.append(task)
    return out


@pytest.mark.parametrize("stopping", ["client", "listener"])
async def test_stopping_mid_call_leaves_no_task_of_ours_pending(
        stopping: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    server = await NetworkTransport(timeout=2.0).start()
    client = await NetworkTransport(timeout=2.0).start()
    try:
        listener = await echo_listener(server)
        conn = await client.connect("127.0.0.1", listener.port, framing="raw",
                                    max_reconnect_attempts=0, **G)
        midway: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def ping() -> None:  # lone raw sends: each write starts in the sender's step
            for i in range(100_000):
                await client.send_data(conn, b"m%d" % i)
                if i % 3 == 0:
                    await client.receive(conn, timeout=5.0)
                if i == 150:
                    midway.set_result(None)

        sender = asyncio.create_task(ping())
        try:
            await asyncio.wait([sender, midway], timeout=10,
                               return_when=asyncio.FIRST_COMPLETED)
            assert midway.done()  # mid-call: writes and echoes in flight
            await asyncio.wait_for((client if stopping == "client" else server).stop(), 10)
        finally:
            sender.cancel()
            with pytest.raises((asyncio.CancelledError, TransportError)):
                await sender
    finally:
        await asyncio.wait_for(client.stop(), 10)
        await asyncio.wait_for(server.stop(), 10)
    pending = _ours_pending()
    assert pending == [], [t.get_stack() for t in pending]
    # and no write driven by hand is left waiting: every link closed its own
    assert [o for o in gc.get_objects() if isinstance(o, Eager) and (o.running or o.tasks)] == []
    gc.collect()
    await asyncio.sleep(0)
    assert "Task was destroyed but it is pending" not in caplog.text


async def test_stopping_with_a_write_stuck_on_a_peer_that_never_reads(
        pb: Any, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A plain grpc.aio listener that never reads: the raw client's lone write started in
    the sender's step waits on HTTP/2 flow control when the service stops, and the close
    ends in an abort (the queue cannot drain). The client's reader task (``run``) must
    have ended when ``stop()`` returns: it used to be left waiting for grpc to report the
    cancelled call (``GrpcLink.wait_stopped`` now waits for it, bounded)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    parked = asyncio.Event()  # never set

    class Deaf(pb.grpc.TransportServicer):  # type: ignore[misc,name-defined]
        async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            await parked.wait()
            yield pb.pb2.Envelope(payload=b"never")

    server = grpc.aio.server()
    pb.grpc.add_TransportServicer_to_server(Deaf(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = await NetworkTransport(timeout=1.0).start()
    try:
        conn = await client.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0,
                                    **G)
        chunk = b"x" * 16 * 1024  # at most 16 KiB queued: written from the sender's step
        with contextlib.suppress(SendTimeout):
            for _ in range(64):  # 1 MiB: past any HTTP/2 window the peer grants unread
                await client.send_data(conn, chunk, timeout=0.5)
        assert client.connection_info(conn).pending_bytes > 0  # a write is stuck
        await asyncio.wait_for(client.stop(), 10)
        pending = _ours_pending()
        assert pending == [], [t.get_stack() for t in pending]  # where each one waits
        assert [o for o in gc.get_objects()
                if isinstance(o, Eager) and (o.running or o.tasks)] == []
    finally:
        await asyncio.wait_for(client.stop(), 10)
        await server.stop(None)
    gc.collect()
    await asyncio.sleep(0)
    assert "Task was destroyed but it is pending" not in caplog.text
