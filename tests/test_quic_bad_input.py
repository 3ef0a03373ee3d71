"""QUIC liveness and a listener under bad input: idle timeout, keepalive, max_connections,
the handshake deadline, garbage, floods, and an Initial flood from many ports answered with
Retry. Attackers are raw UDP sockets (their Initials built by aioquic's sans-I/O client)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("aioquic")

from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.connection import QuicConnection  # noqa: E402

from objtransport import ConnectError, Message, NetworkTransport  # noqa: E402
from objtransport.drivers.quic import RETRY_ABOVE, QuicServer  # noqa: E402
from objtransport.testing import eventually  # noqa: E402

from .test_quic import Pem, make_pem  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pem() -> Pem:
    return make_pem()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[NetworkTransport, NetworkTransport]]:
    async with NetworkTransport(timeout=5.0) as server, NetworkTransport(
            timeout=5.0, reconnect_interval=0.05, max_reconnect_attempts=0) as client:
        yield server, client


def _server(listener: Any) -> QuicServer:
    server = listener.server
    assert isinstance(server, QuicServer)
    return server


def _initial(port: int) -> bytes:
    """A real client Initial (what aioquic's client sends first), for raw sockets."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["objtransport/1"],
                               server_name="localhost")
    quic = QuicConnection(configuration=config)
    quic.connect(("127.0.0.1", port), now=time.monotonic())
    data, _ = quic.datagrams_to_send(now=time.monotonic())[0]
    return data


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind(("127.0.0.1", 0))
    return s


async def _echo_ok(client: NetworkTransport, port: int, pem: Pem) -> None:
    conn = await client.connect("127.0.0.1", port, transport="quic", **pem.client)
    await client.send_data(conn, b"still serving", wait_ack=True)
    await client.disconnect(conn)


# -- liveness -------------------------------------------------------------------------------
async def test_a_vanished_peer_is_dropped_after_the_idle_timeout(pem: Pem) -> None:
    async with NetworkTransport(timeout=5.0, keepalive_interval=0.2,
                                pong_timeout=0.3) as server, NetworkTransport(
            timeout=5.0, max_reconnect_attempts=0) as client:
        listener = await server.listen("127.0.0.1", 0, transport="quic", **pem.server)
        conn = await client.connect("127.0.0.1", listener.port, transport="quic",
                                    **pem.client)
        await client.send_data(conn, b"hi", wait_ack=True)
        assert _server(listener).connections == 1
        link = client.connection(conn).link
        link.pump.stop()  # the client vanishes: no packet, no close
        link.socket.close()
        t0 = asyncio.get_running_loop().time()
        await eventually(lambda: _server(listener).connections == 0, timeout=5)
        assert asyncio.get_running_loop().time() - t0 < 2.5  # 0.5 s of silence + draining
        assert server.get_metrics().errors >= 1
        link.abort()  # the vanished client's stop() would wait out its timeout for a FIN


@pytest.mark.parametrize("framing", ["native", "raw"])
async def test_keepalive_keeps_an_idle_connection_open(pem: Pem, framing: str) -> None:
    got: asyncio.Queue[Message] = asyncio.Queue()
    # Both peers run on this one loop: a stall of the loop (a loaded machine) is a silence of
    # both, which no keepalive can cover. The idle timeout (keepalive + pong_timeout) is
    # above the stalls seen: 0.2 s of pong_timeout failed at load 9, then 0.6 s failed at
    # load 7-9 with both peers reporting 1.9 s of silence (no timer ran for 1.2 s: not a
    # keepalive that stopped, which the other peer's PINGs would still have covered).
    opts = {"keepalive_interval": 0.1, "pong_timeout": 2.9}
    async with NetworkTransport(timeout=5.0, **opts) as server, NetworkTransport(  # type: ignore[arg-type]
            timeout=5.0, **opts) as client:  # type: ignore[arg-type]
        listener = await server.listen("127.0.0.1", 0, transport="quic", framing="auto",
                                       handler=lambda m: got.put_nowait(m), **pem.server)
        conn = await client.connect("127.0.0.1", listener.port, transport="quic",
                                    framing=framing, **pem.client)
        link = client.connection(conn).link
        # idle for 35 keepalive intervals: more than the idle timeout of 3 s
        if framing == "raw":
            await eventually(lambda: link.quic_pings >= 35, timeout=30)
        else:
            await eventually(lambda: link.session.pings_sent >= 35, timeout=30)
        assert client.connection(conn).link is link  # never reconnected
        await client.send_data(conn, b"alive")
        assert (await asyncio.wait_for(got.get(), 5)).data == b"alive"


# -- admission ------------------------------------------------------------------------------
async def test_max_connections_refuses_the_next_one(pair: Any, pem: Pem) -> None:
    server, client = pair
    listener = await server.listen("127.0.0.1", 0, transport="quic", max_connections=2,
                                   **pem.server)
    conns = [await client.connect("127.0.0.1", listener.port, transport="quic",
                                  **pem.client) for _ in range(2)]
    with pytest.raises(ConnectError, match="CONNECTION_REFUSED|too many"):
        await client.connect("127.0.0.1", listener.port, transport="quic", **pem.client)
    assert _server(listener).refused == 1
    await client.disconnect(conns[0])
    await eventually(lambda: _server(listener).connections == 1)
    await _echo_ok(client, listener.port, pem)


async def test_a_handshake_that_never_finishes_is_dropped_at_the_deadline(
        pem: Pem) -> None:
    async with NetworkTransport(timeout=0.5) as server:
        listener = await server.listen("127.0.0.1", 0, transport="quic", **pem.server)
        srv = _server(listener)
        attacker = _udp()
        try:
            attacker.sendto(_initial(listener.port), ("127.0.0.1", listener.port))
            await eventually(lambda: srv.handshaking == 1)
            await eventually(lambda: srv.handshake_timeouts == 1, timeout=3)
            assert srv.connections == 0 and srv.handshaking == 0
        finally:
            attacker.close()


# -- garbage and floods ---------------------------------------------------------------------
async def test_garbage_and_floods_are_counted_and_dropped(pair: Any, pem: Pem) -> None:
    server, client = pair
    listener = await server.listen("127.0.0.1", 0, transport="quic", **pem.server)
    srv = _server(listener)
    addr = ("127.0.0.1", listener.port)
    attacker = _udp()
    initial = _initial(listener.port)
    try:
        cases = [
            b"",  # empty
            b"\x00",  # one byte
            os.urandom(1200),  # random, full size
            b"\x40" + os.urandom(40),  # a short header for no connection we know
            initial[:600],  # an Initial too small to be one (no amplification)
            bytes([initial[0]]) + b"\x1a\x2a\x3a\x4a" + initial[5:],  # unknown version
            bytes([initial[0]]) + b"\x1a\x2a\x3a\x4a" + initial[5:300],  # ... small
        ]
        for data in cases:
            attacker.sendto(data, addr)
        for _ in range(5000):  # a flood of short-header junk from one port
            try:
                attacker.sendto(b"\x41" + os.urandom(60), addr)
            except BlockingIOError:
                await asyncio.sleep(0)
        await eventually(lambda: srv.garbage >= 5)
        assert srv.version_negotiations == 1  # only the full-size one is answered
        assert srv.connections == 0
        await _echo_ok(client, listener.port, pem)
        assert srv.connections <= 1
    finally:
        attacker.close()


async def test_an_initial_flood_from_many_ports_gets_retry_and_clients_still_connect(
        pem: Pem) -> None:
    async with NetworkTransport(timeout=3.0) as server, NetworkTransport(
            timeout=5.0, max_reconnect_attempts=0) as client:
        listener = await server.listen("127.0.0.1", 0, transport="quic", **pem.server)
        srv = _server(listener)
        addr = ("127.0.0.1", listener.port)
        attackers = [_udp() for _ in range(150)]
        initials = [_initial(listener.port) for _ in attackers]
        try:
            for s, data in zip(attackers, initials, strict=True):
                s.sendto(data, addr)
            await eventually(lambda: srv.handshaking + srv.retries >= 150, timeout=10)
            assert srv.handshaking <= RETRY_ABOVE  # state for at most this many
            assert srv.retries >= 150 - RETRY_ABOVE
            # Retry packets went back to the attackers' ports (stateless: a token each)
            answered = 0
            for s in attackers:
                try:
                    while s.recv(2048):
                        answered += 1
                except BlockingIOError:
                    pass
            assert answered >= 150 - RETRY_ABOVE
            # a real client, while the listener is busy: answers the Retry, connects
            assert srv.handshaking == RETRY_ABOVE
            before = srv.retries
            await _echo_ok(client, listener.port, pem)
            assert srv.retries == before + 1
            # the half-open ones go at the handshake deadline
            await eventually(lambda: srv.handshaking == 0 and srv.connections == 0,
                             timeout=8)
        finally:
            for s in attackers:
                s.close()
