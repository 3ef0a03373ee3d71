"""Authentication over QUIC (issue 12, item 16): the native HELLO on the control stream
carries the token as over TCP (the same sans-I/O session); a refused client gets
``AuthenticationError``, not retried; a raw (ALPN) client cannot present a token."""

from __future__ import annotations

import pytest

pytest.importorskip("aioquic")

from objtransport import AuthenticationError, ConnectError, NetworkTransport  # noqa: E402

from .test_quic import Pem, make_pem  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pem() -> Pem:
    return make_pem()


async def test_a_token_over_quic(pem: Pem) -> None:
    calls: list[str | None] = []

    async def check(token: str | None) -> str | None:
        calls.append(token)
        return "alice" if token == "tok-alice" else None

    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="quic", authenticate=check,
                                    **pem.server)
        conn = await net.connect("127.0.0.1", listener.port, transport="quic",
                                 token="tok-alice", **pem.client)
        await net.send_data(conn, b"over quic")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.identity) == (b"over quic", "alice")
        assert net.connection_info(msg.conn_id).identity == "alice"
        with pytest.raises(AuthenticationError, match="authentication refused"):
            await net.connect("127.0.0.1", listener.port, transport="quic", token="wrong",
                              **pem.client)
        with pytest.raises(ValueError, match="raw"):
            await net.connect("127.0.0.1", listener.port, transport="quic", framing="raw",
                              token="tok-alice", **pem.client)
        with pytest.raises(ConnectError):  # refused at the ALPN (no HELLO, no token)
            await net.connect("127.0.0.1", listener.port, transport="quic", framing="raw",
                              **pem.client)
        assert calls == ["tok-alice", "wrong"]
        assert net.get_metrics().messages_received == 1
