"""A full UDP listener evicts proven peers at a bounded rate (issue 12, hardening gaps):
addresses that pass the cookie check cannot churn the peers in place out faster than
``EvictionBudget`` allows; past it a new peer is refused and the old ones stay. Attackers
are plain UDP sockets that answer the cookie."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from objtransport import NetworkTransport
from objtransport.sansio.admission import EVICT_MIN, EvictionBudget
from objtransport.sansio.framing import FrameType, encode_frame
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)

PING = encode_frame(FrameType.PING, b"\x00" * 7 + b"\x01")
ATTACKERS = 30


def test_the_budget_is_a_bucket_and_unproven_peers_are_free() -> None:
    budget = EvictionBudget(120, now=0.0)  # max(4, 120 / 60) = 4 per second, burst 4
    assert [budget.allow(True, 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert budget.allow(False, 0.0)  # a raw peer nobody answered costs nothing
    assert budget.allow(True, 0.25) and not budget.allow(True, 0.25)
    big = EvictionBudget(60_000, now=0.0)  # 1000 per second
    assert sum(big.allow(True, 0.0) for _ in range(2000)) == 1000
    assert budget.refused == 2 and big.refused == 1000


async def test_proven_addresses_cannot_churn_a_full_listener() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", max_connections=3)
        server: Any = listener.server
        clients = [await net.connect("127.0.0.1", listener.port, transport="udp")
                   for _ in range(3)]
        await eventually(lambda: len(listener.connections) == 3)
        socks = []
        for _ in range(ATTACKERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
        try:
            cookies = []
            loop = asyncio.get_running_loop()
            for s in socks:  # each proves its address: a real source, not a forged one
                s.sendto(PING, ("127.0.0.1", listener.port))
                async with asyncio.timeout(5):
                    cookies.append((await loop.sock_recv(s, 100))[28:])
            start = time.monotonic()
            for s, cookie in zip(socks, cookies, strict=True):
                refused = server.evictions.refused
                ping = encode_frame(FrameType.PING, PING[20:] + cookie)

                def settled(s: socket.socket = s, ping: bytes = ping,
                            refused: int = refused) -> bool:
                    """Sent again until it is in, or the budget refused it (a peer evicted
                    for it frees its slot a loop turn later: the PING that evicted it may be
                    refused, a client sends it again)."""
                    s.sendto(ping, ("127.0.0.1", listener.port))
                    return (s.getsockname() in server.links
                            or server.evictions.refused > refused)

                await eventually(settled, interval=0.02)
            elapsed = time.monotonic() - start
            # the burst, plus the refill over the time the attack took (typically < 1 s:
            # 4 to 8 of the 30 got in, the others were refused)
            bound = EVICT_MIN * (1 + elapsed) + 1
            assert server.evicted_peers <= bound
            assert server.evictions.refused >= ATTACKERS - bound
            assert len(listener.connections) <= 3
            assert server.counters()["evictions_refused"] == server.evictions.refused
        finally:
            for s in socks:
                s.close()
        assert len(clients) == 3
        print(f"\n{ATTACKERS} proven attackers in {elapsed:.2f} s: {server.evicted_peers} "
              f"evictions, {server.evictions.refused} refused")
