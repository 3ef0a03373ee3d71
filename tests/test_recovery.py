"""Recovery under attack and under faults (issue 12, items 9-13), over real sockets.

Attackers are raw sockets; network faults come from objtransport.testing.FaultProxy. Each
test asserts the bound it measures (slots, time, counts)."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import time
from typing import TypeVar

import pytest

from objtransport import Message, NetworkTransport, SendTimeout, SessionLost
from objtransport.events import (
    Accepted,
    Connected,
    Disconnected,
    Event,
    GivenUp,
    Reconnecting,
    SessionResumed,
    Subscription,
)
from objtransport.sansio.framing import (
    FEATURE_ACKS,
    FEATURE_RESUME,
    HELLO_FORMAT,
    MAGIC,
    Hello,
    encode_hello,
)
from objtransport.testing import FaultProxy, eventually

from .conftest import TLS

E = TypeVar("E", bound=Event)
T = 10.0
_LINGER_RST = struct.pack("ii", 1, 0)


async def next_of(sub: Subscription, kind: type[E], timeout: float = T,
                  **match: object) -> E:
    """The next event of ``kind`` with the given field values."""
    async with asyncio.timeout(timeout):
        while True:
            ev = await sub.get()
            if isinstance(ev, kind) and all(getattr(ev, k) == v for k, v in match.items()):
                return ev


# -- 9. kept sessions hold no max_connections slot -------------------------------------------
async def _hello_then_rst(port: int) -> None:
    """A raw client: HELLO asking for ACKs and resume, wait for the listener's HELLO (the
    session is open), then RST (SO_LINGER 0): no FIN, no GOAWAY."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = Hello(os.urandom(16), FEATURE_ACKS | FEATURE_RESUME, 1 << 20, 1 << 20)
    writer.write(MAGIC + encode_hello(hello))
    await writer.drain()
    await reader.readexactly(4 + 20 + HELLO_FORMAT.size)  # the listener's HELLO
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


async def _attack(port: int, n: int) -> None:
    sem = asyncio.Semaphore(50)  # the attacker's own fd budget, not the listener's

    async def one() -> None:
        async with sem:
            await _hello_then_rst(port)

    async with asyncio.timeout(30):
        await asyncio.gather(*(one() for _ in range(n)))


async def test_reset_sessions_do_not_lock_a_full_listener() -> None:
    """300 raw sockets send HELLO (ACKs + resume), then RST, at a listener with
    ``max_connections=300``. Before: the 300 kept sessions held every slot for 60 s
    (``session_resume_timeout``) and a good client was refused. Now they wait in their
    own budget (``max_kept_sessions``) and a good client connects at once."""
    async with NetworkTransport() as server, NetworkTransport(
            max_reconnect_attempts=0) as client:
        listener = await server.listen("127.0.0.1", 0, max_connections=300)
        await _attack(listener.port, 300)
        await eventually(lambda: len(listener.kept) == 300, timeout=T)
        assert listener.live == 0 and listener.refused == 0
        t0 = time.perf_counter()
        conn = await client.connect("127.0.0.1", listener.port, timeout=2.0)
        await client.send_data(conn, b"hello", wait_ack=True, timeout=2.0)
        took = time.perf_counter() - t0
        assert took < 1.0, took
        assert listener.live == 1 and len(listener.kept) == 300


async def test_kept_sessions_past_the_budget_evict_the_oldest_and_its_client_learns() -> None:
    """A real client's session waits to be resumed (its link was reset while 10 of its
    messages were unacknowledged); then 20 raw HELLO+RST sessions arrive at a listener
    with ``max_kept_sessions=10``. The oldest kept sessions end at once (the budget holds),
    and the real client, when it comes back, gets ``SessionLost`` with its 10 messages,
    as after a listener restart."""
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.05, reconnect_multiplier=1.0, reconnect_jitter=False,
            max_reconnect_attempts=1000, failure_threshold=1000, timeout=0.5) as client:
        srv = server.events()
        listener = await server.listen("127.0.0.1", 0, max_kept_sessions=10)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            await client.send_data(conn, b"first", wait_ack=True)
            accepted = await next_of(srv, Accepted)
            proxy.blackhole(True)
            payloads = [b"lost-%d" % i for i in range(10)]
            for p in payloads:
                await client.send_data(conn, p)
            proxy.reset_all()
            await next_of(srv, Disconnected, conn_id=accepted.conn_id, final=False)
            await _attack(listener.port, 20)
            await next_of(srv, Disconnected, conn_id=accepted.conn_id, final=True)
            # 21 sessions in a budget of 10: 11 end early once the listener saw every RST
            await eventually(lambda: server.kept_sessions().evicted == 11)
            assert server.kept_sessions().waiting == len(listener.kept) == 10
            proxy.blackhole(False)
            with pytest.raises(SessionLost):
                await client.flush(conn, timeout=T)
            assert client.unconfirmed(conn) == payloads
            await client.send_data(conn, b"again", wait_ack=True, timeout=T)


# -- 13. reconnect policy: for ever, or until a deadline ---------------------------------------
async def test_max_reconnect_attempts_none_retries_past_five_until_the_listener_is_back(
        ) -> None:
    """``max_reconnect_attempts=None``: the listener is gone for 30 attempts (the default
    would give up after 5); it comes back on the same port and the session resumes."""
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.01, reconnect_max_delay=0.02, max_reconnect_attempts=None,
            failure_threshold=1000) as client:
        listener = await server.listen("127.0.0.1", 0)
        port = listener.port
        conn = await client.connect("127.0.0.1", port)
        await client.send_data(conn, b"before", wait_ack=True)
        sub = client.events()
        await listener.close()
        await next_of(sub, Reconnecting, attempt=30)
        await server.listen("127.0.0.1", port)
        await next_of(sub, Connected)
        await client.send_data(conn, b"after", wait_ack=True, timeout=T)
        assert client.connection_info(conn).state == "connected"


async def test_reconnect_deadline_bounds_reconnecting_in_time() -> None:
    """``max_reconnect_attempts=None, reconnect_deadline=0.5``: the connection is given up
    0.5 s after the loss (at most one attempt's time later), not after a count."""
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.02, reconnect_max_delay=0.05, max_reconnect_attempts=None,
            reconnect_deadline=0.5, failure_threshold=1000) as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        sub = client.events()
        t0 = time.perf_counter()
        await listener.close()
        given = await next_of(sub, GivenUp)
        took = time.perf_counter() - t0
        assert 0.5 <= took < 1.5, took
        assert given.attempts > 5  # more than the default count, bounded by time
        assert client.connection_info(conn).state == "disconnected"


# -- 12. offline sends: queued into the session while reconnecting -----------------------------
async def test_sends_while_reconnecting_are_queued_and_go_out_on_resume() -> None:
    """The proxy resets the link; while the client waits 0.5 s to reconnect, 1,000 sends
    return at once (before: each waited for the new link, up to ``timeout``, then raised
    ``ConnectionNotReady``). Past ``max_pending_bytes`` (64 KiB) a send waits and raises
    ``SendTimeout``. On resume all arrive, exactly once and in order."""
    got: list[bytes] = []

    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.5, reconnect_jitter=False, failure_threshold=1000,
            max_pending_bytes=64 * 1024) as client:
        listener = await server.listen("127.0.0.1", 0, handler=lambda m: got.append(m.data))
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            for i in range(100):
                await client.send_data(conn, b"%05d" % i)
            await client.flush(conn)
            sub = client.events()
            proxy.reset_all()
            await next_of(sub, Disconnected, conn_id=conn, final=False)
            # "at once" without a clock: no send gives the loop a turn (a wall-clock bound
            # failed at load 11, 0.62 s for the 1,000 sends of a starved process)
            turned: list[bool] = []
            asyncio.get_running_loop().call_soon(turned.append, True)
            for i in range(100, 1100):
                await client.send_data(conn, b"%05d" % i, timeout=0.05)
            assert not turned, "a send waited (the loop got a turn)"
            assert client.connection_info(conn).state == "connecting"
            # 1,000 x 5 B are queued; 1 KiB messages fill the rest of the 64 KiB
            big = [b"%05d" % i + b"." * 1019 for i in range(1100, 1159)]
            for m in big:
                await client.send_data(conn, m, timeout=0.05)
            with pytest.raises(SendTimeout):
                await client.send_data(conn, b"one too many" + b"." * 1024, timeout=0.05)
            assert client.connection_info(conn).state == "connecting"
            await client.flush(conn, timeout=T)
            await eventually(lambda: len(got) >= 1159, timeout=T)
    assert [int(m[:5]) for m in got] == list(range(1159))


async def test_offline_sends_are_reported_unconfirmed_when_the_connection_is_given_up(
        ) -> None:
    """Messages kept while reconnecting are not dropped silently: the listener is gone, the
    client gives up, and they come back from ``unconfirmed()``."""
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.05, reconnect_jitter=False, max_reconnect_attempts=2,
            failure_threshold=1000) as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"acked", wait_ack=True)
        sub = client.events()
        await listener.close()
        await next_of(sub, Disconnected, conn_id=conn, final=False)
        payloads = [b"offline-%d" % i for i in range(10)]
        for p in payloads:
            await client.send_data(conn, p)
        with pytest.raises(SessionLost):
            await client.flush(conn, timeout=T)
        assert client.unconfirmed(conn) == payloads


async def test_a_stop_begun_on_a_link_that_is_then_reset_does_not_wait_for_a_reconnection(
        ) -> None:
    """stop() waits for ACKs on the open link; when that link is reset meanwhile and the
    reconnection is refused, it returns at once (not after its 30 s timeout) and what the
    peer never acknowledged is reported unconfirmed, not dropped."""
    async with NetworkTransport() as server:
        listener = await server.listen("127.0.0.1", 0)
        client = NetworkTransport(timeout=30.0, reconnect_interval=0.01)
        async with client, FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            await client.send_data(conn, b"acked", wait_ack=True)
            proxy.blackhole(True)  # what follows is never acknowledged
            await client.send_data(conn, b"in doubt")
            sub = client.events()
            stopping = asyncio.create_task(client.stop())
            # while the link lives, the stop waits for the ACK the blackhole holds back
            await asyncio.wait({stopping}, timeout=0.2)
            assert not stopping.done()
            await proxy.close()  # RST, and the port refuses the reconnection
            async with asyncio.timeout(3.0):  # the bug waited out the whole 30 s
                await stopping
            kinds = []
            while (ev := sub.get_nowait()) is not None:
                kinds.append(type(ev).__name__)
            assert "SessionLost" in kinds, kinds


# -- 11. per-class backpressure: a high send does not wait for low bulk ----------------------
@pytest.mark.parametrize("transport", ["tcp", "websocket", "grpc"])
@pytest.mark.parametrize("priority", ["high", "control"])
async def test_a_high_send_returns_at_once_while_64_mib_of_low_is_in_flight(
        transport: str, priority: str) -> None:
    """64 MiB of ``low`` in flight at 20 MB/s (throttled): ``send_data(..., priority=
    "high")`` returns within 50 ms (before: 2.8 s, it waited for the unacknowledged window
    that the low message filled). The low send itself still waits for its own budget."""
    got: list[str] = []
    async with NetworkTransport(max_message_size=80 * 1024 * 1024) as net:
        listener = await net.listen("127.0.0.1", 0, transport=transport,
                                    handler=lambda m: got.append(m.priority))
        conn = await net.connect("127.0.0.1", listener.port, transport=transport,
                                 max_bandwidth=20_000_000)
        await net.send_data(conn, b"warm", wait_ack=True)
        low = asyncio.create_task(net.send_data(conn, bytes(64 * 1024 * 1024),
                                                priority="low", timeout=30.0))
        await eventually(lambda: net.connection_info(conn).bytes_sent > 1024 * 1024)
        assert not low.done()  # the bulk sender waits: 64 MiB is over every budget
        returned = []
        for _ in range(5):
            t0 = time.perf_counter()
            await net.send_data(conn, b"x" * 100, priority=priority, timeout=5.0)  # type: ignore[arg-type]
            returned.append(time.perf_counter() - t0)
        assert max(returned) < 0.05, returned
        await eventually(lambda: got.count(priority) == 5)
        assert "low" not in got  # they overtook the bulk message
        assert not low.done()
        low.cancel()
        await net.disconnect(conn, timeout=0.1)


# -- 10. progress through a middlebox that resets every ~150 KB ----------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tcp", "tls", "websocket", "grpc"])
async def test_a_middlebox_resetting_every_150_kb_does_not_stall_or_give_up(
        kind: str, tls: TLS) -> None:
    """A proxy aborts the link after every 150 KB client -> listener, while the sender's
    unacknowledged window (16 MiB) is far larger: no ACK makes it back before the reset,
    the peer's progress shows only in the resume floor of the next HELLO. With the default
    ``max_reconnect_attempts=5``, 20,000 messages of 100 B arrive exactly once, in order.

    Before: each link counted as a failed attempt (the backoff grew, the connection was
    given up after 6 resets with 14,200-17,800 messages unconfirmed), and every resume
    rewrote the whole backlog above the floor (~10,000 messages a link). Now an advanced
    floor is progress, and a resumed link writes a window (64 KiB, doubling per ACK), so
    a later resume resends at most about a window."""
    transport = "tcp" if kind == "tls" else kind
    tls_on = kind == "tls"
    total = 20_000
    got: list[int] = []
    done = asyncio.Event()

    def on_message(msg: Message) -> None:
        got.append(int(msg.data[:5]))
        if len(got) >= total:
            done.set()

    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.01) as client:
        assert client.options.max_reconnect_attempts == 5
        listener = await server.listen("127.0.0.1", 0, handler=on_message, transport=transport,
                                       ssl_context=tls.server_ctx if tls_on else None)
        async with FaultProxy("127.0.0.1", listener.port, reset_every=150_000) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port, transport=transport,
                                        ssl_context=tls.client_ctx if tls_on else None,
                                        server_hostname="localhost" if tls_on else None)
            sub = client.events(maxsize=100_000)
            t0 = time.perf_counter()
            for i in range(total):
                await client.send_data(conn, b"%05d" % i + b"." * 95, timeout=T)
            await client.flush(conn, timeout=30.0)
            await asyncio.wait_for(done.wait(), T)
            took = time.perf_counter() - t0
            resumes = []
            while (ev := sub.get_nowait()) is not None:
                assert not isinstance(ev, GivenUp)
                if isinstance(ev, SessionResumed):
                    resumes.append(ev.resent)
            assert proxy.resets >= 10  # 2.4 MB through 150 KB links
    assert got == list(range(total))
    assert took < 20.0, took
    # the first resume resends what the first (unwindowed) link wrote; later ones a window.
    # A window doubles per ACK, so a link whose ACKs came back (gRPC's HTTP/2 buffers let
    # more through before the cut) ends with a larger one: the typical resume is a window,
    # none is the whole backlog above the floor (10,000+ a link before).
    assert resumes and statistics.median(resumes[1:]) <= 6_000, resumes
    assert max(resumes[1:]) <= 10_000, resumes
