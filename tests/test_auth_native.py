"""Authentication in the native HELLO (issue 12, item 16): TCP and TLS listeners with
``authenticate=``, clients with ``token=`` / ``credentials=``; ``Message.identity``; resumes
re-authenticate and cannot take over another identity's session; attacks from raw sockets:
data before or without a token, an oversized token, a slow HELLO, an authentication flood."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import pytest

from objtransport import (
    AuthenticationError,
    CircuitOpenError,
    ConnectError,
    Message,
    NetworkTransport,
)
from objtransport.sansio.framing import (
    FEATURE_ACKS,
    FEATURE_RESUME,
    FEATURE_RESUMED,
    FEATURE_TOKEN,
    HELLO_FORMAT,
    MAGIC,
    MAX_HELLO_LENGTH,
    GoAwayCode,
    Hello,
    decode_goaway,
    decode_hello,
    encode_data,
    encode_hello,
)
from objtransport.testing import eventually

from .conftest import TLS

pytestmark = pytest.mark.timeout(60)

HEADER = struct.Struct("!IBBBBIQ")
BOTH = FEATURE_ACKS | FEATURE_RESUME


class Gate:
    """Tokens -> identities; counts its calls. ``hold`` tokens wait until released."""

    def __init__(self) -> None:
        self.tokens = {"tok-alice": "alice", "tok-bob": "bob"}
        self.calls: list[str | None] = []
        self.release = asyncio.Event()

    def check(self, token: str | None) -> str | None:
        self.calls.append(token)
        return self.tokens.get(token or "")

    async def acheck(self, token: str | None) -> str | None:
        if token == "hold":
            self.calls.append(token)
            await self.release.wait()
            return None
        return self.check(token)


def _hello(token: str | None, sid: bytes = b"a" * 16, features: int = 0) -> bytes:
    return MAGIC + encode_hello(Hello(sid, features, 1 << 20, 1 << 20, 0, token))


class Peer:
    """A raw-socket client speaking just enough of the native protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.magic = False

    @classmethod
    async def open(cls, port: int, data: bytes) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        OPEN.append(peer)
        writer.write(data)
        await writer.drain()
        return peer

    async def frame(self) -> tuple[int, bytes] | None:
        """The next frame (type, payload); None at EOF or reset."""
        try:
            async with asyncio.timeout(5):
                if not self.magic:
                    assert await self.reader.readexactly(4) == MAGIC
                    self.magic = True
                length, _v, ftype, *_ = HEADER.unpack(await self.reader.readexactly(20))
                return ftype, await self.reader.readexactly(length - 16)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def goaway(self) -> tuple[int, str] | None:
        """Frames until GOAWAY: its (code, reason); None if the socket ended first."""
        while (f := await self.frame()) is not None:
            if f[0] == 6:
                return decode_goaway(f[1])
        return None

    async def hello(self) -> Hello:
        f = await self.frame()
        assert f is not None and f[0] == 1, f
        return decode_hello(f[1])

    async def closed(self) -> None:
        """Wait for the listener to close the socket (bounded)."""
        async with asyncio.timeout(5):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass

    def close(self) -> None:
        self.writer.close()


#: the raw sockets a test opened, closed after it (see the fixture below)
OPEN: list[Peer] = []


@pytest.fixture(autouse=True)
async def _close_peers() -> Any:
    yield
    while OPEN:
        peer = OPEN.pop()
        peer.writer.transport.abort()


# -- the token in the HELLO ---------------------------------------------------------------
@pytest.mark.parametrize("tls_on", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_valid_token_gives_the_identity(tls: TLS, tls_on: bool, is_async: bool) -> None:
    gate = Gate()
    seen: list[Message] = []
    async with NetworkTransport(timeout=5.0) as net:
        server_ctx = tls.server_ctx if tls_on else None
        client_ctx = tls.client_ctx if tls_on else None
        listener = await net.listen("127.0.0.1", 0, ssl_context=server_ctx,
                                    authenticate=gate.acheck if is_async else gate.check)
        handled = await net.listen("127.0.0.1", 0, ssl_context=server_ctx,
                                   authenticate=gate.check, handler=seen.append)
        conn = await net.connect("127.0.0.1", listener.port, ssl_context=client_ctx,
                                 token="tok-alice")
        await net.send_data(conn, b"hello")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.identity) == (b"hello", "alice")
        assert net.connection_info(msg.conn_id).identity == "alice"
        assert net.connection_info(conn).identity is None  # the client side knows none
        other = await net.connect("127.0.0.1", handled.port, ssl_context=client_ctx,
                                  token="tok-bob")
        await net.send_data(other, b"to a handler", priority="high")  # a full Message
        await eventually(lambda: len(seen) == 1)
        assert seen[0].identity == "bob"
        assert gate.calls == ["tok-alice", "tok-bob"]


@pytest.mark.parametrize("tls_on", [False, True], ids=["tcp", "tls"])
async def test_a_refused_client_is_not_retried_and_opens_the_breaker(tls: TLS,
                                                                     tls_on: bool) -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0, failure_threshold=2) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.check,
                                    ssl_context=tls.server_ctx if tls_on else None)
        ctx = tls.client_ctx if tls_on else None
        for kwargs in ({"token": "wrong"}, {}):
            with pytest.raises(AuthenticationError) as refused:
                await net.connect("127.0.0.1", listener.port, ssl_context=ctx, **kwargs)
            assert isinstance(refused.value, ConnectError)
            assert "authentication refused" in str(refused.value)
        assert gate.calls == ["wrong", None]  # one call each: no retry
        with pytest.raises(CircuitOpenError):  # two refusals: failure_threshold
            await net.connect("127.0.0.1", listener.port, ssl_context=ctx, token="tok-alice")
        assert gate.calls == ["wrong", None]
        assert listener.server is not None
        assert listener.server.counters()["auth_refused"] == 2  # type: ignore[attr-defined]
        assert net.get_metrics().messages_received == 0


async def test_credentials_are_asked_again_at_each_reconnect() -> None:
    gate = Gate()
    issued: list[str] = []

    async def credentials() -> str:  # an expiring token: a new one for every attempt
        token = f"tok-{len(issued)}"
        gate.tokens[token] = "alice"
        issued.append(token)
        return token

    async with NetworkTransport(timeout=5.0, reconnect_interval=0.01) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.check)
        conn = await net.connect("127.0.0.1", listener.port, credentials=credentials)
        await net.send_data(conn, b"one")
        first = await net.receive(timeout=5.0)
        del gate.tokens[issued[0]]  # it expires
        await net.disconnect(first.conn_id)  # the listener drops it: the client reconnects
        await eventually(lambda: len(gate.calls) == 2)
        await net.send_data(conn, b"two")
        second = await net.receive(timeout=5.0)
        assert (second.data, second.identity) == (b"two", "alice")
        assert gate.calls == ["tok-0", "tok-1"] and issued == ["tok-0", "tok-1"]


async def test_token_options_are_checked() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        with pytest.raises(ValueError, match="not both"):
            await net.connect("127.0.0.1", 9, token="a", credentials="b")
        with pytest.raises(ValueError, match="raw"):  # no HELLO to carry a token
            await net.listen("127.0.0.1", 0, framing="raw", authenticate=lambda t: "x")
        with pytest.raises(ValueError, match="raw"):
            await net.connect("127.0.0.1", 9, framing="raw", token="x")


async def test_an_auto_listener_refuses_a_raw_peer() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, framing="auto", authenticate=gate.check)
        peer = await Peer.open(listener.port, struct.pack("!I", 3) + b"raw")
        await peer.closed()
        conn = await net.connect("127.0.0.1", listener.port, token="tok-alice")
        await net.send_data(conn, b"native")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.identity) == (b"native", "alice")
        assert net.get_metrics().messages_received == 1 and gate.calls == ["tok-alice"]


# -- resumes ----------------------------------------------------------------------------------
async def test_a_resume_needs_the_same_identity() -> None:
    """A kept session resumes only for the identity that made it: another token with the
    same session id is refused (GOAWAY UNAUTHENTICATED) and the session stays kept."""
    gate = Gate()
    sid = b"S" * 16
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.check)
        alice = await Peer.open(listener.port, _hello("tok-alice", sid, BOTH))
        assert (await alice.hello()).features & BOTH == BOTH
        alice.writer.write(encode_data(b"from alice", 1, 0, 2))
        msg = await net.receive(timeout=5.0)
        assert msg.identity == "alice"
        alice.writer.transport.abort()  # broken: the session is kept for a resume
        await eventually(lambda: len(listener.kept) == 1)

        bob = await Peer.open(listener.port, _hello("tok-bob", sid, BOTH))
        code, reason = await bob.goaway() or (None, "")
        assert code == GoAwayCode.UNAUTHENTICATED and "another identity" in reason
        assert len(listener.kept) == 1  # untouched

        again = await Peer.open(listener.port, _hello("tok-alice", sid, BOTH | 0))
        hello = await again.hello()
        assert hello.features & FEATURE_RESUMED and hello.resume_seq == 1
        again.writer.write(encode_data(b"alice again", 2, 0, 2))
        msg2 = await net.receive(timeout=5.0)
        assert (msg2.data, msg2.conn_id, msg2.identity) == (b"alice again", msg.conn_id,
                                                             "alice")
        assert gate.calls == ["tok-alice", "tok-bob", "tok-alice"]
        assert net.get_metrics().messages_received == 2


async def test_a_client_reconnect_authenticates_again_and_resumes() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0, reconnect_interval=0.01) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.acheck)
        conn = await net.connect("127.0.0.1", listener.port, token="tok-alice")
        await net.send_data(conn, b"one")
        first = await net.receive(timeout=5.0)
        for cid in [c for c in listener.connections]:
            link = net.connection(cid).link  # break the socket under it
            link.abort()
        await eventually(lambda: len(gate.calls) == 2)
        await net.send_data(conn, b"two")
        second = await net.receive(timeout=5.0)
        assert second.conn_id == first.conn_id and second.identity == "alice"
        assert net.connection_info(conn).reconnects == 1


# -- attacks from raw sockets ----------------------------------------------------------------
async def test_data_without_a_token_is_refused_and_nothing_is_delivered() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.acheck)
        data = encode_data(b"sneaky", 1, 0, 2)
        # no token at all, data right behind the HELLO
        peer = await Peer.open(listener.port, _hello(None) + data)
        assert await peer.goaway() == (GoAwayCode.UNAUTHENTICATED, "authentication refused")
        # a good token, but data before the listener's HELLO (before authentication)
        peer2 = await Peer.open(listener.port, _hello("tok-alice") + data)
        code, reason = await peer2.goaway() or (None, "")
        assert code == GoAwayCode.PROTOCOL_ERROR and "before authentication" in reason
        # a wrong token, data sent while authenticate decides
        peer3 = await Peer.open(listener.port, _hello("hold"))
        await eventually(lambda: "hold" in gate.calls)
        peer3.writer.write(data)
        code, reason = await peer3.goaway() or (None, "")
        assert code == GoAwayCode.PROTOCOL_ERROR
        # data and no HELLO at all
        peer4 = await Peer.open(listener.port, MAGIC + data)
        code, reason = await peer4.goaway() or (None, "")
        assert code == GoAwayCode.PROTOCOL_ERROR and "before HELLO" in reason
        assert net.get_metrics().messages_received == 0
        assert gate.calls == [None, "tok-alice", "hold"]
        await eventually(lambda: not listener.connections)


async def test_an_oversized_token_is_refused_before_its_bytes_arrive() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.check)
        # a HELLO frame claiming 64 MiB: only its 20-byte header is ever sent
        claim = HEADER.pack(64 << 20, 1, 1, 0, 0, 0, 0)
        peer = await Peer.open(listener.port, MAGIC + claim)
        code, reason = await peer.goaway() or (None, "")
        assert code == GoAwayCode.FRAME_TOO_LARGE and str(MAX_HELLO_LENGTH) in reason
        # a token length of 65535 in a short frame
        raw = HELLO_FORMAT.pack(b"a" * 16, FEATURE_TOKEN, 1 << 20, 1 << 20, 0)
        raw += struct.pack("!H", 65535) + b"x" * 10
        frame = HEADER.pack(16 + len(raw), 1, 1, 0, 0, 0, 0) + raw
        peer2 = await Peer.open(listener.port, MAGIC + frame)
        code, reason = await peer2.goaway() or (None, "")
        assert code == GoAwayCode.PROTOCOL_ERROR and "65535" in reason
        assert gate.calls == []  # authenticate never saw them


async def test_a_slow_hello_and_a_slow_authenticate_are_cut_within_hello_timeout() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.acheck,
                                    hello_timeout=0.5)
        start = time.monotonic()
        half = await Peer.open(listener.port, _hello("tok-alice")[:30])
        stuck = await Peer.open(listener.port, _hello("hold"))
        assert (await half.goaway() or (None,))[0] == GoAwayCode.HELLO_TIMEOUT
        code, reason = await stuck.goaway() or (None, "")
        assert code == GoAwayCode.HELLO_TIMEOUT and "authentication" in reason
        assert time.monotonic() - start < 3.0  # 0.5 s deadline, generous under load
        await eventually(lambda: not listener.connections)
        assert listener.server is not None
        auth: Any = listener.server.auth  # type: ignore[attr-defined]
        await eventually(lambda: auth.running == 0)  # the cut cancelled its task


async def test_an_authentication_flood_does_not_block_other_clients() -> None:
    """Slow authentications run side by side (a good client is not queued behind them), at
    most ``max_authentications`` at once: one more is refused at once (OVERLOADED)."""
    gate = Gate()
    limit = 8
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, authenticate=gate.acheck,
                                    max_authentications=limit, hello_timeout=30.0)
        before = await net.connect("127.0.0.1", listener.port, token="tok-alice")
        flood = [await Peer.open(listener.port, _hello("hold")) for _ in range(limit - 1)]
        assert listener.server is not None
        auth: Any = listener.server.auth  # type: ignore[attr-defined]
        await eventually(lambda: auth.running == limit - 1)
        # a good client and an established one are served while the slow ones wait
        good = await net.connect("127.0.0.1", listener.port, token="tok-bob")
        for conn in (before, good):
            await net.send_data(conn, b"still here")
            assert (await net.receive(timeout=5.0)).data == b"still here"
        flood.append(await Peer.open(listener.port, _hello("hold")))
        await eventually(lambda: auth.running == limit)
        over = await Peer.open(listener.port, _hello("hold"))
        code, reason = await over.goaway() or (None, "")
        assert code == GoAwayCode.OVERLOADED and "too many authentications" in reason
        gate.release.set()  # the slow ones are refused at last
        for p in flood:
            assert (await p.goaway() or (None,))[0] == GoAwayCode.UNAUTHENTICATED
        await eventually(lambda: auth.running == 0)
        assert auth.busy == 1 and auth.refused == limit
