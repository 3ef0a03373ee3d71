"""``handshake_timeout`` on WebSocket and gRPC listeners (issue 12, items 4 and 7): a raw
socket that connects and sends nothing, or half a TLS ClientHello, or half an HTTP upgrade,
is closed by the listener within the deadline (default 5 s; 0.5 s here), not after
asyncio's 60 s or grpc's 120 s."""

from __future__ import annotations

import asyncio
import time

import pytest

from objtransport import NetworkTransport

from .conftest import TLS

pytestmark = pytest.mark.timeout(60)

DEADLINE = 0.5
#: how long past the deadline the cut may come on a loaded machine
SLACK = 2.5
#: the first bytes of a TLS 1.x ClientHello record (then nothing)
HALF_CLIENT_HELLO = bytes.fromhex("160301020001000200fc03") + b"\x00" * 20
HALF_UPGRADE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"


async def _time_to_cut(port: int, first: bytes) -> float:
    """Seconds from connecting until the listener closes the socket (EOF or reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        if first:
            writer.write(first)
        async with asyncio.timeout(20):
            try:
                while await reader.read(65536):
                    pass
            except ConnectionError:
                pass
        took = time.monotonic() - start
        print(f"cut after {took:.2f} s")
        return took
    finally:
        writer.transport.abort()


async def _listen(net: NetworkTransport, transport: str, tls: TLS | None) -> int:
    if transport == "websocket":
        listener = await net.listen("127.0.0.1", 0, transport="websocket",
                                    ssl_context=tls.server_ctx if tls else None,
                                    handshake_timeout=DEADLINE)
    else:
        pytest.importorskip("grpc")
        kwargs = {}
        if tls is not None:
            cert = tls.ca.issue_cert("127.0.0.1")
            kwargs = {"certificate_chain": cert.cert_chain_pems[0].bytes(),
                      "private_key": cert.private_key_pem.bytes()}
        listener = await net.listen("127.0.0.1", 0, transport="grpc",
                                    handshake_timeout=DEADLINE, **kwargs)
    return listener.port


@pytest.mark.parametrize("transport", ["websocket", "grpc"])
@pytest.mark.parametrize("first", [b"", HALF_CLIENT_HELLO], ids=["silent", "half-hello"])
async def test_a_tls_listener_cuts_a_stalled_handshake(tls: TLS, transport: str,
                                                       first: bytes) -> None:
    async with NetworkTransport(timeout=5.0) as net:
        port = await _listen(net, transport, tls)
        took = await _time_to_cut(port, first)
        assert took < DEADLINE + SLACK, took


@pytest.mark.parametrize("transport, first", [("websocket", b""),
                                              ("websocket", HALF_UPGRADE),
                                              ("grpc", b""),
                                              ("grpc", b"PRI * HTTP/2.0\r\n")])
async def test_a_plain_listener_cuts_a_stalled_handshake(transport: str,
                                                         first: bytes) -> None:
    async with NetworkTransport(timeout=5.0) as net:
        port = await _listen(net, transport, None)
        took = await _time_to_cut(port, first)
        assert took < DEADLINE + SLACK, took
