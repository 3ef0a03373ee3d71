"""Batch delivery (``handler=fn, batch=True``) and ``receive_many`` over every transport;
requests, headers, ttl and text inside a batch; backpressure with a slow async batch
handler; handler errors counted and logged like the per-message path. Real sockets on
127.0.0.1, TLS certificates made at test time (tests/test_conformance.py's transports)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from objtransport import Batch, Message, NetworkTransport, NoResponder, SendTimeout
from objtransport.events import HandlerFailed, Overloaded
from objtransport.testing import ManualClock, eventually

from .conftest import TLS
from .test_conformance import KINDS, Kind, Pair, _kind

T = 10.0  # every wait is bounded


@pytest.fixture(params=KINDS)
async def pair(request: pytest.FixtureRequest, tls: TLS) -> AsyncIterator[Pair]:
    async with NetworkTransport(timeout=5.0) as server, NetworkTransport(timeout=5.0) as client:
        yield Pair(_kind(request.param, tls), server, client)


def _check_arrivals(kind: Kind, got: list[bytes], sent: list[bytes]) -> None:
    if kind.relaxed:  # datagrams: none duplicated, none invented, most arrive on loopback
        assert len(got) == len(set(got)) and set(got) <= set(sent) and len(got) > 0.9 * len(sent)
    else:
        assert got == sent


async def _send_all(pair: Pair, conn: int, sent: list[bytes]) -> None:
    for data in sent:
        await pair.client.send_data(conn, data)
    if not pair.kind.relaxed:
        await pair.client.flush(conn, timeout=T)


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_batch_handler_gets_every_message_in_order(pair: Pair, is_async: bool) -> None:
    got: list[bytes] = []
    batches: list[Batch] = []

    def on_batch(batch: Batch) -> None:
        batches.append(batch)
        got.extend(batch.payloads)

    async def on_batch_async(batch: Batch) -> None:
        await asyncio.sleep(0)  # a real coroutine: it yields to the loop
        on_batch(batch)

    await pair.listen(handler=on_batch_async if is_async else on_batch, batch=True)
    conn = await pair.connect()
    sent = [b"%04d" % i for i in range(1000)]
    await _send_all(pair, conn, sent)
    if pair.kind.relaxed:
        await asyncio.sleep(0.5)  # datagrams: what arrives, arrives (bounded)
    else:
        await eventually(lambda: len(got) >= len(sent), timeout=T)
    _check_arrivals(pair.kind, got, sent)
    b = batches[0]
    assert b.transport == pair.kind.transport and b.peer[0] == "127.0.0.1" and b.plain
    assert b.identity is None and b.nbytes == sum(map(len, b.payloads)) == 4 * len(b)
    assert list(b) == b.payloads
    assert [m.data for m in b.messages] == b.payloads
    assert all(m.conn_id == b.conn_id and m.transport == b.transport for m in b.messages)
    await pair.server.send_data(b.conn_id, b"back")  # the batch's conn_id answers
    assert (await pair.client.receive(conn, timeout=T)).data == b"back"


async def test_receive_many_takes_what_waits_at_most_max_messages(pair: Pair) -> None:
    await pair.listen()
    conn = await pair.connect()
    sent = [b"%04d" % i for i in range(600)]
    await _send_all(pair, conn, sent)
    got: list[bytes] = []
    try:
        while len(got) < len(sent):
            msgs = await pair.server.receive_many(max_messages=250,
                                                  timeout=1.0 if pair.kind.relaxed else T)
            assert 1 <= len(msgs) <= 250
            assert all(m.transport == pair.kind.transport for m in msgs)
            got += [m.data for m in msgs]
    except TimeoutError:
        if not pair.kind.relaxed:
            raise
    _check_arrivals(pair.kind, got, sent)


async def test_a_client_connection_takes_a_batch_handler_too(net: NetworkTransport,
                                                             server_net: NetworkTransport
                                                             ) -> None:
    got: list[bytes] = []

    def echo(msg: Message) -> None:
        server_net.send_nowait(msg.conn_id, msg.data)

    listener = await server_net.listen("127.0.0.1", 0, handler=echo)
    conn = await net.connect("127.0.0.1", listener.port, batch=True,
                             handler=lambda b: got.extend(b.payloads))
    await net.send_many(conn, [b"%d" % i for i in range(300)])
    await eventually(lambda: len(got) == 300, timeout=T)
    assert got == [b"%d" % i for i in range(300)]


async def test_batch_without_a_handler_and_zero_messages_are_errors(
        net: NetworkTransport) -> None:
    with pytest.raises(ValueError, match="needs a handler"):
        await net.listen("127.0.0.1", 0, batch=True)
    with pytest.raises(ValueError, match="needs a handler"):
        await net.connect("127.0.0.1", 1, batch=True)
    with pytest.raises(ValueError, match="max_messages"):
        await net.receive_many(max_messages=0, timeout=0.1)


# -- requests, headers, ttl, text in a batch -----------------------------------------------------

@pytest.mark.parametrize("is_async", [False, True])
async def test_requests_and_headers_inside_a_batch(is_async: bool) -> None:
    seen: list[Message] = []

    def answer(batch: Batch) -> None:
        seen.extend(batch.messages)
        for msg in batch.requests:
            if msg.data == b"ask":
                msg.reply_nowait(b"answer:" + batch.payloads[0])
            # "unanswered" is left: the runner answers it with an error

    async def answer_async(batch: Batch) -> None:
        for msg in batch.requests:
            if msg.data == b"ask":
                await msg.reply(b"answer:" + batch.payloads[0])
        seen.extend(batch.messages)

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, batch=True,
                                       handler=answer_async if is_async else answer)
        conn = await client.connect("127.0.0.1", listener.port)
        # queued in one go: they travel together and arrive in one read, or a few
        client.send_nowait(conn, b"first")
        client.send_nowait(conn, "text ü".encode(), text=True)
        asks = [asyncio.create_task(client.request(conn, b"ask", timeout=T)),
                asyncio.create_task(client.request(conn, b"unanswered", timeout=T))]
        await client.send_data(conn, b"with headers", headers={"k": "v"}, priority="high")
        reply = await asks[0]
        assert reply.data.startswith(b"answer:")
        with pytest.raises(NoResponder, match="did not reply"):
            await asks[1]
        await eventually(lambda: len(seen) == 5, timeout=T)
    by_data = {m.data: m for m in seen}
    assert by_data["text ü".encode()].text and by_data[b"ask"].expects_reply
    assert by_data[b"with headers"].headers == {"k": b"v"}
    assert by_data[b"with headers"].priority == "high"
    assert not by_data[b"first"].expects_reply


async def test_a_message_past_its_ttl_is_left_out_of_the_batch() -> None:
    got: list[bytes] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(batch: Batch) -> None:
        if b"first" in batch.payloads:
            started.set()
            await gate.wait()
        got.extend(batch.payloads)

    clock = ManualClock()  # the receiver's: its ttl checks read it
    async with NetworkTransport(clock=clock) as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=slow, batch=True)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"first")
        await asyncio.wait_for(started.wait(), T)
        await client.send_data(conn, b"stale", ttl=5.0)
        await client.send_data(conn, b"fresh", ttl=30.0)
        await client.flush(conn)  # both wait for the handler
        clock.advance(10.0)  # "stale" outlives its ttl there
        gate.set()
        await eventually(lambda: b"fresh" in got, timeout=T)
        assert got == [b"first", b"fresh"]
        assert server.get_metrics().messaging["expired_received"] == 1


# -- backpressure and errors -------------------------------------------------------------------

async def test_a_slow_async_batch_handler_pauses_reading_and_loses_nothing() -> None:
    got: list[bytes] = []
    gate = asyncio.Event()

    async def slow(batch: Batch) -> None:
        await gate.wait()
        got.extend(batch.payloads)

    async with NetworkTransport(receive_queue_size=1000) as server, \
            NetworkTransport(max_pending_bytes=256 * 1024,
                             max_unacked_bytes=1024 * 1024) as client:
        events = server.events()
        listener = await server.listen("127.0.0.1", 0, handler=slow, batch=True)
        conn = await client.connect("127.0.0.1", listener.port)
        sent = 0
        with pytest.raises(SendTimeout):
            for _ in range(1_000_000):
                await client.send_data(conn, b"s%07d" % sent + b"." * 1016, timeout=0.5)
                sent += 1
        assert sent < 10_000  # stopped near the limits, far from buffering everything
        async with asyncio.timeout(T):
            while True:
                ev = await events.get()
                if isinstance(ev, Overloaded) and ev.what == "paused_reading":
                    break
        gate.set()
        await client.send_data(conn, b"end", timeout=T)
        await eventually(lambda: got[-1:] == [b"end"], timeout=T)
        # in order, none lost (the send that timed out may have queued its message)
        expected = [b"s%07d" % i + b"." * 1016 for i in range(sent + 1)]
        assert got[:-1] in (expected, expected[:-1])


@pytest.mark.parametrize("is_async", [False, True])
async def test_batch_handler_errors_are_counted_logged_and_the_connection_goes_on(
        caplog: pytest.LogCaptureFixture, is_async: bool) -> None:
    calls: list[int] = []

    def fail(batch: Batch) -> None:
        calls.append(len(batch))
        if b"boom" in batch.payloads:
            raise ValueError("the user's bug")

    async def afail(batch: Batch) -> None:
        fail(batch)

    caplog.set_level(logging.ERROR, logger="objtransport.handler")
    async with NetworkTransport() as server, NetworkTransport() as client:
        events = server.events()
        listener = await server.listen("127.0.0.1", 0, handler=afail if is_async else fail,
                                       batch=True)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"boom", wait_ack=True)
        async with asyncio.timeout(T):
            while not isinstance(failed := await events.get(), HandlerFailed):
                pass
        assert isinstance(failed.error, ValueError)
        with pytest.raises(NoResponder, match="HandlerError|handler raised ValueError"):
            await client.request(conn, b"boom", timeout=T)  # the requester is told
        await client.send_data(conn, b"fine", wait_ack=True)
        await eventually(lambda: sum(calls) == 3, timeout=T)
        assert server.get_metrics().handler_errors == 2
    logged = [r for r in caplog.records if "raised ValueError" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
