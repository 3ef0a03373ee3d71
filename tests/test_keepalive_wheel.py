"""Keepalive deadlines of many idle TCP links on one wheel (drivers/link_wheel.py), over real
sockets on loopback (docs/design.md, "Keepalive without garbage").

A keepalive interval and pong timeout of at least ``NEAR`` put the listener's links' deadlines
on its loop's wheel: each link is PINGed every interval (late by at most a bucket and the
loop's own lateness, never early), a peer that does not answer is cut at its pong timeout,
a closed link leaves the wheel and is not kept by it, and a keepalive round makes no object
per link for the garbage collector (a loop timer per link made three).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import struct
import weakref
from time import monotonic
from typing import Any

import pytest

from objtransport import NetworkTransport
from objtransport.drivers.link_wheel import NEAR, LoopWheel, wheel_for
from objtransport.sansio.framing import MAGIC, FrameType, Hello, encode_frame, encode_hello
from objtransport.sansio.timer_wheel import RESOLUTION
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)

_LEN = struct.Struct("!I")
KA, PONG = 0.5, 0.5  # both far enough for the wheel
#: how much later one PING may reach its peer than the next (a busy loop on either side)
DELIVERY_JITTER = 0.1
assert KA >= NEAR and PONG >= NEAR


class Peer(asyncio.Protocol):
    """An idle native client by hand (HELLO without ACKs): notes when each PING came and
    answers it, unless ``mute``; notes when the listener closed the connection."""

    def __init__(self, mute: bool = False) -> None:
        self.mute = mute
        self.buf = bytearray()
        self.preface = False
        self.opened_at = 0.0
        self.pings: list[float] = []
        self.goaway = False
        self.lost_at: float | None = None
        self.t: Any = None

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.opened_at = monotonic()
        transport.write(MAGIC + encode_hello(Hello(os.urandom(16), 0, 1 << 20, 1 << 20)))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.preface and len(buf) >= 4:
            del buf[:4]
            self.preface = True
        while self.preface and len(buf) >= 4:
            (length,) = _LEN.unpack_from(buf)
            if len(buf) < 4 + length:
                break
            ftype = buf[5]
            if ftype == FrameType.PING:
                self.pings.append(monotonic())
                if not self.mute:
                    self.t.write(encode_frame(FrameType.PONG, bytes(buf[20:4 + length])))
            elif ftype == FrameType.GOAWAY:
                self.goaway = True
            del buf[:4 + length]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = monotonic()


async def _open(port: int, n: int, mute: bool = False) -> list[Peer]:
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(n):
        _, peer = await loop.create_connection(lambda: Peer(mute), "127.0.0.1", port)
        peers.append(peer)
    return peers


async def test_many_links_are_pinged_on_time_and_a_silent_peer_is_cut_at_its_timeout() -> None:
    """60 idle links on one listener, 15 of them to peers that never answer a PING: the
    others get a PING every KA s (the intervals' median at most a bucket late and what a
    loaded machine adds, none more than a bucket early: the delivery's jitter), the silent
    ones are cut with a GOAWAY KA + PONG after their HELLO (counted from the PING sent as
    the HELLO is read); every open link is on the wheel and none has a loop timer of its
    own; once closed, none is left on it nor kept alive by it."""
    n_ok, n_mute = 45, 15
    async with NetworkTransport(keepalive_interval=KA, pong_timeout=PONG,
                                max_connections=100) as net:
        listener = await net.listen("127.0.0.1", 0)
        wheel = wheel_for(asyncio.get_running_loop()).wheel
        ok = await _open(listener.port, n_ok)
        mute = await _open(listener.port, n_mute, mute=True)
        try:
            await eventually(lambda: all(p.lost_at is not None for p in mute), timeout=20.0)
            await eventually(lambda: all(len(p.pings) >= 4 for p in ok), timeout=20.0)
            links = [net.connection(c).link for c in listener.connections]
            assert len(links) == n_ok and all(p.lost_at is None for p in ok)
            assert all(link is not None and link in wheel and not link.timer_armed
                       for link in links)
            assert len(wheel) == n_ok
        finally:
            for p in ok + mute:
                p.t.abort()
        gaps = [b - a for p in ok for a, b in zip(p.pings, p.pings[1:], strict=False)]
        # not early: a gap between two PINGs as the peer reads them may shrink by one PING's
        # delivery delay (the wheel never fires early: tests/sansio/test_timer_wheel.py),
        # so the bound allows a loaded machine's DELIVERY_JITTER on top of a bucket
        assert min(gaps) >= KA - RESOLUTION - DELIVERY_JITTER, min(gaps)
        assert statistics.median(gaps) <= KA + RESOLUTION + 0.15, statistics.median(gaps)
        assert max(gaps) <= KA + 2.0, max(gaps)  # bounded even on a loaded machine
        cut = [p.lost_at - p.opened_at for p in mute if p.lost_at is not None]
        assert all(p.goaway for p in mute) and len(cut) == n_mute
        assert min(cut) >= KA + PONG - RESOLUTION, min(cut)
        # late by a bucket and the loop's lateness at most (median): measured from the PING
        # the listener sends as the handshake ends (it goes when the HELLO is read, the
        # instant the cut counts from), not from opened_at: opening 60 connections on a
        # loaded machine delays the reading of a HELLO (median 1.30 s from opened_at once in
        # make test, under load)
        after = [p.lost_at - p.pings[0] for p in mute if p.lost_at is not None and p.pings]
        assert len(after) == n_mute
        assert statistics.median(after) <= KA + PONG + RESOLUTION + 0.2, statistics.median(after)
        refs = [weakref.ref(link) for link in links if link is not None]
        del links
        await eventually(lambda: len(listener.connections) == 0, timeout=10.0)
    assert len(wheel) == 0
    gc.collect()
    assert all(r() is None for r in refs)


async def test_a_keepalive_round_makes_no_object_per_link_for_the_collector() -> None:
    """40 idle links PINGed every 0.3 s: over 3 rounds, the objects the collector tracks
    that were made and are still alive are fewer than 0.5 per link (a loop timer per link
    re-armed each round left 3: the TimerHandle, its context, the bound method, each
    living a whole round and so reaching the oldest generation)."""
    n, ka = 40, 0.3
    assert ka >= NEAR
    async with NetworkTransport(keepalive_interval=ka, pong_timeout=5.0,
                                max_connections=n + 10) as net:
        listener = await net.listen("127.0.0.1", 0)
        peers = await _open(listener.port, n)
        try:
            await eventually(lambda: all(len(p.pings) >= 2 for p in peers), timeout=20.0)
            gc.collect()
            gc.freeze()
            try:
                start = [len(p.pings) for p in peers]
                await eventually(lambda: all(len(p.pings) >= s + 3
                                             for p, s in zip(peers, start, strict=True)),
                                 timeout=20.0, interval=0.05)
                gc.collect()
                made = gc.get_objects()
            finally:
                gc.unfreeze()
            per_link = len(made) / n
            assert per_link < 0.5, (per_link, [type(o).__name__ for o in made[:20]])
        finally:
            for p in peers:
                p.t.abort()


class _Faulty:
    def deadline_came(self, now: float) -> None:
        raise RuntimeError("a link's timer failed")


class _Waiting:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.came: asyncio.Future[float] = loop.create_future()

    def deadline_came(self, now: float) -> None:
        self.came.set_result(now)


async def test_one_items_fault_reaches_the_loops_handler_and_stops_no_other() -> None:
    """Two items in one bucket, the first raising: the second's deadline still comes (not
    before it), the fault goes to the loop's exception handler; one wheel per loop."""
    loop = asyncio.get_running_loop()
    assert wheel_for(loop) is wheel_for(loop)
    seen: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx["exception"]))
    lw = LoopWheel(loop)
    try:
        at = monotonic() + 0.05
        waiting = _Waiting(loop)
        lw.wheel.file(_Faulty(), at)
        lw.wheel.file(waiting, at)
        assert lw.armed_at <= at + RESOLUTION
        now = await asyncio.wait_for(waiting.came, 10.0)
        assert now >= at
        assert len(seen) == 1 and isinstance(seen[0], RuntimeError)
        assert len(lw.wheel) == 0
    finally:
        lw.close()
        loop.set_exception_handler(None)


def test_each_loop_has_its_own_wheel_and_a_closed_loop_is_not_kept_by_it() -> None:
    """Links of two loops (two threads, say) never share a wheel; the registry holds a loop
    weakly and its wheel holds it weakly too."""
    a, b = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert wheel_for(a) is wheel_for(a)
        assert wheel_for(a) is not wheel_for(b)
    finally:
        a.close()
        b.close()
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None


def _loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a test dependency except on Windows
        return ["default"]
    return ["default", "uvloop"]


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", _loops())
def test_a_loop_closed_with_links_still_on_its_wheel_is_not_kept_alive(kind: str) -> None:
    """A program whose loop ends without stopping its service (asyncio.run returning with
    connections open): its links are still filed in the loop's wheel. The loop, the links
    and their sockets must still be freed by the collector, as they were with a loop timer
    per link; the registry's entry must not keep them (a wheel holds its links, a link its
    loop: a strong value in the weak mapping would keep its own key alive for ever)."""
    if kind == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def leave_links_on_the_wheel() -> weakref.ref[Any]:
        net = NetworkTransport(keepalive_interval=KA, pong_timeout=PONG)
        await net.__aenter__()  # and never left: the loop ends with the service running
        listener = await net.listen("127.0.0.1", 0)
        await _open(listener.port, 3)
        wheel = wheel_for(asyncio.get_running_loop()).wheel
        await eventually(lambda: len(wheel) == 3, timeout=20.0)
        return weakref.ref(net.connection(net.connections()[0]).link)

    try:
        link = loop.run_until_complete(asyncio.wait_for(leave_links_on_the_wheel(), 30.0))
    finally:
        loop.close()
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert link() is None
    assert ref() is None


async def test_keepalive_for_ever_keeps_the_link_and_its_messages() -> None:
    """``keepalive_interval`` and ``pong_timeout`` of infinity are valid options (no PING,
    no pong timeout): the link's deadline is then infinity, which the wheel must take as
    never, not fail the link when its handshake ends (OverflowError in a bucket key)."""
    inf = float("inf")
    async with NetworkTransport(keepalive_interval=inf, pong_timeout=inf) as a, \
            NetworkTransport(keepalive_interval=inf, pong_timeout=inf) as b:
        listener = await a.listen("127.0.0.1", 0)
        conn = await b.connect("127.0.0.1", listener.port)
        await b.send_data(conn, b"ping")
        msg = await a.receive(timeout=10.0)
        assert msg.data == b"ping"
        await a.send_data(msg.conn_id, b"pong")
        assert (await b.receive(timeout=10.0)).data == b"pong"
        assert len(listener.connections) == 1
        link = a.connection(msg.conn_id).link
        assert link is not None and link not in wheel_for(asyncio.get_running_loop()).wheel
