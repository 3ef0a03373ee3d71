"""The inbox's byte count (docs/design.md, "The inbox's byte count"), over real sockets.

A connection's inbox charges each read's messages with the payload bytes the link's session
delivered since the read before, and takes ``len(msg.data)`` off as each is received. If
the two measures differ, the count drifts: a count left above zero pauses reading early
(and, above half the limit, for ever: a hang); one below zero lets the queue grow past
``max_pending_bytes``. No figure shows the count, so :func:`exactly_empty` reads it through
the flow control: with the inbox empty, exactly ``LIMIT`` bytes more must not pause
reading and one byte more must (``Overloaded`` events).

The cases: messages in the same write as the HELLO (each side), a resumed session with
messages in flight both ways, and the messages whose payload on the wire is not the one
delivered: headers (a meta block), compressed ones, and answers to requests (delivered to
``request()``, not to the inbox). Before the fix every case but the listener's HELLO
failed.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Awaitable, Callable

import pytest
from websockets.typing import Subprotocol

from objtransport import NetworkTransport
from objtransport.batch import Batch
from objtransport.events import Overloaded, SessionResumed, Subscription
from objtransport.sansio.framing import (
    FEATURE_ACKS,
    FEATURE_RESUME,
    MAGIC,
    FrameType,
    Hello,
    encode_data,
    encode_frame,
    encode_hello,
)
from objtransport.testing import FaultProxy

pytestmark = pytest.mark.timeout(60)

T = 10.0
LIMIT = 4096  # max_pending_bytes: the inbox pauses reading above it, resumes at half
HEADER = struct.Struct("!IBBBBIQ")
ACK = struct.Struct("!Q")


class Pauses:
    """Whether reading from connection ``conn_id`` is paused, from the ``Overloaded``
    events published so far."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.state: dict[int, bool] = {}

    def paused(self, conn_id: int) -> bool:
        while (ev := self.sub.get_nowait()) is not None:
            if isinstance(ev, Overloaded) and ev.what in ("paused_reading", "resumed_reading"):
                self.state[ev.conn_id] = ev.what == "paused_reading"
        return self.state.get(conn_id, False)


async def exactly_empty(send: Callable[[bytes], Awaitable[None]],
                        delivered: Callable[[], Awaitable[None]], receiver: NetworkTransport,
                        conn_id: int, pauses: Pauses, size: int = 1024) -> None:
    """Connection ``conn_id`` of ``receiver`` has nothing queued: its byte count must be 0.
    ``send`` sends one message to it, ``delivered`` returns once all sent was delivered to
    its inbox (the peer acknowledged it)."""
    assert not pauses.paused(conn_id), "reading paused with nothing queued"
    for _ in range(LIMIT // size):
        await send(b"p" * size)
    await delivered()
    assert not pauses.paused(conn_id), "max_pending_bytes in the inbox paused reading"
    await send(b"!")
    await delivered()
    assert pauses.paused(conn_id), "one byte over max_pending_bytes did not pause reading"
    got = [await receiver.receive(conn_id, timeout=T) for _ in range(LIMIT // size + 1)]
    assert sum(len(m.data) for m in got) == LIMIT + 1
    assert not pauses.paused(conn_id), "reading did not resume once all was received"


class RawPeer:
    """One side of a native session written by hand: ACKs and resume agreed; it answers
    PINGs and records the ACKs it gets (its reading task is its own, stopped by close)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self.acked = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                length, _v, ftype, *_ = HEADER.unpack(await self.reader.readexactly(20))
                payload = await self.reader.readexactly(length - 16)
                if ftype == FrameType.PING:
                    self.writer.write(encode_frame(FrameType.PONG, payload))
                elif ftype == FrameType.ACK:
                    self.acked = ACK.unpack(payload)[0]
                    self._changed.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self._changed.set()

    def frames(self, payloads: list[bytes]) -> bytes:
        """DATA frames for ``payloads``, numbered on."""
        out = b""
        for p in payloads:
            self.seq += 1
            out += encode_data(p, self.seq, 0, 2)
        return out

    async def send(self, payload: bytes) -> None:
        self.writer.write(self.frames([payload]))

    async def delivered(self) -> None:
        async with asyncio.timeout(T):
            while self.acked < self.seq:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self.writer.transport.abort()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def hello(session_id: bytes) -> bytes:
    return encode_hello(Hello(session_id, FEATURE_ACKS | FEATURE_RESUME, 1 << 20, 1 << 20))


FIRST = [b"%d" % i * 700 for i in range(6)]  # 4,200 bytes: more than LIMIT


async def test_messages_in_the_write_of_the_clients_hello_are_counted_once() -> None:
    """A raw client writes its HELLO and six messages in one write: the listener delivers
    them with the handshake's read; once they are received, its inbox counts 0."""
    async with NetworkTransport(max_pending_bytes=LIMIT) as server:
        pauses = Pauses(server.events())
        listener = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        peer = RawPeer(reader, writer)
        try:
            writer.write(MAGIC + hello(os.urandom(16)) + peer.frames(FIRST))
            async with asyncio.timeout(T):
                assert await reader.readexactly(4) == MAGIC
            peer.start()
            await peer.delivered()
            (conn,) = server.connections()
            assert [(await server.receive(conn, timeout=T)).data for _ in FIRST] == FIRST
            await exactly_empty(peer.send, peer.delivered, server, conn, pauses)
        finally:
            await peer.close()


class RawListener:
    """A listener written by hand: it answers a client's HELLO with its own and six
    messages, in one write."""

    def __init__(self) -> None:
        self.peer: asyncio.Future[RawPeer] | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.peer = asyncio.get_running_loop().create_future()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        assert await reader.readexactly(4) == MAGIC
        length, *_ = HEADER.unpack(await reader.readexactly(20))
        sid = (await reader.readexactly(length - 16))[:16]  # the client's HELLO
        peer = RawPeer(reader, writer)
        writer.write(MAGIC + hello(sid) + peer.frames(FIRST))
        peer.start()
        assert self.peer is not None
        self.peer.set_result(peer)

    async def close(self) -> None:
        if self.peer is not None and self.peer.done():
            await self.peer.result().close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_messages_in_the_write_of_the_listeners_hello_are_counted_once() -> None:
    """The listener's HELLO and six messages in one write: the client delivers them
    before its connection is up (``Connection.up``); once they are received, its inbox
    counts 0 (it counted them twice: reading paused for ever once the count stayed above
    half the limit)."""
    raw = RawListener()
    port = await raw.start()
    try:
        async with NetworkTransport(max_pending_bytes=LIMIT) as client:
            pauses = Pauses(client.events())
            conn = await client.connect("127.0.0.1", port)
            assert raw.peer is not None
            peer = await raw.peer
            assert [(await client.receive(conn, timeout=T)).data for _ in FIRST] == FIRST
            await exactly_empty(peer.send, peer.delivered, client, conn, pauses)
    finally:
        await raw.close()


async def test_a_batch_counts_the_payload_bytes_it_holds() -> None:
    """``Batch.nbytes`` is the count the inbox would charge: the payload bytes of the
    batch, also for the read that came with the listener's HELLO and the one after it."""
    raw = RawListener()
    port = await raw.start()
    batches: list[Batch] = []
    try:
        async with NetworkTransport() as client:
            await client.connect("127.0.0.1", port, handler=batches.append, batch=True)
            assert raw.peer is not None
            peer = await raw.peer
            await peer.delivered()
            await peer.send(b"after" * 100)
            await peer.delivered()
            assert [p for b in batches for p in b.payloads] == [*FIRST, b"after" * 100]
            assert [b.nbytes for b in batches] == [sum(map(len, b.payloads)) for b in batches]
    finally:
        await raw.close()


async def test_a_resumed_session_counts_from_the_new_link() -> None:
    """Messages both ways, then more in flight when the socket breaks: the session resumes
    (each side resends what the other had not acknowledged, right behind its HELLO) and
    every message is received once; then each side's inbox counts 0."""
    async with NetworkTransport(max_pending_bytes=LIMIT) as server, \
            NetworkTransport(max_pending_bytes=LIMIT, reconnect_interval=0.01) as client:
        srv, cli = Pauses(server.events()), Pauses(client.events())
        resumed = server.events()
        listener = await server.listen("127.0.0.1", 0)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            await client.send_data(conn, b"c" * 300, wait_ack=True)
            (sconn,) = server.connections()
            await server.send_data(sconn, b"s" * 200, wait_ack=True)
            await server.send_data(sconn, b"s" * 200, wait_ack=True)
            assert (await server.receive(sconn, timeout=T)).data == b"c" * 300
            assert [(await client.receive(conn, timeout=T)).data for _ in range(2)] == [
                b"s" * 200] * 2
            proxy.blackhole(True)  # in flight: neither arrives nor is acknowledged...
            for i in range(3):
                await client.send_data(conn, b"%d" % i * 500)
                await server.send_data(sconn, b"%d" % i * 900)
            proxy.reset_all()  # ...and the socket breaks under them
            proxy.blackhole(False)
            async with asyncio.timeout(T):
                while not isinstance(await resumed.get(), SessionResumed):
                    pass
            assert [(await server.receive(sconn, timeout=T)).data for _ in range(3)] == [
                b"%d" % i * 500 for i in range(3)]
            assert [(await client.receive(conn, timeout=T)).data for _ in range(3)] == [
                b"%d" % i * 900 for i in range(3)]

            async def to_server(data: bytes) -> None:
                await client.send_data(conn, data)

            async def to_client(data: bytes) -> None:
                await server.send_data(sconn, data)

            await exactly_empty(to_server, lambda: client.flush(conn, timeout=T), server,
                                sconn, srv)
            await exactly_empty(to_client, lambda: server.flush(sconn, timeout=T), client,
                                conn, cli)


@pytest.mark.parametrize("transport", ["tcp", "websocket", "grpc"])
async def test_headers_are_not_counted(transport: str) -> None:
    """A message with headers carries a meta block on the wire, not in ``msg.data``: once
    the messages are received, the inbox counts 0 (it kept the meta blocks). Over a
    WebSocket or gRPC carrier the connection asks the session for the count
    (``delivered_bytes``); a TCP link hands it over."""
    async with NetworkTransport(max_pending_bytes=LIMIT) as server, \
            NetworkTransport(max_pending_bytes=LIMIT) as client:
        pauses = Pauses(server.events())
        listener = await server.listen("127.0.0.1", 0, transport=transport)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport)
        (sconn,) = server.connections()
        for i in range(8):
            await client.send_data(conn, b"%d" % i * 300, headers={"k": "v" * 200})
        await client.flush(conn, timeout=T)
        got = [await server.receive(sconn, timeout=T) for _ in range(8)]
        assert [m.data for m in got] == [b"%d" % i * 300 for i in range(8)]
        assert got[0].headers == {"k": b"v" * 200}

        async def to_server(data: bytes) -> None:
            await client.send_data(conn, data)

        await exactly_empty(to_server, lambda: client.flush(conn, timeout=T), server, sconn,
                            pauses)


async def test_compressed_messages_count_as_delivered() -> None:
    """A compressed message has fewer bytes on the wire than in ``msg.data``: once the
    messages are received, the inbox counts 0 (it went below zero: a queue of
    decompressed messages could grow past the limit)."""
    async with NetworkTransport(max_pending_bytes=LIMIT) as server, \
            NetworkTransport(max_pending_bytes=LIMIT) as client:
        pauses = Pauses(server.events())
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port, compression="zlib")
        (sconn,) = server.connections()
        for i in range(4):
            await client.send_data(conn, b"%d" % i * 5000)  # ~30 bytes compressed
        await client.flush(conn, timeout=T)
        got = [await server.receive(sconn, timeout=T) for _ in range(4)]
        assert [m.data for m in got] == [b"%d" % i * 5000 for i in range(4)]

        async def to_server(data: bytes) -> None:  # under compression_min_size: plain
            await client.send_data(conn, data)

        await exactly_empty(to_server, lambda: client.flush(conn, timeout=T), server, sconn,
                            pauses, size=512)


async def test_answers_to_requests_are_not_counted() -> None:
    """Answers go to ``request()``, not to the inbox (a read of answers alone delivers no
    message): once the messages are received, the requester's inbox counts 0 (it kept the
    answers' bytes, charged with the next message's read)."""
    async def answer(msg: object) -> bytes:
        return b"r" * 1500

    async with NetworkTransport() as server, \
            NetworkTransport(max_pending_bytes=LIMIT) as client:
        pauses = Pauses(client.events())
        listener = await server.listen("127.0.0.1", 0, handler=answer)
        conn = await client.connect("127.0.0.1", listener.port)
        (sconn,) = server.connections()
        for _ in range(4):  # 6,000 bytes of answers
            assert (await client.request(conn, b"q", timeout=T)).data == b"r" * 1500

        async def to_client(data: bytes) -> None:
            await server.send_data(sconn, data)

        await exactly_empty(to_client, lambda: server.flush(sconn, timeout=T), client, conn,
                            pauses)


async def test_messages_with_the_listeners_hello_over_websocket_are_charged_to_their_read(
        ) -> None:
    """A WebSocket listener written by hand (the websockets library) answers the client's
    HELLO with its own and six messages in one WebSocket message: 4,200 bytes, over
    ``max_pending_bytes``. The client delivers them before its connection is up
    (``Connection.up``): the read must be charged with them and pause reading, as a TCP
    link's is. The link hands over its own session's count (``delivered_bytes``); asked of
    ``conn.link`` instead (None until ``up``) it was 0: the read went uncharged, the bound
    did not hold for it, and the count stayed below zero until the next read."""
    from websockets.asyncio.server import ServerConnection, serve

    async def answer(ws: ServerConnection) -> None:
        first = await ws.recv()
        assert isinstance(first, bytes) and first[:4] == MAGIC
        sid = first[4 + 20:4 + 20 + 16]  # the client's HELLO
        await ws.send(MAGIC + hello(sid) + b"".join(
            encode_data(p, seq, 0, 2) for seq, p in enumerate(FIRST, 1)))
        async for _ in ws:  # until the client closes
            pass

    async with serve(answer, "127.0.0.1", 0, subprotocols=[Subprotocol("objtransport.v1")]
                     ) as ws_server, NetworkTransport(max_pending_bytes=LIMIT) as client:
        port = ws_server.sockets[0].getsockname()[1]
        sub = client.events()
        conn = await client.connect("127.0.0.1", port, transport="websocket")
        assert [(await client.receive(conn, timeout=T)).data for _ in FIRST] == FIRST
        seen = []
        while (ev := sub.get_nowait()) is not None:
            if isinstance(ev, Overloaded) and ev.conn_id == conn:
                seen.append(ev.what)
        assert seen == ["paused_reading", "resumed_reading"], seen
