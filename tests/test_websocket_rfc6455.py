"""RFC 6455 at the edges, from plain clients and servers over loopback.

The peers are the real ``websockets`` client (asyncio), or ``websockets``' sans-I/O
``ClientProtocol`` / ``ServerProtocol`` over a plain socket, which send frames exactly as a
test writes them (fragments, control frames between fragments, a Close inside a message);
frames no correct library would send are written by hand (:func:`masked`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

websockets = pytest.importorskip("websockets")

from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.asyncio.server import ServerConnection  # noqa: E402
from websockets.asyncio.server import serve as ws_serve  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.exceptions import ConnectionClosed as WsConnectionClosed  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.frames import Close, Frame, Opcode  # noqa: E402
from websockets.http11 import Request  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from objtransport import ConnectError, Message, NetworkTransport  # noqa: E402
from objtransport.testing import eventually  # noqa: E402

WS = {"transport": "websocket"}
PROMPT = 2.0  # an empty message must arrive well within this (it used to wait forever)


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame written by hand (payload under 126 bytes, zero mask)."""
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class RawClient:
    """A WebSocket client on ``websockets``' sans-I/O protocol over a plain socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ClientProtocol) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.events: list[Any] = []
        self.answer = True  # write what the protocol answers (pongs, the Close echo)

    @classmethod
    async def open(cls, port: int, path: str = "/",
                   subprotocols: list[Any] | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"),
                                  subprotocols=subprotocols, max_size=None)
        client = cls(reader, writer, protocol)
        protocol.send_request(protocol.connect())
        client.flush()
        response = await client.next_event()
        assert response.status_code == 101, response
        return client

    def flush(self) -> None:
        """Write what the protocol queued in one write (so it tends to arrive as one)."""
        data = b"".join(self.protocol.data_to_send())
        if data and self.answer:
            self.writer.write(data)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def next_event(self, timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while not self.events:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the server closed the connection")
                self.protocol.receive_data(data)
                self.events.extend(self.protocol.events_received())
                self.flush()
        return self.events.pop(0)

    async def next_frame(self, timeout: float = 5.0) -> Frame:
        ev = await self.next_event(timeout)
        assert isinstance(ev, Frame), ev
        return ev

    async def close_received(self, timeout: float = 5.0) -> Close:
        """Read up to the server's Close frame; return its code and reason."""
        while True:
            frame = await self.next_frame(timeout)
            if frame.opcode is Opcode.CLOSE:
                return Close.parse(frame.data)

    async def eof(self, timeout: float = 5.0) -> None:
        """The server closes the TCP connection."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass

    def abort(self) -> None:
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def raw_client(port: int, **kw: Any) -> AsyncIterator[RawClient]:
    client = await RawClient.open(port, **kw)
    try:
        yield client
    finally:
        client.abort()


async def listener_port(net: NetworkTransport, **kw: Any) -> int:
    return (await net.listen("127.0.0.1", 0, **WS, **kw)).port


# -- empty messages --------------------------------------------------------------------------

async def test_empty_binary_and_text_from_a_client_each_arrive_alone(
        net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with ws_connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        await ws.send(b"")
        first = await net.receive(timeout=PROMPT)
        await ws.send("")
        second = await net.receive(timeout=PROMPT)
    assert (first.data, first.text) == (b"", False)
    assert (second.data, second.text) == (b"", True)


async def test_empty_binary_and_text_to_a_client_go_out_at_once(
        net: NetworkTransport) -> None:
    """A lone empty message is written at once, not when another message follows."""
    port = await listener_port(net)
    async with ws_connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        await ws.send(b"hello")
        conn = (await net.receive(timeout=5.0)).conn_id
        await net.send_data(conn, b"")
        assert await asyncio.wait_for(ws.recv(), PROMPT) == b""
        await net.send_data(conn, b"", text=True)
        assert await asyncio.wait_for(ws.recv(), PROMPT) == ""


async def test_empty_messages_from_a_raw_client_to_a_plain_server(
        net: NetworkTransport) -> None:
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def keep(ws: ServerConnection) -> None:
        with contextlib.suppress(WsConnectionClosed):
            async for msg in ws:
                got.put_nowait(msg)

    async with ws_serve(keep, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await net.connect("127.0.0.1", port, framing="raw", **WS)
        await net.send_data(conn, b"")
        assert await asyncio.wait_for(got.get(), PROMPT) == b""
        await net.send_data(conn, b"", text=True)
        assert await asyncio.wait_for(got.get(), PROMPT) == ""


# -- control frames between fragments --------------------------------------------------------

async def test_ping_between_fragments_is_answered_and_the_message_arrives_whole(
        net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with raw_client(port) as client:
        p = client.protocol
        p.send_text(b"frag", fin=False)
        p.send_ping(b"p1")
        p.send_continuation("ment ü".encode(), fin=True)
        client.flush()
        pong = await client.next_frame()
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"p1")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.text) == ("fragment ü".encode(), True)
        p.send_binary(b"\x00", fin=False)
        p.send_pong(b"unsolicited")
        p.send_continuation(b"\x01", fin=False)
        p.send_ping(b"p2")
        p.send_continuation(b"\x02", fin=True)
        client.flush()
        pong = await client.next_frame()
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"p2")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.text) == (b"\x00\x01\x02", False)


# -- a Close inside a fragmented message -----------------------------------------------------

@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (1001, "going away"),
                                              (4000, "app code")])
async def test_close_inside_a_fragmented_message_is_a_normal_close(
        net: NetworkTransport, code: int, reason: str) -> None:
    """The listener echoes the client's Close (not 1002) and drops the partial message."""
    port = await listener_port(net)
    async with raw_client(port) as client:
        client.protocol.send_binary(b"complete")
        client.protocol.send_binary(b"part", fin=False)
        client.protocol.send_close(code, reason)
        client.flush()
        echo = await client.close_received()
        assert (echo.code, echo.reason) == (code, reason)
        await client.eof()
    assert (await net.receive(timeout=5.0)).data == b"complete"
    await eventually(lambda: not net.connections())
    with pytest.raises(TimeoutError):
        await net.receive(timeout=0.1)  # the partial message was dropped
    if code in (1000, 1001):
        assert net.get_metrics().errors == 0


async def test_a_raw_client_echoes_a_close_inside_a_fragmented_message(
        net: NetworkTransport) -> None:
    """objtransport as the client: a server that starts a message, then closes."""
    reply: asyncio.Future[Close] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = ServerProtocol()
        try:
            while not reply.done():
                data = await reader.read(65536)
                if not data:
                    break
                protocol.receive_data(data)
                for ev in protocol.events_received():
                    if isinstance(ev, Request):
                        protocol.send_response(protocol.accept(ev))
                        protocol.send_binary(b"part", fin=False)
                        protocol.send_close(1000, "done")
                    elif isinstance(ev, Frame) and ev.opcode is Opcode.CLOSE:
                        reply.set_result(Close.parse(ev.data))
                for out in protocol.data_to_send():
                    if out:
                        writer.write(out)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        conn = await net.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0,
                                 **WS)
        echo = await asyncio.wait_for(reply, 5.0)  # masked, parsed by websockets
        assert (echo.code, echo.reason) == (1000, "done")
        await eventually(lambda: net.connection_info(conn).state == "disconnected")
        assert net.get_metrics().errors == 0
    finally:
        server.close()


# -- close codes -----------------------------------------------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
async def test_the_clients_close_code_and_reason_are_echoed(net: NetworkTransport,
                                                           code: int) -> None:
    port = await listener_port(net)
    async with raw_client(port) as client:
        client.protocol.send_close(code, "reason é")
        client.flush()
        echo = await client.close_received()
        assert (echo.code, echo.reason) == (code, "reason é")
        await client.eof()


async def test_a_close_without_a_code_is_echoed_without_a_code(net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with raw_client(port) as client:
        client.write(masked(0x8, b""))
        frame = await client.next_frame()
        assert (frame.opcode, bytes(frame.data)) == (Opcode.CLOSE, b"")
        await client.eof()


async def test_1000_when_the_listener_disconnects(net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with ws_connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
        await ws.send(b"hi")
        conn = (await net.receive(timeout=5.0)).conn_id
        await net.disconnect(conn)
        with pytest.raises(WsConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def test_1000_when_a_raw_client_disconnects(net: NetworkTransport) -> None:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def wait(ws: ServerConnection) -> None:
        with contextlib.suppress(WsConnectionClosed):
            await ws.recv()
        done.set_result(ws.close_code)

    async with ws_serve(wait, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await net.connect("127.0.0.1", port, framing="raw", **WS)
        await net.disconnect(conn)
        assert await asyncio.wait_for(done, 5.0) == 1000


async def test_1001_when_the_service_stops() -> None:
    net = NetworkTransport(timeout=5.0)
    await net.start()
    try:
        port = await listener_port(net)
        async with ws_connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
            await ws.send(b"hi")
            await net.receive(timeout=5.0)
            await net.stop()
            with pytest.raises(WsConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5.0)
    finally:
        await net.stop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


@pytest.mark.parametrize("frames", [
    [masked(0x0, b"continuation without a start")],
    [masked(0x2, b"start", fin=False), masked(0x2, b"a new message inside it")],
    [masked(0x9, b"fragmented ping", fin=False)],
    [masked(0x3, b"reserved opcode")],
])
async def test_1002_on_a_protocol_error(net: NetworkTransport, frames: list[bytes]) -> None:
    port = await listener_port(net)
    async with raw_client(port) as client:
        client.write(b"".join(frames))
        assert (await client.close_received()).code == 1002
        await client.eof()
    await eventually(lambda: not net.connections())


async def test_1003_on_text_in_native_mode(net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with raw_client(port, subprotocols=["objtransport.v1"]) as client:
        client.protocol.send_text(b"text is not native framing")
        client.flush()
        assert (await client.close_received()).code == 1003


@pytest.mark.parametrize("fragments", [[b"\xff\xfe"], [b"ok ", b"\xc3"], [b"\xc3", b"\x28"]])
async def test_1007_on_invalid_utf8_text(net: NetworkTransport,
                                         fragments: list[bytes]) -> None:
    port = await listener_port(net)
    async with raw_client(port) as client:
        p = client.protocol
        if len(fragments) == 1:
            p.send_text(fragments[0])
        else:
            p.send_text(fragments[0], fin=False)
            p.send_continuation(fragments[1], fin=True)
        p.send_binary(b"after the bad one")  # in the same write: never delivered
        client.flush()
        assert (await client.close_received()).code == 1007
    with pytest.raises(TimeoutError):
        await net.receive(timeout=0.1)


@pytest.mark.parametrize("sizes", [[2048], [600, 600], [1000, 1000, 1000]])
async def test_1009_on_a_message_over_max_message_size(net: NetworkTransport,
                                                       sizes: list[int]) -> None:
    """Whole or in fragments: the limit counts the message, not the frame."""
    port = await listener_port(net, max_message_size=1024)
    async with raw_client(port) as client:
        p = client.protocol
        if len(sizes) == 1:
            p.send_binary(os.urandom(sizes[0]))
        else:
            p.send_binary(os.urandom(sizes[0]), fin=False)
            for size in sizes[1:-1]:
                p.send_continuation(os.urandom(size), fin=False)
            p.send_continuation(os.urandom(sizes[-1]), fin=True)
        client.flush()
        assert (await client.close_received()).code == 1009
    with pytest.raises(TimeoutError):
        await net.receive(timeout=0.1)


async def test_1009_on_a_native_carrier_over_1_mib(net: NetworkTransport) -> None:
    port = await listener_port(net)
    async with raw_client(port, subprotocols=["objtransport.v1"]) as client:
        client.protocol.send_binary(b"\0" * (1024 * 1024 + 1))
        client.flush()
        assert (await client.close_received()).code == 1009


async def test_1011_when_pings_go_unanswered(net: NetworkTransport) -> None:
    port = await listener_port(net, keepalive_interval=0.05, pong_timeout=0.2)
    async with raw_client(port) as client:
        client.answer = False  # pings are read, never answered
        while True:
            frame = await client.next_frame()
            if frame.opcode is Opcode.CLOSE:
                break
            assert frame.opcode is Opcode.PING
        assert Close.parse(frame.data).code == 1011


# -- a path the listener does not serve -------------------------------------------------------

async def test_a_wrong_path_is_answered_404_logged_once_per_peer_and_counted(
        net: NetworkTransport, caplog: pytest.LogCaptureFixture) -> None:
    listener = await net.listen("127.0.0.1", 0, path="/objects", **WS)
    caplog.set_level(logging.WARNING, logger="objtransport.websocket")
    for _ in range(3):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(f"ws://127.0.0.1:{listener.port}/nope", proxy=None):
                pass
        assert refused.value.response.status_code == 404
    with pytest.raises(ConnectError, match="HTTP 404"):
        await net.connect("127.0.0.1", listener.port, path="/other", **WS)
    logged = [r for r in caplog.records if r.name == "objtransport.websocket"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    text = logged[0].getMessage()
    assert "/nope" in text and "'/objects'" in text and "127.0.0.1" in text
    assert net.get_metrics().connections_refused == 4
    async with ws_connect(f"ws://127.0.0.1:{listener.port}/objects", proxy=None) as ws:
        await ws.send(b"served")
        got: Message = await net.receive(timeout=5.0)
        assert got.data == b"served"
