"""A UDP listener's slots against forged and one-shot source addresses (issue 12, item 8).

Native: no state for an address until it echoed the cookie of a PONG sent to it
(docs/protocol.md 6.1), so forged PINGs take no slot. A full listener forgets its longest-idle
peer for a new one that passed the check. Raw: a peer nobody answered is forgotten after
``handshake_timeout`` of silence, and a full listener evicts too. Attackers are plain
sockets, one per source port.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from objtransport import NetworkTransport
from objtransport.config import Options
from objtransport.drivers.udp import UdpServer
from objtransport.listener import Listener
from objtransport.sansio.datagram import DatagramSession
from objtransport.sansio.framing import FrameType, encode_frame
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)

PING = encode_frame(FrameType.PING, b"\x00" * 7 + b"\x01")


def _server(listener: Listener) -> UdpServer:
    server = listener.server
    assert isinstance(server, UdpServer)
    return server


def _sockets(n: int) -> list[socket.socket]:
    """``n`` plain UDP sockets on ``n`` source ports."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


async def _recv(sock: socket.socket) -> bytes:
    sock.settimeout(5.0)
    return await asyncio.to_thread(sock.recv, 100)


async def test_forged_pings_from_200_ports_take_no_slot() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", max_connections=200)
        server = _server(listener)
        socks = _sockets(200)
        try:
            for s in socks:  # one 28-byte PING each, never followed up (a forged source)
                s.sendto(PING, ("127.0.0.1", listener.port))
            await eventually(lambda: server.cookies_sent == 200)
            assert not listener.connections and not server.links
            # the listener has every slot for an honest client, at once
            t0 = time.monotonic()
            conn = await net.connect("127.0.0.1", listener.port, transport="udp")
            assert time.monotonic() - t0 < 1.0
            await net.send_data(conn, b"in")
            assert (await net.receive(timeout=5.0)).data == b"in"
            assert len(listener.connections) == 1
        finally:
            for s in socks:
                s.close()


async def test_a_plain_socket_that_echoes_the_cookie_is_admitted() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp")
        server = _server(listener)
        (s,) = _sockets(1)
        try:
            s.connect(("127.0.0.1", listener.port))
            s.send(PING)
            pong = await _recv(s)
            assert len(pong) == 36 and pong[5] == FrameType.PONG and pong[20:28] == PING[20:]
            assert not server.links
            s.send(encode_frame(FrameType.PING, PING[20:] + b"\xff" * 8))  # a wrong cookie
            again = await _recv(s)
            assert len(again) == 36 and not server.links  # a fresh cookie, no state
            s.send(encode_frame(FrameType.PING, PING[20:] + pong[28:]))
            plain = await _recv(s)
            assert len(plain) == 28 and plain[20:] == PING[20:]  # the admitted peer's PONG
            assert s.getsockname() in server.links and len(listener.connections) == 1
        finally:
            s.close()


async def test_a_cookie_is_bound_to_its_address() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp")
        server = _server(listener)
        a, b = _sockets(2)
        try:
            a.sendto(PING, ("127.0.0.1", listener.port))
            cookie = (await _recv(a))[28:]
            b.sendto(encode_frame(FrameType.PING, PING[20:] + cookie),
                     ("127.0.0.1", listener.port))
            assert len(await _recv(b)) == 36  # refused: answered with b's own cookie
            assert not server.links and server.cookies_sent == 2
        finally:
            a.close()
            b.close()


async def test_a_full_listener_evicts_its_longest_idle_peer() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", max_connections=2)
        server = _server(listener)
        old, busy = [await net.connect("127.0.0.1", listener.port, transport="udp")
                     for _ in range(2)]
        await net.send_data(old, b"old")
        first = await net.receive(timeout=5.0)
        await net.send_data(busy, b"busy")
        await net.receive(timeout=5.0)
        new = await net.connect("127.0.0.1", listener.port, transport="udp")
        assert server.evicted_peers == 1
        await eventually(lambda: first.conn_id not in listener.connections)
        await net.send_data(new, b"new")
        assert (await net.receive(timeout=5.0)).data == b"new"
        assert len(listener.connections) == 2 and net.get_metrics().errors == 0


async def test_old_clients_are_admitted_on_the_first_ping_when_asked() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", udp_return_check=False)
        (s,) = _sockets(1)
        try:
            s.sendto(PING, ("127.0.0.1", listener.port))
            assert len(await _recv(s)) == 28  # the PONG of before the cookie
            assert len(listener.connections) == 1 and _server(listener).cookies_sent == 0
        finally:
            s.close()


async def test_raw_one_shot_peers_are_bounded() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        # a handshake_timeout far past the test's end: none of the 200 can expire before
        # the late peer comes, however loaded the machine (with 0.5 s, then 1.5 s, some
        # did, the late peer took a free slot, and nothing was evicted)
        listener = await net.listen("127.0.0.1", 0, transport="udp", framing="raw",
                                    max_connections=200, handshake_timeout=60.0)
        server = _server(listener)
        socks = _sockets(201)
        try:
            for s in socks[:200]:
                s.sendto(b"x", ("127.0.0.1", listener.port))
            await eventually(lambda: len(listener.connections) == 200)
            # full: a new peer evicts the one silent the longest, it is not refused
            # (the evicted peer's slot is free once its connection is torn down, a loop
            # turn later: the datagram that evicted it may be dropped)
            def late_admitted() -> bool:
                socks[200].sendto(b"late", ("127.0.0.1", listener.port))
                return socks[200].getsockname() in server.links
            await eventually(late_admitted, timeout=5.0, interval=0.05)
            assert server.evicted_peers >= 1 and len(listener.connections) <= 200
            # peers nobody answered go after handshake_timeout (not idle_timeout, 300 s)
            short = await net.listen("127.0.0.1", 0, transport="udp", framing="raw",
                                     handshake_timeout=1.5)
            socks[0].sendto(b"x", ("127.0.0.1", short.port))
            await eventually(lambda: len(short.connections) == 1)
            t0 = time.monotonic()
            await eventually(lambda: not short.connections, timeout=10.0)
            assert time.monotonic() - t0 < 1.5 + 2.0
        finally:
            for s in socks:
                s.close()


def test_a_raw_peer_that_was_answered_keeps_idle_timeout() -> None:
    options = Options(handshake_timeout=0.5, idle_timeout=300.0)
    ds = DatagramSession(options, 1, "udp", ("127.0.0.1", 9), 100.0, native=False,
                         role="server")
    ds.receive_datagram(b"hi", 100.0)
    assert ds.next_deadline() == 100.5  # nobody answered it yet: maybe a forged source
    ds.send_message(b"ok")
    assert ds.next_deadline() == 400.0  # answered: the ordinary idle_timeout
