"""SO_RCVLOWAT while a plain TCP link receives a large frame body (drivers/rcvlowat.py):
large messages arrive intact, and a peer that stops mid-body is still cut by a deadline
(bytes waiting below the mark do not hold the link for ever)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from objtransport import NetworkTransport
from objtransport.drivers.rcvlowat import LOWAT_CAP, RcvLowat
from objtransport.sansio.raw_decoder import RawDecoder

RAW_LEN = struct.Struct("!I")


@pytest.mark.parametrize("framing", ["native", "raw"])
async def test_large_messages_over_plain_tcp_arrive_intact(net: NetworkTransport,
                                                           framing: str) -> None:
    listener = await net.listen("127.0.0.1", 0, framing=framing)
    conn = await net.connect("127.0.0.1", listener.port, framing=framing)
    sizes = [3 * 1024 * 1024 + 7, 300 * 1024, 100, 1024 * 1024]
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    for p in payloads:  # distinct byte patterns: a misplaced chunk shows
        await net.send_data(conn, p)
    got = [(await net.receive(timeout=10.0)).data for _ in payloads]
    assert got == payloads


async def test_a_peer_that_stops_mid_body_is_cut_by_the_idle_deadline(
        net: NetworkTransport) -> None:
    """A raw peer declares a 1 MiB frame, sends 8 KiB of it (the listener's mark goes up),
    then 8 KiB more (they wait below the mark), then nothing: the idle deadline still cuts
    it (the deadline puts the mark back to 1; the read that follows is its last)."""
    idle = 0.3
    listener = await net.listen("127.0.0.1", 0, framing="raw", idle_timeout=idle)
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(RAW_LEN.pack(1024 * 1024) + b"a" * 8192)
        await writer.drain()
        await asyncio.sleep(0.05)  # the attack's own pace: a second segment, later
        writer.write(b"b" * 8192)
        await writer.drain()
        try:
            async with asyncio.timeout(10):
                while await reader.read(4096):
                    pass
        except ConnectionError:
            pass
        cut = loop.time() - start
    finally:
        writer.close()
    assert cut < 2 * idle + 2.0, cut
    assert not listener.connections


async def test_the_mark_follows_the_body_left_and_never_exceeds_it() -> None:
    """On a real loopback socket: the mark is min(body left, cap) inside a large body, 1
    between frames; the kernel holds the value asked for."""
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname()[:2])
    peer, _ = srv.accept()
    try:
        mark = RcvLowat(peer)
        dec = RawDecoder(0, "tcp", None, 16 * 1024 * 1024)

        def kernel() -> int:
            return peer.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

        size = 1024 * 1024
        dec.feed(RAW_LEN.pack(size) + b"x" * 1000)
        mark.follow(dec)
        assert mark.mark == LOWAT_CAP == kernel()
        dec.feed(b"x" * (size - 1000 - 100_000))
        mark.follow(dec)
        assert mark.mark == 100_000 == kernel() == dec.body_left
        dec.feed(b"x" * 40_000)  # 60,000 left: small enough to read as it comes
        mark.follow(dec)
        assert mark.mark == 1 == kernel()
        dec.feed(b"x" * 60_000)
        assert [len(m) for m in dec.take_messages()] == [size]  # type: ignore[arg-type]
        assert dec.body_left == 0
        dec.feed(RAW_LEN.pack(size))
        mark.follow(dec)
        assert mark.mark == LOWAT_CAP
        mark.reset()
        assert mark.mark == 1 == kernel()
    finally:
        for s in (cli, peer, srv):
            s.close()
