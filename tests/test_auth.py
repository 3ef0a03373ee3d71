"""Authentication (issue 12, item 16): ``listen(..., authenticate=fn)``, ``connect(...,
token=...)``; the token in the WebSocket upgrade's ``Authorization: Bearer`` header and in
gRPC metadata ``authorization``; refused: ``AuthenticationError``, not retried, counted by
the breaker; mutual TLS: the certificate's subject is the identity."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import pytest

from objtransport import (
    AuthenticationError,
    CircuitOpenError,
    ConnectError,
    Message,
    NetworkTransport,
)
from objtransport.testing import eventually

from .conftest import TLS

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret"


class Gate:
    """An authenticator that counts its calls; sync or async."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self.closed = False  # True: nobody gets in any more (a revoked token)

    def check(self, token: str | None) -> str | None:
        self.calls.append(token)
        return "alice" if token == TOKEN and not self.closed else None

    async def acheck(self, token: str | None) -> str | None:
        return self.check(token)


@pytest.mark.parametrize("transport", ["websocket", "grpc"])
@pytest.mark.parametrize("is_async", [False, True])
async def test_a_valid_token_gives_the_identity(transport: str, is_async: bool) -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport=transport,  # type: ignore[arg-type]
                                    authenticate=gate.acheck if is_async else gate.check)
        conn = await net.connect("127.0.0.1", listener.port, transport=transport,  # type: ignore[arg-type]
                                 token=TOKEN)
        await net.send_data(conn, b"hello")
        msg = await net.receive(timeout=5.0)
        assert msg.data == b"hello"
        assert net.connection_info(msg.conn_id).identity == "alice"
        assert net.connection_info(conn).identity is None  # the client side knows none
        assert gate.calls == [TOKEN]


@pytest.mark.parametrize("transport", ["websocket", "grpc"])
async def test_a_refused_client_is_not_retried_and_opens_the_breaker(transport: str) -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0, failure_threshold=2) as net:
        listener = await net.listen("127.0.0.1", 0, transport=transport,  # type: ignore[arg-type]
                                    authenticate=gate.check)
        for token in ("wrong", None):
            kwargs: dict[str, Any] = {} if token is None else {"token": token}
            with pytest.raises(AuthenticationError) as refused:
                await net.connect("127.0.0.1", listener.port, transport=transport,  # type: ignore[arg-type]
                                  **kwargs)
            assert isinstance(refused.value, ConnectError)
        assert gate.calls == ["wrong", None]  # one call each: no retry
        assert not listener.connections and listener.accepted == 0  # no slot, no session
        with pytest.raises(CircuitOpenError):  # two refusals: failure_threshold
            await net.connect("127.0.0.1", listener.port, transport=transport,  # type: ignore[arg-type]
                              token=TOKEN)
        assert gate.calls == ["wrong", None]


async def test_a_raising_authenticator_refuses() -> None:
    def broken(token: str | None) -> str:
        raise RuntimeError("database down")

    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="websocket",
                                    authenticate=broken)
        with pytest.raises(AuthenticationError):
            await net.connect("127.0.0.1", listener.port, transport="websocket", token=TOKEN)


async def test_a_plain_grpc_client_without_metadata_is_unauthenticated() -> None:
    grpc = pytest.importorskip("grpc")
    from objtransport.drivers.grpc_config import METHOD
    from objtransport.sansio.envelope import encode_payload

    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="grpc", authenticate=gate.check)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            call = channel.stream_stream(METHOD)()  # refused from its metadata alone
            assert await call.code() is grpc.StatusCode.UNAUTHENTICATED
            call = channel.stream_stream(METHOD)()  # one that writes at once
            with contextlib.suppress(grpc.aio.AioRpcError):  # refused before or after
                await call.write(encode_payload(b"let me in"))
            # grpc.aio reports a write that races the end of the call as INTERNAL (seen
            # under load); either way nothing is delivered (messages_received below)
            assert await call.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                         grpc.StatusCode.INTERNAL)
            call = channel.stream_stream(METHOD)(
                metadata=(("authorization", f"Bearer {TOKEN}"),))
            await call.write(encode_payload(b"let me in"))
            msg = await net.receive(timeout=5.0)
            assert net.connection_info(msg.conn_id).identity == "alice"
            call.cancel()
        assert net.get_metrics().messages_received == 1


async def test_mutual_tls_identity_is_the_certificate_subject(tls: TLS) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls.ca.configure_trust(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls.ca.configure_trust(client_ctx)
    tls.ca.issue_cert("client.local", common_name="alice").configure_cert(client_ctx)
    async with NetworkTransport(timeout=5.0) as net:
        for transport in ("tcp", "websocket"):
            listener = await net.listen("127.0.0.1", 0, transport=transport,  # type: ignore[arg-type]
                                        ssl_context=server_ctx)
            conn = await net.connect("127.0.0.1", listener.port, transport=transport,  # type: ignore[arg-type]
                                     ssl_context=client_ctx)
            await net.send_data(conn, b"mtls")
            msg = await net.receive(timeout=5.0)
            identity = net.connection_info(msg.conn_id).identity
            assert identity is not None and "CN=alice" in identity.split(","), identity
            assert msg.identity == identity


async def test_mutual_tls_identity_over_grpc(tls: TLS) -> None:
    """gRPC with client certificates (PEM options): the subject is the identity; a client
    without a certificate is refused by the TLS handshake."""
    pytest.importorskip("grpc")
    server_cert = tls.ca.issue_cert("127.0.0.1")
    client_cert = tls.ca.issue_cert("client.local", common_name="carol")
    ca_pem = tls.ca.cert_pem.bytes()
    seen: list[Message] = []
    async with NetworkTransport(timeout=5.0, max_reconnect_attempts=0) as net:
        listener = await net.listen(
            "127.0.0.1", 0, transport="grpc", handler=seen.append,
            certificate_chain=server_cert.cert_chain_pems[0].bytes(),
            private_key=server_cert.private_key_pem.bytes(), root_certificates=ca_pem)
        conn = await net.connect(
            "127.0.0.1", listener.port, transport="grpc", root_certificates=ca_pem,
            certificate_chain=client_cert.cert_chain_pems[0].bytes(),
            private_key=client_cert.private_key_pem.bytes())
        await net.send_data(conn, b"mtls")
        await eventually(lambda: len(seen) == 1)
        identity = seen[0].identity
        assert identity is not None and "CN=carol" in identity.split(","), identity
        assert net.connection_info(seen[0].conn_id).identity == identity
        with pytest.raises(ConnectError):  # no client certificate
            await net.connect("127.0.0.1", listener.port, transport="grpc",
                              root_certificates=ca_pem)
        assert len(seen) == 1


async def test_a_connection_refused_on_reconnect_gives_up_at_once() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0, reconnect_interval=0.01,
                                max_reconnect_attempts=50) as net:
        listener = await net.listen("127.0.0.1", 0, transport="websocket",
                                    authenticate=gate.check)
        conn = await net.connect("127.0.0.1", listener.port, transport="websocket",
                                 token=TOKEN)
        await net.send_data(conn, b"in")
        msg = await net.receive(timeout=5.0)
        gate.calls.clear()
        gate.closed = True
        await net.disconnect(msg.conn_id)  # the listener drops it: the client reconnects
        await eventually(lambda: net.connection_info(conn).state == "disconnected")
        assert gate.calls == [TOKEN]  # one refusal, no retry of the 50 allowed


async def test_a_websocket_authentication_flood_is_bounded() -> None:
    """Slow checks run side by side up to ``max_authentications``; one more upgrade gets
    503 at once, and a good client is not queued behind the slow ones."""
    release = asyncio.Event()

    async def check(token: str | None) -> str | None:
        if token == "hold":
            await release.wait()
            return None
        return "alice" if token == TOKEN else None

    limit = 4
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer hold\r\n\r\n")
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="websocket", authenticate=check,
                                    max_authentications=limit, handshake_timeout=30.0)
        server: Any = listener.server
        writers = []
        try:
            for _ in range(limit - 1):
                _r, w = await asyncio.open_connection("127.0.0.1", listener.port)
                w.write(request)
                writers.append(w)
            await eventually(lambda: len(server.checks) == limit - 1)
            conn = await net.connect("127.0.0.1", listener.port, transport="websocket",
                                     token=TOKEN)
            await net.send_data(conn, b"not queued")
            assert (await net.receive(timeout=5.0)).identity == "alice"
            _r, w = await asyncio.open_connection("127.0.0.1", listener.port)
            writers.append(w)
            w.write(request)
            await eventually(lambda: len(server.checks) == limit)
            reader, w = await asyncio.open_connection("127.0.0.1", listener.port)
            writers.append(w)
            w.write(request)
            async with asyncio.timeout(5):
                status = await reader.readline()
            assert b" 503 " in status and server.auth_busy == 1
        finally:
            release.set()
            for w in writers:
                w.transport.abort()
        await eventually(lambda: not server.checks)


async def test_a_grpc_authentication_flood_is_bounded_in_number_and_time() -> None:
    grpc = pytest.importorskip("grpc")
    from objtransport.drivers.grpc_config import METHOD
    from objtransport.sansio.envelope import encode_payload

    release = asyncio.Event()

    async def check(token: str | None) -> str | None:
        if token == "hold":
            await release.wait()
        return "alice" if token == TOKEN else None

    hold = (("authorization", "Bearer hold"),)
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="grpc", authenticate=check,
                                    max_authentications=2, handshake_timeout=1.0)
        server: Any = listener.server
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            connect = channel.stream_stream(METHOD)
            slow = [connect(metadata=hold) for _ in range(2)]
            await eventually(lambda: server.authenticating == 2)
            extra = connect(metadata=hold)
            assert await extra.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many authentications" in await extra.details()
            # the slow ones end at handshake_timeout, not never
            codes = await asyncio.gather(*(c.code() for c in slow))
            assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
            assert server.authenticating == 0 and server.auth_busy == 1
            good = connect(metadata=(("authorization", f"Bearer {TOKEN}"),))
            await good.write(encode_payload(b"in"))
            assert (await net.receive(timeout=5.0)).identity == "alice"
            good.cancel()
        release.set()
