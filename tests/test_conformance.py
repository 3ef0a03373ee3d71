"""One conformance suite for every transport (trio's ``_check_streams`` habit).

Each behaviour below is written once and runs over every transport it applies to: ``tcp``,
``tls`` (TCP with TLS), ``websocket``, ``wss``, ``grpc`` and, where the semantics apply,
``udp`` (marked relaxed: no flow control, no stream to reset). Each test runs on the default
loop and on uvloop (tests/conftest.py). Real sockets on 127.0.0.1, TLS certificates made at
test time. What only one transport does (raw peers, close codes, HTTP/2 status, fragments
of datagrams) stays in its own file.

Matrix (x: runs; r: relaxed; -: does not apply, and why):

=============================  ===  ===  ==  ===  ====  ===
behaviour                      tcp  tls  ws  wss  grpc  udp
=============================  ===  ===  ==  ===  ====  ===
send, receive, reply by id      x    x   x    x    x     x
order of 1,000 messages         x    x   x    x    x     r (a lost datagram is lost)
sizes 0 B to 16 MiB             x    x   x    x    x     r (to 1 MiB: fragments)
text flag                       x    x   x    x    x     x
cancelled receive loses none    x    x   x    x    x     x
slow consumer: backpressure     x    x   x    x    x     - (no flow control)
resets: resumed exactly once    x    x   x    x    x     - (no stream to reset)
QoS: high overtakes low         x    x   x    x    x     x
send_to pools a connection      x    x   x    x    x     x
reconnect to a restarted peer   x    x   x    x    x     x
orderly and idempotent close    x    x   x    x    x     x
too large: refused, goes on     x    x   x    x    x     r (dropped there, counted)
refused port: error + breaker   x    x   x    x    x     x
IPv6 loopback                   x    x   x    x    x     x
=============================  ===  ===  ==  ===  ====  ===

``quic`` runs every row but the slow consumer (in tests/test_quic.py: its reading pauses by
dropping datagrams); its resets are a ``LossyDatagramProxy`` cutting the flow (ICMP port
unreachable), as FaultProxy's RST cuts a TCP one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from objtransport import (
    ConnectError,
    ConnectionNotFound,
    Message,
    MessageTooLarge,
    NetworkTransport,
    SendTimeout,
)
from objtransport.testing import FaultProxy, LossyDatagramProxy, eventually

from .conftest import TLS

MiB = 1024 * 1024
KINDS = ["tcp", "tls", "websocket", "wss", "grpc", "udp", "quic"]
# ordered, flow-controlled byte streams (QUIC runs over UDP: FaultProxy cannot reset it; its
# loss and backpressure are in tests/test_quic.py)
STREAMS = [k for k in KINDS if k not in ("udp", "quic")]
# connections a proxy can kill mid-stream (QUIC: LossyDatagramProxy's reset_every)
RESETS = [*STREAMS, "quic"]


@dataclass
class Kind:
    """How to listen and connect for one transport kind."""

    name: str
    transport: str
    listen: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=dict)

    @property
    def relaxed(self) -> bool:
        """Datagrams: delivery and order are best effort."""
        return self.transport == "udp"


def _kind(name: str, tls: TLS) -> Kind:
    if name == "tls":
        return Kind(name, "tcp", {"ssl_context": tls.server_ctx},
                    {"ssl_context": tls.client_ctx})
    if name == "wss":
        return Kind(name, "websocket", {"ssl_context": tls.server_ctx},
                    {"ssl_context": tls.client_ctx})
    if name == "quic":  # always TLS 1.3, certificates as PEM
        pytest.importorskip("aioquic")
        cert = tls.ca.issue_cert("127.0.0.1", "localhost", "::1")
        big = {"max_datagram_size": 16384}  # loopback: 16 MiB in 1,000 packets, not 14,000
        return Kind(name, name, {"certificate_chain": b"".join(
            b.bytes() for b in cert.cert_chain_pems), "private_key": cert.private_key_pem.bytes(),
            **big}, {"root_certificates": tls.ca.cert_pem.bytes(), **big})
    return Kind(name, name)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, tls: TLS) -> Kind:
    return _kind(request.param, tls)


@pytest.fixture(params=STREAMS)
def stream_kind(request: pytest.FixtureRequest, tls: TLS) -> Kind:
    return _kind(request.param, tls)


@pytest.fixture(params=RESETS)
def reset_kind(request: pytest.FixtureRequest, tls: TLS) -> Kind:
    return _kind(request.param, tls)


@dataclass
class Pair:
    """A listener in ``server`` and a connection to it from ``client``."""

    kind: Kind
    server: NetworkTransport
    client: NetworkTransport
    port: int = 0
    conn: int = 0

    async def listen(self, port: int = 0, **kw: Any) -> Any:
        listener = await self.server.listen("127.0.0.1", port, transport=self.kind.transport,
                                            **self.kind.listen, **kw)
        self.port = listener.port
        return listener

    async def connect(self, port: int | None = None, **kw: Any) -> int:
        return await self.client.connect("127.0.0.1", self.port if port is None else port,
                                         transport=self.kind.transport,
                                         **self.kind.connect, **kw)

    async def echo_pair(self, **kw: Any) -> int:
        """An echo listener and a connection to it."""
        server = self.server

        def echo(msg: Message) -> None:
            server.send_nowait(msg.conn_id, msg.data, text=msg.text)

        await self.listen(handler=echo, **kw)
        self.conn = await self.connect()
        return self.conn


@pytest.fixture
async def pair(kind: Kind) -> AsyncIterator[Pair]:
    async with NetworkTransport(timeout=5.0) as server, \
            NetworkTransport(timeout=5.0, reconnect_interval=0.05) as client:
        yield Pair(kind, server, client)


@pytest.fixture
async def stream_pair(stream_kind: Kind) -> AsyncIterator[Pair]:
    async with NetworkTransport(timeout=5.0) as server, \
            NetworkTransport(timeout=5.0, reconnect_interval=0.05) as client:
        yield Pair(stream_kind, server, client)


# -- send and receive -----------------------------------------------------------------------

async def test_send_receive_and_reply_by_conn_id(pair: Pair) -> None:
    await pair.listen()
    conn = await pair.connect()
    await pair.client.send_data(conn, b"ping")
    msg = await pair.server.receive(timeout=5.0)
    assert msg.data == b"ping" and msg.transport == pair.kind.transport
    assert msg.peer[0] == "127.0.0.1"
    await pair.server.send_data(msg.conn_id, b"pong")
    reply = await pair.client.receive(conn, timeout=5.0)
    assert reply.data == b"pong" and reply.conn_id == conn
    assert pair.client.connection_info(conn).transport == pair.kind.transport


async def test_1000_messages_arrive_in_order(pair: Pair) -> None:
    conn = await pair.echo_pair()
    sent = [b"%04d" % i for i in range(1000)]
    for data in sent:
        await pair.client.send_data(conn, data)
    got = []
    timeout = 2.0 if pair.kind.relaxed else 10.0
    try:
        for _ in sent:
            got.append((await pair.client.receive(conn, timeout=timeout)).data)
    except TimeoutError:
        if not pair.kind.relaxed:
            raise
    if pair.kind.relaxed:  # no loss on loopback is likely, not promised; never duplicates
        assert len(got) == len(set(got)) and set(got) <= set(sent) and len(got) > 900
    else:
        assert got == sent


SIZES = [0, 1, 100, 64 * 1024, 256 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024 + 7,
         16 * 1024 * 1024]


async def test_sizes_from_0_bytes_to_16_mib_round_trip(pair: Pair) -> None:
    conn = await pair.echo_pair()
    sizes = [n for n in SIZES if n <= MiB] if pair.kind.relaxed else SIZES
    payloads = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    for p in payloads:  # one at a time: the inbox holds at most max_pending_bytes unread
        await pair.client.send_data(conn, p)
        got = await pair.client.receive(conn, timeout=20.0)
        assert got.data == p, (len(got.data), len(p))


async def test_the_text_flag_arrives_with_the_message(pair: Pair) -> None:
    conn = await pair.echo_pair()
    await pair.client.send_data(conn, "texte ü".encode(), text=True)
    await pair.client.send_data(conn, b"\xff binary")
    first = await pair.client.receive(conn, timeout=5.0)
    second = await pair.client.receive(conn, timeout=5.0)
    assert (first.data, first.text) == ("texte ü".encode(), True)
    assert (second.data, second.text) == (b"\xff binary", False)


async def test_a_cancelled_receive_loses_no_message(pair: Pair) -> None:
    await pair.listen()
    conn = await pair.connect()
    waiting = asyncio.create_task(pair.server.receive(timeout=5.0))
    await asyncio.sleep(0)  # it waits
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await pair.client.send_data(conn, b"kept")
    assert (await pair.server.receive(timeout=5.0)).data == b"kept"


# -- flow control, faults, QoS --------------------------------------------------------------

async def test_a_slow_consumer_blocks_the_sender_within_limits(stream_kind: Kind) -> None:
    async with NetworkTransport(receive_queue_size=1000) as server, \
            NetworkTransport(max_pending_bytes=256 * 1024,
                             max_unacked_bytes=1024 * 1024) as client:
        p = Pair(stream_kind, server, client)
        await p.listen()  # nobody calls receive()
        conn = await p.connect()
        sent = 0
        with pytest.raises(SendTimeout):
            for _ in range(1_000_000):
                await client.send_data(conn, b"s" * 1024, timeout=0.5)
                sent += 1
        assert sent < 10_000  # stopped near the limits, far from buffering everything
        info = client.connection_info(conn)
        assert info.unacked_bytes <= 1024 * 1024 + 1024
        assert info.pending_bytes <= 4 * 256 * 1024 + 1024
        assert server.get_metrics().messages_queued <= 1000 * 2
        await client.disconnect(conn, timeout=0.1)


async def test_resets_lose_nothing_and_duplicate_nothing(reset_kind: Kind) -> None:
    """8,000 messages through a proxy that resets every connection after 50 kB (what a
    resumed connection resends counts too: much less and it never gets past the resend):
    each arrives exactly once, in order, over several resumed connections. QUIC: the proxy
    cuts the UDP flow and refuses the client's next datagram (ICMP), its socket fails."""
    got: list[bytes] = []
    total = 8_000
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.01, reconnect_max_delay=0.05, max_reconnect_attempts=1000,
            failure_threshold=1000) as client:
        p = Pair(reset_kind, server, client)
        await p.listen(handler=lambda m: got.append(m.data))
        kill = LossyDatagramProxy if reset_kind.transport == "quic" else FaultProxy
        async with kill("127.0.0.1", p.port, reset_every=50_000) as proxy:
            tls_name = {"server_hostname": "localhost"} if reset_kind.connect else {}
            conn = await p.connect(proxy.port, **tls_name)
            for i in range(total):
                await client.send_data(conn, b"%05d" % i, timeout=10.0)
            await client.flush(conn, timeout=20.0)
            await eventually(lambda: len(got) >= total, timeout=10.0)
            assert proxy.resets >= 2
            # an orderly end through the proxy: a QUIC listener would otherwise wait out
            # its timeout for the FIN of a peer it can no longer reach
            await client.disconnect(conn)
    assert [int(m) for m in got] == list(range(total))


async def test_high_priority_overtakes_a_low_backlog(pair: Pair) -> None:
    order: list[str] = []
    await pair.listen(handler=lambda m: order.append(m.priority))
    conn = await pair.connect(max_bandwidth=MiB)
    for _ in range(32):  # 2 MiB of low (under max_pending_bytes): 2 s at the limit
        await pair.client.send_data(conn, b"l" * 64 * 1024, priority="low", timeout=10.0)
    await pair.client.send_data(conn, b"urgent", priority="high")
    await eventually(lambda: "high" in order, timeout=10.0)
    # after what the first burst and the link had taken, not after the backlog
    assert order.index("high") < 8, order.index("high")
    await pair.client.disconnect(conn, timeout=0.1)


# -- pools, reconnection, close ---------------------------------------------------------------

async def test_send_to_pools_a_connection(pair: Pair) -> None:
    await pair.listen()
    used = {await pair.client.send_to("127.0.0.1", pair.port, bytes([i]),
                                      transport=pair.kind.transport, **pair.kind.connect)
            for i in range(3)}
    got = sorted([(await pair.server.receive(timeout=5.0)).data for _ in range(3)])
    assert got == [b"\x00", b"\x01", b"\x02"]
    assert len(used) == 1  # one pooled connection carried the three


async def test_reconnects_to_a_restarted_listener_on_the_same_port(pair: Pair) -> None:
    listener = await pair.listen()
    port = listener.port
    conn = await pair.connect(reconnect_interval=0.05, max_reconnect_attempts=100)
    await pair.client.send_data(conn, b"before", wait_ack=not pair.kind.relaxed)
    assert (await pair.server.receive(timeout=5.0)).data == b"before"
    await listener.close()
    if not pair.kind.relaxed:  # a stream notices at once; a datagram peer on its next PING
        await eventually(lambda: pair.client.connection_info(conn).state != "connected")
    await pair.listen(port)
    await eventually(lambda: pair.client.connection_info(conn).state == "connected", 10.0)
    await pair.client.send_data(conn, b"after", timeout=10.0)
    assert (await pair.server.receive(timeout=5.0)).data == b"after"
    info = pair.client.connection_info(conn)
    assert info.id == conn and (pair.kind.relaxed or info.reconnects >= 1)


async def test_orderly_close_is_clean_and_idempotent(pair: Pair) -> None:
    listener = await pair.listen()
    conn = await pair.connect()
    await pair.client.send_data(conn, b"last words")
    await pair.client.disconnect(conn)
    await pair.client.disconnect(conn)  # again: no error
    await pair.client.disconnect(12345)  # unknown: no error
    assert (await pair.server.receive(timeout=5.0)).data == b"last words"
    if not pair.kind.relaxed:  # a datagram listener forgets the peer at idle_timeout
        await eventually(lambda: not listener.connections)
    with pytest.raises(ConnectionNotFound):
        await pair.client.send_data(conn, b"after close")
    assert pair.client.get_metrics().errors == 0
    assert pair.server.get_metrics().errors == 0
    await listener.close()
    await listener.close()  # again: no error


# -- bad input ------------------------------------------------------------------------------

async def test_too_large_is_refused_and_the_connection_goes_on(
        pair: Pair, request: pytest.FixtureRequest) -> None:
    """The listener's max_message_size binds what reaches it: a stream's client learns it
    in the handshake and refuses locally; a datagram listener announces nothing and drops
    the message, counted (relaxed). A peer that sends too much anyway is in each
    transport's bad-input tests."""
    def echo(msg: Message) -> None:
        pair.server.send_nowait(msg.conn_id, msg.data)

    await pair.listen(handler=echo, max_message_size=1000)
    conn = await pair.connect()
    if pair.kind.relaxed:
        await pair.client.send_data(conn, b"x" * 1001)  # the listener drops it, counted
    else:
        with pytest.raises(MessageTooLarge, match="1001 bytes"):
            await pair.client.send_data(conn, b"x" * 1001)
    await pair.client.send_data(conn, b"x" * 1000)
    assert (await pair.client.receive(conn, timeout=5.0)).data == b"x" * 1000
    assert pair.client.connection_info(conn).state == "connected"
    if pair.kind.relaxed:
        assert pair.server.get_metrics().datagram.get("oversized") == 1


def _closed_port(kind: Kind) -> int:
    sock_type = socket.SOCK_DGRAM if kind.relaxed else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_port_is_a_quick_connect_error_that_feeds_the_breaker(
        pair: Pair) -> None:
    port = _closed_port(pair.kind)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectError, match="refused") as err:
        await pair.connect(port)
    assert loop.time() - started < 2.0
    assert f"127.0.0.1:{port}" in str(err.value)
    breaker = pair.client.circuit_breaker("127.0.0.1", port, transport=pair.kind.transport,
                                          ssl=bool(pair.kind.connect))
    assert breaker.failure_count == 1


async def test_ipv6_loopback(pair: Pair) -> None:
    try:
        listener = await pair.server.listen("::1", 0, transport=pair.kind.transport,
                                            **pair.kind.listen)
    except (ConnectError, OSError) as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"::1 not usable here: {exc}")
    conn = await pair.client.connect("::1", listener.port, transport=pair.kind.transport,
                                     **pair.kind.connect)
    await pair.client.send_data(conn, b"v6")
    msg = await pair.server.receive(timeout=5.0)
    assert msg.data == b"v6" and msg.peer[0] == "::1"
