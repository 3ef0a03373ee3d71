"""NetworkTransport over real UDP sockets on 127.0.0.1: fragmentation, per-address
connections, raw mode against plain sockets, ICMP refusal and the breaker, a lossy link with
exact accounting, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

from objtransport import (
    CircuitOpenError,
    ConnectError,
    Message,
    MessageTooLarge,
    NetworkTransport,
    TransportError,
)
from objtransport.sansio.framing import FRAME_HEADER, FrameType
from objtransport.testing import LossyDatagramProxy, eventually

SIZES = [1, 100, 1200, 1201, 5_000, 64 * 1024, 256 * 1024 + 1, 1024 * 1024]


class PlainUdp(asyncio.DatagramProtocol):
    """A plain UDP socket on 127.0.0.1 (no objtransport). It receives through the loop's
    datagram API (``loop.sock_recvfrom`` is not on every loop: uvloop lacks it) and sends on
    the socket itself (asyncio's ``sendto`` drops empty datagrams before Python 3.12)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:  # ICMP: not this test's subject
        pass

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        if addr is None:
            self.sock.send(data)
        else:
            self.sock.sendto(data, addr)

    async def recv(self, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


@contextlib.asynccontextmanager
async def plain_udp(remote_port: int | None = None) -> AsyncIterator[PlainUdp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    if remote_port is not None:
        sock.connect(("127.0.0.1", remote_port))
    _, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: PlainUdp(sock), sock=sock)
    try:
        yield peer
    finally:
        peer.close()


def _payload(n: int, seed: int = 0) -> bytes:
    return (bytes(range(seed, 256)) + bytes(range(seed)) or b"x") * (n // 256) + \
        b"t" * (n % 256)


@pytest.mark.parametrize("piece", [1200, 65_000])
async def test_1_byte_to_1_mib_fragmented_and_reassembled(net: NetworkTransport,
                                                        piece: int) -> None:
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data)

    listener = await net.listen("127.0.0.1", 0, transport="udp", handler=echo,
                                max_datagram_payload=piece)
    conn = await net.connect("127.0.0.1", listener.port, transport="udp",
                             max_datagram_payload=piece)
    for i, n in enumerate(SIZES):
        p = _payload(n, i)
        await net.send_data(conn, p)
        got = await net.receive(conn, timeout=10.0)
        assert got.data == p and got.transport == "udp" and got.conn_id == conn
    counters = net.connection_info(conn).datagram
    assert counters["messages_dropped"] == counters["messages_missing"] == 0
    assert counters["fragments_received"] == sum(
        -(-n // piece) for n in SIZES if n > piece)


async def test_each_remote_address_is_its_own_connection(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, transport="udp")
    a = await net.connect("127.0.0.1", listener.port, transport="udp")
    b = await net.connect("127.0.0.1", listener.port, transport="udp")
    await net.send_data(a, b"from a")
    ma = await net.receive(timeout=5.0)
    await net.send_data(b, b"from b")
    mb = await net.receive(timeout=5.0)
    assert ma.conn_id != mb.conn_id and ma.data == b"from a" and mb.data == b"from b"
    assert ma.peer != mb.peer and len(listener.connections) == 2
    await net.send_data(mb.conn_id, b"to b")
    assert (await net.receive(b, timeout=5.0)).data == b"to b"
    info = net.connection_info(ma.conn_id)
    assert info.role == "server" and info.transport == "udp" and info.port == ma.peer[1]


async def test_idle_peers_are_forgotten(net: NetworkTransport) -> None:
    # idle 1 s: the re-admitted peer must not be forgotten again before its next message
    # arrives (with 0.2 s a stall of the loaded machine did that once, losing "again" too)
    listener = await net.listen("127.0.0.1", 0, transport="udp", idle_timeout=1.0)
    conn = await net.connect("127.0.0.1", listener.port, transport="udp")
    await net.send_data(conn, b"hello")
    msg = await net.receive(timeout=5.0)
    assert msg.conn_id in net.connections()
    await eventually(lambda: msg.conn_id not in net.connections(), timeout=5.0)
    assert not listener.connections and net.get_metrics().errors == 0
    # the first DATA from a forgotten address is answered with a cookie, not admitted
    # (docs/protocol.md 6.1): the client echoes it and comes back as a new peer
    await net.send_data(conn, b"lost")
    await eventually(lambda: len(listener.connections) == 1, timeout=5.0)
    await net.send_data(conn, b"again")
    again = await net.receive(timeout=5.0)
    assert again.data == b"again" and again.conn_id != msg.conn_id


async def test_rtt_from_ping_feeds_avg_latency(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, transport="udp")
    conn = await net.connect("127.0.0.1", listener.port, transport="udp")
    info = net.connection_info(conn)
    m = net.get_metrics()
    assert info.rtt_ms is not None and 0 < info.rtt_ms < 1000
    assert m.latency_samples >= 1 and m.avg_latency_ms > 0


# -- raw framing against plain sockets -------------------------------------------------------

async def test_raw_listener_with_a_plain_socket_peer(net: NetworkTransport) -> None:
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data.upper())

    listener = await net.listen("127.0.0.1", 0, transport="udp", framing="raw",
                                handler=echo)
    async with plain_udp(listener.port) as plain:
        for data in (b"hello", b"", b"z" * 60_000):
            plain.send(data)
            reply, _ = await plain.recv()
            assert reply == data.upper()
    assert net.get_metrics().messages_received == 3


async def test_raw_client_to_a_plain_socket_server(net: NetworkTransport) -> None:
    async with plain_udp() as plain:
        conn = await net.connect("127.0.0.1", plain.port, transport="udp", framing="raw")
        await net.send_data(conn, b"exactly these bytes")
        data, addr = await plain.recv()
        assert data == b"exactly these bytes"
        with pytest.raises(MessageTooLarge):
            await net.send_data(conn, b"x" * 65_508)
        plain.send(b"reply", addr)
        assert (await net.receive(conn, timeout=5.0)).data == b"reply"
        await net.send_data(conn, b"after")
        # nothing of the too-large message was sent
        assert (await plain.recv())[0] == b"after"


# -- failures ------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_icmp_refusal_feeds_the_breaker() -> None:
    port = _closed_port()
    async with NetworkTransport(timeout=2.0, failure_threshold=2, reset_timeout=30) as net:
        for _ in range(2):
            with pytest.raises(ConnectError, match="refused"):
                await net.connect("127.0.0.1", port, transport="udp")
        with pytest.raises(CircuitOpenError):
            await net.connect("127.0.0.1", port, transport="udp")
        state = net.circuit_breaker("127.0.0.1", port, transport="udp")
        assert state.state == "open" and state.failure_count == 2


async def test_raw_sends_to_a_closed_port_open_the_breaker() -> None:
    """Raw framing has no PING, so opening the socket proves nothing: each send that brings
    back ICMP port unreachable is a failure, and no reconnect counts as a success until the
    peer is heard from. The breaker opens; then sends fail fast."""
    port = _closed_port()
    async with NetworkTransport(failure_threshold=3, reset_timeout=30,
                                reconnect_interval=0.01, reconnect_max_delay=0.02,
                                max_reconnect_attempts=20) as net:
        conn = await net.connect("127.0.0.1", port, transport="udp", framing="raw")

        def opened() -> bool:
            return net.circuit_breaker("127.0.0.1", port, transport="udp").state == "open"

        async with asyncio.timeout(10):
            while not opened():
                with contextlib.suppress(TransportError):
                    await net.send_data(conn, b"anyone?", timeout=0.2)
                await asyncio.sleep(0.01)
        assert net.circuit_breaker("127.0.0.1", port, transport="udp").failure_count >= 3
        with pytest.raises(CircuitOpenError):
            await net.connect("127.0.0.1", port, transport="udp", framing="raw")


async def test_raw_peer_heard_from_counts_as_a_success(net: NetworkTransport) -> None:
    async with plain_udp() as plain:
        port = plain.port
        conn = await net.connect("127.0.0.1", port, transport="udp", framing="raw")
        before = net.circuit_breaker("127.0.0.1", port, transport="udp").success_count
        await net.send_data(conn, b"ping")
        data, addr = await plain.recv()
        plain.send(b"pong", addr)
        assert (await net.receive(conn, timeout=5.0)).data == b"pong"
        after = net.circuit_breaker("127.0.0.1", port, transport="udp").success_count
        assert after == before + 1


async def test_a_vanished_peer_is_a_link_failure_for_the_breaker(
        net: NetworkTransport) -> None:
    """A peer that answered the probe and then closed its port: the next PING brings back
    ICMP port unreachable, which ends the link with an error (a breaker failure)."""
    async with plain_udp() as plain:
        port = plain.port

        async def answer_once() -> None:
            data, addr = await plain.recv()
            pong = FRAME_HEADER.pack(24, 1, FrameType.PONG, 0, 0, 0, 0) + data[20:28]
            plain.send(pong, addr)
            plain.close()  # the port is gone: the next PING brings back ICMP

        task = asyncio.create_task(answer_once())
        conn = await net.connect("127.0.0.1", port, transport="udp", keepalive_interval=0.05,
                                 max_reconnect_attempts=0)
        await task
    await eventually(lambda: net.connection_info(conn).state == "disconnected", timeout=5.0)
    info = net.connection_info(conn)
    assert info.error_count == 1 and info.circuit_breaker.failure_count == 1


async def test_native_connect_to_a_silent_peer_times_out(net: NetworkTransport) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectError, match="no answer"):
            await net.connect("127.0.0.1", silent.getsockname()[1], transport="udp",
                              timeout=0.5, hello_timeout=0.5)


# -- a lossy link, exact accounting ------------------------------------------------------

def _key(d: bytes) -> tuple[int, int] | None:
    """(seq, offset) of a DATA datagram, None for anything else."""
    _l, _v, typ, flags, _p, _s, seq = FRAME_HEADER.unpack_from(d)
    if typ != FrameType.DATA:
        return None
    return seq, struct.unpack_from("!I", d, 20)[0] if flags & 1 else 0


async def test_lossy_link_exact_accounting(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, transport="udp", max_datagram_payload=200,
                                reassembly_timeout=0.3)
    proxy = await LossyDatagramProxy("127.0.0.1", listener.port, seed=11, drop=0.08,
                                     duplicate=0.05, reorder=0.08).start()
    try:
        conn = await net.connect("127.0.0.1", proxy.port, transport="udp",
                                 max_datagram_payload=200)
        sent = {}
        for i in range(300):
            size = 100 if i % 3 else 700  # every third message has 4 fragments
            data = i.to_bytes(4, "big") * (size // 4)
            sent[i + 1] = data  # its sequence number
            await net.send_data(conn, data)
            if i % 20 == 19:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        proxy.drop = proxy.duplicate = proxy.reorder = 0.0
        await net.send_data(conn, b"last")  # closes the gaps before it
        # what the listener must have seen, from the proxy's record alone
        arrived: dict[int, set[int]] = {}
        dups = reordered = 0
        top: tuple[int, int] = (0, -1)
        for d in proxy.forwarded:
            k = _key(d)
            if k is None:
                continue
            got = arrived.setdefault(k[0], set())
            if k[1] in got:
                dups += 1
                continue
            got.add(k[1])
            if k < top:
                reordered += 1
            else:
                top = k
        need = {seq: -(-len(data) // 200) if len(data) > 200 else 1
                for seq, data in sent.items()}
        complete = {s for s, n in need.items() if len(arrived.get(s, ())) == n}
        partial = {s for s in need if s in arrived and s not in complete}
        missing = {s for s in need if s not in arrived}
        assert proxy.dropped and dups and reordered and partial and missing
        received: list[bytes] = []
        while len(received) < len(complete) + 1:
            received.append((await net.receive(timeout=5.0)).data)
        assert received[-1] == b"last" or b"last" in received
        assert sorted(x for x in received if x != b"last") == sorted(sent[s] for s in complete)
        server_conn = next(iter(listener.connections))
        await eventually(lambda: net.connection_info(server_conn).datagram[
            "messages_dropped"] == len(partial), timeout=5.0)
        c = net.connection_info(server_conn).datagram
        assert c["messages_missing"] == len(missing)
        assert c["duplicates"] == dups and c["reordered"] == reordered
        assert c["fragments_expired"] == sum(len(arrived[s]) for s in partial)
        assert c["garbage"] == c["inconsistent"] == c["oversized"] == 0
        m = net.get_metrics().datagram
        assert m["messages_dropped"] == len(partial) and m["duplicates"] == dups
    finally:
        await proxy.close()


async def test_metrics_exact(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, transport="udp")
    conn = await net.connect("127.0.0.1", listener.port, transport="udp")
    sizes = [10, 1200, 1201, 3000]
    for n in sizes:
        await net.send_data(conn, b"m" * n)
    for _ in sizes:
        msg = await net.receive(timeout=5.0)
    client = net.connection_info(conn).datagram
    server = net.connection_info(msg.conn_id).datagram
    data_datagrams = 1 + 1 + 2 + 3
    # the PING probe, answered statelessly with a cookie; the PING with the cookie admits;
    # the PONG says PACK, so the client PINGs once more with PACK (it takes packed ones too)
    assert client["datagrams_sent"] == 3 + data_datagrams
    assert server["datagrams_received"] == 2 + data_datagrams
    assert server["datagrams_sent"] == 2  # the PONGs
    assert client["datagrams_received"] == 3  # the cookie PONG, the PONGs
    assert server["fragments_received"] == 5
    for name in ("messages_dropped", "messages_missing", "duplicates", "reordered",
                 "garbage", "fragments_expired"):
        assert server[name] == 0, name
    si = net.connection_info(msg.conn_id)
    assert si.messages_received == 4 and si.bytes_received == sum(sizes)
    ci = net.connection_info(conn)
    assert ci.messages_sent == 4 and ci.bytes_sent == sum(sizes)
    m = net.get_metrics()
    assert m.datagram["datagrams_received"] == 5 + data_datagrams
    assert m.datagram["peers"] == 1 and m.datagram["cookies_sent"] == 1
    assert m.datagram["reassembly_bytes"] == 0


def _kernel_offloads() -> bool:
    """Whether this kernel coalesces a UDP_SEGMENT send on loopback for a UDP_GRO reader."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            r.bind(("127.0.0.1", 0))
            r.setsockopt(socket.IPPROTO_UDP, 104, 1)  # UDP_GRO
            s.connect(r.getsockname())
            s.sendmsg([b"x" * 20], [(socket.IPPROTO_UDP, 103, struct.pack("=H", 10))])
            r.settimeout(1.0)
            return len(r.recv(100)) == 20  # one read, two datagrams
        except OSError:
            return False


@pytest.mark.parametrize("offload", [True, False])
async def test_a_turns_datagrams_go_segmented_and_arrive_in_order(offload: bool) -> None:
    """Messages queued in one loop turn leave in UDP_SEGMENT sends and arrive coalesced
    (UDP_GRO) where the kernel offers both; with ``udp_offload=False`` one call per
    datagram. Either way every message arrives once, in order."""
    got: list[bytes] = []
    done = asyncio.Event()
    n = 600

    def on_message(msg: Message) -> None:
        got.append(msg.data)
        if len(got) == n:
            done.set()

    async with NetworkTransport(udp_offload=offload) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp", handler=on_message)
        conn = await net.connect("127.0.0.1", listener.port, transport="udp")
        sent = [b"%04d" % i + b"x" * 60 for i in range(n)]
        for data in sent:  # no await suspends: one loop turn
            await net.send_data(conn, data)
        await asyncio.wait_for(done.wait(), 5)
        assert got == sent
        m = net.get_metrics().datagram
        if offload and _kernel_offloads():
            assert m["coalesced_reads"] > 0
        elif not offload:
            assert m["coalesced_reads"] == 0 and m["gso_sends"] == 0
        if not offload:  # packed: about 14 of these frames to a 1,228-byte datagram
            assert net.connection_info(conn).datagram["datagrams_sent"] < n // 5


async def test_a_listener_packs_towards_a_client_that_announced_it() -> None:
    """The client's PING with PACK reaches the listener right after connect: what the
    listener's peer sends in one turn leaves packed (no UDP_SEGMENT here), and arrives
    whole and in order."""
    async with NetworkTransport(udp_offload=False) as net:
        listener = await net.listen("127.0.0.1", 0, transport="udp")
        conn = await net.connect("127.0.0.1", listener.port, transport="udp")
        await net.send_data(conn, b"hello")
        # the PING with PACK left before "hello" and the socket keeps their order
        server_conn = (await net.receive(timeout=5.0)).conn_id
        n = 300
        sent = [b"%04d" % i + b"y" * 40 for i in range(n)]
        for data in sent:
            await net.send_data(server_conn, data)
        got = [(await net.receive(timeout=5.0)).data for _ in range(n)]
        assert got == sent
        assert net.connection_info(server_conn).datagram["datagrams_sent"] < n // 5


async def test_a_peer_whose_datagram_waits_in_our_socket_is_not_forgotten_after_our_stall(
        net: NetworkTransport) -> None:
    """Our loop stalls past a peer's idle deadline (CPU starvation: here the loop thread is
    blocked in an I/O callback) while the peer's datagram, sent in time, waits in our socket.
    uvloop runs its timers before it polls the sockets: before, the listener forgot the peer
    for silence and then admitted its datagram as a new peer (a new connection id)."""
    idle = 1.0
    listener = await net.listen("127.0.0.1", 0, transport="udp", framing="raw",
                                idle_timeout=idle)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.connect(("127.0.0.1", listener.port))
    loop = asyncio.get_running_loop()
    stalled = loop.create_future()
    wake, waker = socket.socketpair()

    def stall() -> None:
        """An I/O callback that hogs the loop past the peer's deadline; the peer's datagram
        goes into our socket before that deadline."""
        loop.remove_reader(wake.fileno())
        time.sleep(max(0.0, begun + idle / 2 - time.monotonic()))
        peer.send(b"alive")
        time.sleep(max(0.0, begun + idle + 0.5 - time.monotonic()))
        stalled.set_result(None)

    try:
        peer.send(b"first")
        first = await net.receive(timeout=5.0)
        begun = time.monotonic()  # the listener heard the peer: its deadline is armed
        assert first.data == b"first"
        loop.add_reader(wake.fileno(), stall)
        waker.send(b"!")
        await stalled
        alive = await net.receive(timeout=5.0)
        assert alive.data == b"alive"
        assert alive.conn_id == first.conn_id  # the same peer, not forgotten and re-admitted
        assert first.conn_id in net.connections() and len(listener.connections) == 1
    finally:
        wake.close()
        waker.close()
        peer.close()
