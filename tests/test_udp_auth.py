"""Authentication over UDP (issue 12, item 16): the token rides after the return-path
cookie of the PING that admits a peer (docs/protocol.md sections 6.1 and 9). The listener
calls ``authenticate`` only for an address that proved itself, keeps no link until the
answer, and refuses with one GOAWAY. Attackers are plain UDP sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from objtransport import AuthenticationError, CircuitOpenError, NetworkTransport
from objtransport.sansio.admission import encode_credential
from objtransport.sansio.framing import FrameType, GoAwayCode, decode_goaway, encode_frame
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)

TOKEN = b"\x00" * 7 + b"\x07"


class Gate:
    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self.release = asyncio.Event()

    async def check(self, token: str | None) -> str | None:
        self.calls.append(token)
        if token == "hold":
            await self.release.wait()
        return "alice" if token == "tok-alice" else None


class Attacker:
    """A plain UDP socket that answers the cookie, then sends what the test says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def recv(self) -> bytes:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            return await loop.sock_recv(self.sock, 65536)

    async def cookie(self) -> bytes:
        self.sock.sendto(encode_frame(FrameType.PING, TOKEN), ("127.0.0.1", self.port))
        pong = await self.recv()
        assert pong[5] == FrameType.PONG and len(pong) == 36
        return pong[28:]

    async def ping(self, tail: bytes) -> None:
        """The admitting PING: token, cookie, then ``tail``."""
        cookie = await self.cookie()
        self.sock.sendto(encode_frame(FrameType.PING, TOKEN + cookie + tail),
                         ("127.0.0.1", self.port))

    async def goaway(self) -> tuple[int, str]:
        while True:
            dgram = await self.recv()
            if dgram[5] == FrameType.GOAWAY:
                return decode_goaway(dgram[20:])

    def close(self) -> None:
        self.sock.close()


async def test_a_token_gives_the_identity_and_a_refusal_is_not_retried() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0, failure_threshold=2) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", authenticate=gate.check)
        conn = await net.connect("127.0.0.1", listener.port, transport="udp",
                                 token="tok-alice")
        await net.send_data(conn, b"hi")
        msg = await net.receive(timeout=5.0)
        assert (msg.data, msg.identity) == (b"hi", "alice")
        assert net.connection_info(msg.conn_id).identity == "alice"
        for kwargs in ({"token": "wrong"}, {}):
            with pytest.raises(AuthenticationError, match="authentication refused"):
                await net.connect("127.0.0.1", listener.port, transport="udp", **kwargs)
        assert gate.calls == ["tok-alice", "wrong", None]  # once each: no retry
        with pytest.raises(CircuitOpenError):
            await net.connect("127.0.0.1", listener.port, transport="udp", token="tok-alice")
        assert len(listener.connections) == 1


async def test_attackers_get_no_link_and_no_call() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", authenticate=gate.check)
        counters: Any = listener.server
        no_token, bad_length, data_first = (Attacker(listener.port) for _ in range(3))
        try:
            await no_token.ping(b"")  # proves its address, has no token
            assert await no_token.goaway() == (GoAwayCode.UNAUTHENTICATED,
                                                "authentication refused")
            await bad_length.ping(b"\xff\xff" + b"x" * 10)  # a length it does not have
            code, reason = await bad_length.goaway()
            assert code == GoAwayCode.PROTOCOL_ERROR and "token" in reason
            # DATA from an unknown address: a cookie PONG, never a delivery
            data_first.sock.sendto(encode_frame(FrameType.DATA, b"sneaky", seq=1, priority=2),
                                   ("127.0.0.1", listener.port))
            pong = await data_first.recv()
            assert pong[5] == FrameType.PONG
            assert gate.calls == [None]  # the malformed one never reached authenticate
            assert not listener.connections and net.get_metrics().messages_received == 0
            assert counters.counters()["auth_refused"] == 1
        finally:
            for a in (no_token, bad_length, data_first):
                a.close()


async def test_a_slow_authenticate_is_cut_at_hello_timeout_and_asked_once() -> None:
    gate = Gate()
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", authenticate=gate.check,
                                    hello_timeout=0.5)
        server: Any = listener.server
        slow = Attacker(listener.port)
        try:
            start = time.monotonic()
            tail = encode_credential("hold")
            await slow.ping(tail)
            await eventually(lambda: gate.calls == ["hold"])
            cookie = await slow.cookie()  # it repeats its admitting PING meanwhile
            slow.sock.sendto(encode_frame(FrameType.PING, TOKEN + cookie + tail),
                             ("127.0.0.1", listener.port))
            code, reason = await slow.goaway()
            assert code == GoAwayCode.HELLO_TIMEOUT and "authentication" in reason
            assert time.monotonic() - start < 3.0  # 0.5 s deadline, generous under load
            assert gate.calls == ["hold"] and server.counters()["auth_dropped"] == 1
            await eventually(lambda: server.auth.gate.running == 0)
            assert not listener.connections
        finally:
            slow.close()


async def test_options_that_cannot_carry_a_token_are_refused() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        with pytest.raises(ValueError, match="udp_return_check"):
            await net.listen("127.0.0.1", 0, transport="udp", udp_return_check=False,
                             authenticate=lambda t: "x")
        with pytest.raises(ValueError, match="raw"):
            await net.listen("127.0.0.1", 0, transport="udp", framing="raw",
                             authenticate=lambda t: "x")
