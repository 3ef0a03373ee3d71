"""A peer that speaks another protocol is named at once, on both sides, with the fix.

From raw sockets: TLS, objtransport native framing, HTTP/WebSocket and HTTP/2 openings at a
plain TCP listener are each recognised from their first bytes, closed well under a second
(no HELLO timeout), counted and logged once with what to pass; the listener keeps serving a
good client. A plain client that gets a TLS, HTTP or HTTP/2 server says what the server is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from objtransport import ConnectError, NetworkTransport
from objtransport.sansio.framing import MAGIC, Hello, decode_goaway, encode_hello
from objtransport.sansio.sniff import HTTP2_PREFACE, wrong_peer
from objtransport.testing import eventually

from .conftest import TLS

CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(32)
NATIVE_OPENING = MAGIC + encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20))
WS_REQUEST = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
PROMPT = 1.0  # seconds: far below the 5 s HELLO timeout

OPENINGS = {
    "tls": (CLIENT_HELLO, "ssl=True"),
    "native": (NATIVE_OPENING, 'framing="native"'),
    "http": (WS_REQUEST, 'transport="websocket"'),
    "http2": (HTTP2_PREFACE + bytes.fromhex("000000040000000000"), 'transport="grpc"'),
}


@pytest.fixture
async def service(caplog: pytest.LogCaptureFixture) -> AsyncIterator[NetworkTransport]:
    caplog.set_level(logging.WARNING, logger="objtransport")
    async with NetworkTransport(timeout=5.0, hello_timeout=5.0) as net:
        yield net


async def _closed_with(port: int, opening: bytes) -> tuple[float, bytes]:
    """Send ``opening`` from a raw socket; return how long until the listener closed the
    connection, and what it wrote before."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(opening)
    try:
        async with asyncio.timeout(4):
            answer = await reader.read()  # until EOF
    except ConnectionResetError:  # closed with our opening still unread: a reset
        answer = b""
    finally:
        writer.close()
    return time.monotonic() - start, answer


def _goaway_reason(answer: bytes) -> str | None:
    """The reason of the GOAWAY in a native listener's answer (after its magic)."""
    if not answer.startswith(MAGIC):
        return None
    off = 4
    while off + 20 <= len(answer):
        length = int.from_bytes(answer[off:off + 4], "big")
        if answer[off + 5] == 6:
            return decode_goaway(answer[off + 20:off + 4 + length])[1]
        off += 4 + length
    return None


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "connection" in r.getMessage()]


@pytest.mark.parametrize("framing, kind", [
    ("native", "tls"), ("raw", "tls"), ("auto", "tls"),
    ("raw", "native"),
    ("native", "http"), ("raw", "http"), ("auto", "http"),
    ("native", "http2"), ("raw", "http2"), ("auto", "http2"),
])
async def test_listener_names_a_wrong_peer_at_once(service: NetworkTransport,
                                                   caplog: pytest.LogCaptureFixture,
                                                   framing: str, kind: str) -> None:
    net = service
    listener = await net.listen("127.0.0.1", 0, framing=framing)
    good = await net.connect("127.0.0.1", listener.port,
                             framing="raw" if framing == "raw" else "native")
    opening, fix = OPENINGS[kind]
    elapsed, answer = await _closed_with(listener.port, opening)
    assert elapsed < PROMPT, f"closed after {elapsed:.2f} s"
    await eventually(lambda: net.get_metrics().errors >= 1, 2.0)
    assert net.get_metrics().errors == 1
    logged = _logged(caplog)
    assert len(logged) == 1 and fix in logged[0], logged
    if framing == "native":  # a native listener also tells the peer why, in a GOAWAY
        reason = _goaway_reason(answer)
        assert reason is not None and fix in reason, answer[:80]
    # the listener still serves a good client, old and new
    await net.send_data(good, b"still here")
    assert (await net.receive(timeout=5.0)).data == b"still here"
    other = await net.connect("127.0.0.1", listener.port,
                              framing="raw" if framing == "raw" else "native")
    await net.send_data(other, b"new")
    assert (await net.receive(timeout=5.0)).data == b"new"


async def test_plain_native_client_at_a_tls_listener(service: NetworkTransport,
                                                     tls: TLS) -> None:
    net = service
    listener = await net.listen("127.0.0.1", 0, ssl_context=tls.server_ctx)
    start = time.monotonic()
    with pytest.raises(ConnectError, match=r"ssl=True"):
        await net.connect("127.0.0.1", listener.port)
    assert time.monotonic() - start < PROMPT


async def _answering_server(answer: bytes) -> tuple[asyncio.Server, int]:
    """A TCP server that answers anything with ``answer``, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TLS_ALERT = bytes.fromhex("15030300020246")


@pytest.mark.parametrize("answer, fix", [
    (HTTP_400, 'transport="websocket"'),
    (TLS_ALERT, "ssl=True"),
])
@pytest.mark.parametrize("framing", ["native", "raw"])
async def test_client_names_the_server_it_reached(service: NetworkTransport, answer: bytes,
                                                  fix: str, framing: str) -> None:
    net = service
    server, port = await _answering_server(answer)
    try:
        start = time.monotonic()
        if framing == "native":
            with pytest.raises(ConnectError, match=fix.replace("(", r"\(")) as err:
                await net.connect("127.0.0.1", port, max_reconnect_attempts=0)
            assert "peer speaks" in str(err.value)
        else:  # raw has no handshake: the connection opens, then fails on the answer
            conn = await net.connect("127.0.0.1", port, framing="raw",
                                     max_reconnect_attempts=0)
            await net.send_data(conn, b"hello?")
            await eventually(lambda: net.connection_info(conn).error_count >= 1, PROMPT)
        assert time.monotonic() - start < PROMPT
    finally:
        server.close()
        await server.wait_closed()


async def test_native_client_at_a_grpc_server(service: NetworkTransport) -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        start = time.monotonic()
        with pytest.raises(ConnectError, match=r'transport="grpc"'):
            await service.connect("127.0.0.1", port, max_reconnect_attempts=0)
        assert time.monotonic() - start < PROMPT
    finally:
        await server.stop(None)


@pytest.mark.parametrize("head, expected", [
    (CLIENT_HELLO, "TLS"), (TLS_ALERT, "TLS"), (NATIVE_OPENING, "native framing"),
    (WS_REQUEST, "HTTP/WebSocket"), (HTTP_400, "HTTP/WebSocket"),
    (HTTP2_PREFACE, "HTTP/2"), (bytes.fromhex("000018040000000000000400"), "HTTP/2"),
])
def test_wrong_peer_recognises_openings(head: bytes, expected: str) -> None:
    hint = wrong_peer(head)
    assert hint is not None and expected in hint


@pytest.mark.parametrize("head", [
    b"\x00\x00\x00\x05hello",  # a raw message
    b"\x00\x00\x18\x04hello world",  # a raw message whose length looks like HTTP/2
    b"OBJ", b"",  # too short to say
])
def test_wrong_peer_leaves_other_bytes_alone(head: Any) -> None:
    assert wrong_peer(head) is None


@pytest.mark.parametrize("framing", ["native", "raw"])
async def test_tcp_client_at_a_websocket_listener(service: NetworkTransport,
                                                  caplog: pytest.LogCaptureFixture,
                                                  framing: str) -> None:
    net = service
    listener = await net.listen("127.0.0.1", 0, transport="websocket")
    start = time.monotonic()
    if framing == "native":  # told why in a GOAWAY, at once (not after the 5 s timeout)
        with pytest.raises(ConnectError, match=r'transport="websocket"'):
            await net.connect("127.0.0.1", listener.port, max_reconnect_attempts=0)
    else:
        conn = await net.connect("127.0.0.1", listener.port, framing="raw",
                                 max_reconnect_attempts=0)
        await net.send_data(conn, b"hello?")
        await eventually(lambda: net.connection_info(conn).state != "connected", PROMPT)
    assert time.monotonic() - start < PROMPT
    await eventually(lambda: listener.server.wrong_peers == 1, PROMPT)
    assert any('transport="websocket"' in m for m in
               (r.getMessage() for r in caplog.records)), caplog.text
    # the listener still serves a WebSocket client
    conn = await net.connect("127.0.0.1", listener.port, transport="websocket")
    await net.send_data(conn, b"ok")
    assert (await net.receive(timeout=5.0)).data == b"ok"


async def test_raw_client_at_a_grpc_server(service: NetworkTransport,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The server's HTTP/2 frames are no whole raw message; when it closes, the error
    names it."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        conn = await service.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0)
        await service.send_data(conn, b"hello?")
        await eventually(lambda: service.connection_info(conn).error_count >= 1, PROMPT)
        await eventually(lambda: any('transport="grpc"' in m for m in _logged(caplog)), PROMPT)
    finally:
        await server.stop(None)


@pytest.mark.parametrize("framing", ["native", "raw", "auto"])
async def test_tls_client_at_a_plain_listener(service: NetworkTransport, tls: TLS,
                                              framing: str) -> None:
    """Both sides say it: the listener logs 'peer speaks TLS', the client's ConnectError
    says the listener does not speak TLS."""
    net = service
    listener = await net.listen("127.0.0.1", 0, framing=framing)
    start = time.monotonic()
    with pytest.raises(ConnectError, match=r"does not speak TLS\? connect without ssl=True"):
        await net.connect("127.0.0.1", listener.port, ssl_context=tls.client_ctx,
                          framing="raw" if framing == "raw" else "native",
                          max_reconnect_attempts=0)
    assert time.monotonic() - start < PROMPT
    await eventually(lambda: net.get_metrics().errors >= 1, PROMPT)
