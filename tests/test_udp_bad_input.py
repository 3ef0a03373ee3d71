"""Misbehaving UDP peers over real sockets: nothing crashes the listener, grows memory without
bound or disturbs another peer; every bad datagram is counted."""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from objtransport import NetworkTransport
from objtransport.drivers.udp import UdpServer
from objtransport.listener import Listener
from objtransport.sansio.framing import (
    FrameType,
    encode_data,
    encode_data_fragment_header,
    encode_frame,
)
from objtransport.sansio.reassembly import PARTIAL_OVERHEAD, PIECE_OVERHEAD
from objtransport.testing import eventually


@dataclass
class Target:
    net: NetworkTransport
    listener: Listener
    good: int  # a well-behaved client connection

    @property
    def server(self) -> UdpServer:
        assert isinstance(self.listener.server, UdpServer)
        return self.listener.server

    async def healthy(self) -> None:
        """The good peer still works both ways, and a new peer is still admitted."""
        net = self.net
        await net.send_data(self.good, b"still alive" * 300)  # 3 fragments
        msg = await net.receive(timeout=5.0)
        assert msg.data == b"still alive" * 300
        await net.send_data(msg.conn_id, b"pong")
        assert (await net.receive(self.good, timeout=5.0)).data == b"pong"
        other = await net.connect("127.0.0.1", self.listener.port, transport="udp")
        await net.send_data(other, b"new one")
        assert (await net.receive(timeout=5.0)).data == b"new one"
        await net.disconnect(other)

    def peer_counters(self, addr: tuple[str, int]) -> dict[str, int]:
        link = self.server.links[addr]
        return link.ds.loss_counters()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with NetworkTransport(timeout=5.0, max_partial_messages=16,
                                max_reassembly_bytes=1024 * 1024) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp")
        good = await net.connect("127.0.0.1", listener.port, transport="udp")
        yield Target(net, listener, good)


class Attacker:
    """A plain socket: first a valid PING (so the listener admits it), then anything."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self.sock.connect(("127.0.0.1", port))
        self.addr = self.sock.getsockname()

    async def admit(self, target: Target) -> None:
        """PING, take the cookie from the PONG, PING with it (docs/protocol.md 6.1)."""
        self.sock.send(encode_frame(FrameType.PING, b"\x00" * 8))
        self.sock.settimeout(5.0)
        pong = await asyncio.to_thread(self.sock.recv, 100)
        assert len(pong) == 36
        self.sock.send(encode_frame(FrameType.PING, b"\x00" * 8 + pong[28:]))
        await eventually(lambda: self.addr in target.server.links)

    async def send_all(self, datagrams: list[bytes], burst: int = 100) -> None:
        """Paced, so the listener drains its socket between bursts."""
        for i in range(0, len(datagrams), burst):
            for d in datagrams[i:i + burst]:
                self.sock.send(d)
            await asyncio.sleep(0)

    def close(self) -> None:
        self.sock.close()


def frag(seq: int, offset: int, total: int, piece: bytes) -> bytes:
    return encode_data_fragment_header(len(piece), seq, 0, 2, offset, total) + piece


async def test_garbage_and_truncated_headers_from_a_known_peer(target: Target) -> None:
    bad = [os.urandom(n) for n in (1, 7, 19, 100, 1500)]
    bad += [b"\x00\x00\x00\x10" + b"\x01\x02", encode_data(b"x", 1, 0, 2)[:15]]
    a = Attacker(target.listener.port)
    try:
        await a.admit(target)
        await a.send_all(bad)
        await eventually(lambda: target.peer_counters(a.addr)["garbage"] == len(bad))
        await target.healthy()
    finally:
        a.close()


async def test_unknown_peers_are_counted_and_not_admitted(target: Target) -> None:
    before = len(target.net.connections())
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    try:
        for i, s in enumerate(socks):
            s.sendto([b"hello?", b"", b"\x00" * 19, os.urandom(600),
                      encode_frame(FrameType.PONG, b"\x00" * 8)][i],
                     ("127.0.0.1", target.listener.port))
        await eventually(lambda: target.server.unknown_peer_datagrams == 5)
        assert len(target.net.connections()) == before
        assert target.net.get_metrics().datagram["unknown_peer_datagrams"] == 5
        await target.healthy()
    finally:
        for s in socks:
            s.close()


async def test_a_fragment_claiming_4_gib(target: Target) -> None:
    a = Attacker(target.listener.port)
    try:
        await a.admit(target)
        tracemalloc.start()
        await a.send_all([frag(seq, 0, 0xFFFFFFFF, b"x" * 1000) for seq in range(1, 51)])
        await eventually(lambda: target.peer_counters(a.addr)["oversized"] == 50)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 4 * 1024 * 1024
        assert target.server.budget.used == 0
        await target.healthy()
    finally:
        a.close()


async def test_fragment_bomb_keeps_memory_bounded(target: Target) -> None:
    """20,000 distinct first fragments (over 1,000 times max_partial_messages), each of a
    1 MiB message that never completes: 20 GiB claimed."""
    a = Attacker(target.listener.port)
    try:
        await a.admit(target)
        budget = target.server.budget
        opts = target.listener.options
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        piece = b"b" * 1000
        for start in range(1, 20_001, 5_000):
            await a.send_all([frag(s, 0, 1024 * 1024, piece)
                              for s in range(start, start + 5_000)], burst=200)
            link = target.server.links[a.addr]
            assert link.ds.partial_messages <= opts.max_partial_messages
            assert link.ds.held <= opts.max_reassembly_bytes
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        c = target.peer_counters(a.addr)
        received = c["fragments_received"]
        assert received > 18_000  # paced bursts on loopback: (nearly) all arrive
        assert c["evicted"] == c["messages_dropped"] >= received - opts.max_partial_messages
        # each partial is charged its bytes and what holding them costs (issue 12, item 3)
        assert budget.peak <= opts.max_partial_messages * (1000 + PIECE_OVERHEAD
                                                           + PARTIAL_OVERHEAD)
        assert peak - base < 8 * 1024 * 1024  # ~16 partials of 1 kB, not 20,000 x 1 MiB
        await target.healthy()
    finally:
        a.close()


async def test_fragments_with_inconsistent_counts(target: Target) -> None:
    a = Attacker(target.listener.port)
    try:
        await a.admit(target)
        await a.send_all([
            frag(1, 0, 3000, b"a" * 1000),
            frag(1, 1000, 5000, b"b" * 1000),  # another total
            frag(1, 500, 3000, b"c" * 1000),  # overlaps the first
            frag(1, 2000, 3000, b"d" * 1500),  # overruns the total
            frag(1, 1000, 3000, b"e" * 700),  # a middle piece of another size
            frag(2, 10, 5, b"f" * 100),  # offset past the total
        ])
        await eventually(lambda: target.peer_counters(a.addr)["inconsistent"] == 5)
        link = target.server.links[a.addr]
        assert link.ds.partial_messages == 1 and link.ds.held == 1000
        await target.healthy()
    finally:
        a.close()
