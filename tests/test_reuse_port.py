"""``listen(reuse_port=True)`` on the WebSocket, gRPC and QUIC listeners: two listeners share
one port and the kernel spreads new connections over them (TCP/TLS and UDP are in
test_workers.py). Without ``reuse_port`` the same port is busy: ``ListenError``."""

from __future__ import annotations

from typing import Any

import pytest
import trustme

from objtransport import ListenError, NetworkTransport
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)


def _quic_pem() -> tuple[dict[str, Any], dict[str, Any]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = {"certificate_chain": b"".join(b.bytes() for b in cert.cert_chain_pems),
              "private_key": cert.private_key_pem.bytes()}
    return server, {"root_certificates": ca.cert_pem.bytes()}


@pytest.mark.parametrize("transport", ["websocket", "grpc", "quic"])
async def test_reuse_port_lets_two_listeners_share_a_port(transport: str) -> None:
    server_kw: dict[str, Any] = {}
    client_kw: dict[str, Any] = {}
    if transport == "quic":
        server_kw, client_kw = _quic_pem()
    async with NetworkTransport() as a, NetworkTransport() as b, NetworkTransport() as c:
        first = await a.listen("127.0.0.1", 0, transport=transport, reuse_port=True,
                               handler=lambda m: None, **server_kw)
        second = await b.listen("127.0.0.1", first.port, transport=transport,
                                reuse_port=True, handler=lambda m: None, **server_kw)
        assert second.port == first.port
        with pytest.raises(ListenError):  # without reuse_port the port is busy
            await c.listen("127.0.0.1", first.port, transport=transport, **server_kw)
        conns = [await c.connect("127.0.0.1", first.port, transport=transport, **client_kw)
                 for _ in range(16)]
        for conn in conns:
            await c.send_data(conn, b"x")
        await eventually(lambda: len(a.connections()) + len(b.connections()) == 16,
                         timeout=10)
        assert a.connections() and b.connections()  # the kernel spread them (p ~ 3e-5)
