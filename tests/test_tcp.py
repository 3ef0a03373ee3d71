"""NetworkTransport over real TCP / TLS sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from objtransport import (
    CircuitOpenError,
    ConnectError,
    ConnectionNotFound,
    Message,
    MessageTooLarge,
    NetworkTransport,
    ServiceNotRunning,
    UnsupportedTransport,
)
from objtransport.testing import eventually

from .conftest import TLS

SIZES = [1, 100, 64 * 1024, 256 * 1024 + 1, 1024 * 1024, 16 * 1024 * 1024]


async def test_messages_iterator(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0)
    client = await net.connect("127.0.0.1", listener.port)
    for i in range(5):
        await net.send_data(client, bytes([i]))
    got = []
    async with asyncio.timeout(5):
        async for msg in net.messages():
            got.append(msg.data)
            if len(got) == 5:
                break
    assert got == [bytes([i]) for i in range(5)]


async def test_sync_handler_and_bytearray_memoryview_payloads(net: NetworkTransport) -> None:
    seen: list[bytes] = []
    done = asyncio.Event()

    def handler(msg: Message) -> None:
        seen.append(msg.data)
        if len(seen) == 3:
            done.set()

    listener = await net.listen("127.0.0.1", 0, handler=handler)
    conn = await net.connect("127.0.0.1", listener.port)
    await net.send_data(conn, b"a")
    await net.send_data(conn, bytearray(b"b"))
    await net.send_data(conn, memoryview(b"xcx")[1:2])
    await asyncio.wait_for(done.wait(), 5)
    assert seen == [b"a", b"b", b"c"]


async def test_200_concurrent_connections(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0)
    conns = await asyncio.gather(*(net.connect("127.0.0.1", listener.port)
                                   for _ in range(200)))
    assert len(set(conns)) == 200
    await asyncio.gather(*(net.send_data(c, str(c).encode()) for c in conns))
    got = {(await net.receive(timeout=10.0)).data for _ in conns}
    assert got == {str(c).encode() for c in conns}
    assert net.get_metrics().active_connections == 400  # both ends of each


async def test_pool_never_exceeds_pool_size_under_500_concurrent_send_to(
        net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0)
    used = await asyncio.gather(*(net.send_to("127.0.0.1", listener.port, b"%d" % i)
                                  for i in range(500)))
    assert 1 <= len(set(used)) <= 10
    assert len(listener.connections) <= 10
    got = sorted([int((await net.receive(timeout=10.0)).data) for _ in range(500)])
    assert got == list(range(500))
    assert net.get_metrics().pooled_connections <= 10


async def test_pool_size_option_and_dead_connection_replaced(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0)
    used = await asyncio.gather(*(net.send_to("127.0.0.1", listener.port, b"x", pool_size=2)
                                  for _ in range(50)))
    assert len(set(used)) <= 2
    for _ in range(50):
        await net.receive(timeout=5.0)
    # kill the server side of every pooled connection: the pool replaces them
    for cid in list(listener.connections):
        await net.disconnect(cid)
    await eventually(lambda: net.get_metrics().pooled_connections == 0)
    cid = await net.send_to("127.0.0.1", listener.port, b"again", pool_size=2)
    assert cid not in used
    assert (await net.receive(timeout=5.0)).data == b"again"


async def test_pool_closes_idle_connections() -> None:
    async with NetworkTransport(idle_timeout=0.2) as net:
        listener = await net.listen("127.0.0.1", 0)
        await net.send_to("127.0.0.1", listener.port, b"x")
        assert net.get_metrics().pooled_connections == 1
        await eventually(lambda: net.get_metrics().pooled_connections == 0)


async def test_tls_round_trip(net: NetworkTransport, tls: TLS) -> None:
    listener = await net.listen("127.0.0.1", 0, ssl_context=tls.server_ctx)
    conn = await net.connect("127.0.0.1", listener.port, ssl_context=tls.client_ctx)
    await net.send_data(conn, b"secret" * 100_000)
    assert (await net.receive(timeout=10.0)).data == b"secret" * 100_000
    assert net.connection_info(conn).tls


async def test_tls_untrusted_certificate_is_a_connect_error(net: NetworkTransport,
                                                            tls: TLS) -> None:
    listener = await net.listen("127.0.0.1", 0, ssl_context=tls.server_ctx)
    with pytest.raises(ConnectError, match="certificate verif") as info:
        await net.connect("127.0.0.1", listener.port, ssl=True)  # system CAs: untrusted
    assert f"127.0.0.1:{listener.port}" in str(info.value)


async def test_tls_wrong_host_name_is_refused(net: NetworkTransport, tls: TLS) -> None:
    listener = await net.listen("127.0.0.1", 0, ssl_context=tls.server_ctx)
    with pytest.raises(ConnectError, match="certificate verif"):
        await net.connect("127.0.0.1", listener.port, ssl_context=tls.client_ctx,
                          server_hostname="not-the-server.example")


async def test_mutual_tls(net: NetworkTransport, tls: TLS) -> None:
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls.ca.configure_trust(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls.ca.configure_trust(client_ctx)
    tls.ca.issue_cert("client.local").configure_cert(client_ctx)
    listener = await net.listen("127.0.0.1", 0, ssl_context=server_ctx)
    conn = await net.connect("127.0.0.1", listener.port, ssl_context=client_ctx)
    await net.send_data(conn, b"mtls")
    assert (await net.receive(timeout=5.0)).data == b"mtls"
    # a client without a certificate is refused
    bare = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls.ca.configure_trust(bare)
    with pytest.raises(ConnectError):
        await net.connect("127.0.0.1", listener.port, ssl_context=bare, timeout=2.0)


async def test_raw_framing_against_a_plain_socket_peer(net: NetworkTransport) -> None:
    """A {packet, 4} peer written with plain asyncio streams, both directions."""
    received: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            (n,) = struct.unpack("!I", await reader.readexactly(4))
            received.append(await reader.readexactly(n))
        for reply in (b"r1", b"", b"r3" * 50_000):
            writer.write(struct.pack("!I", len(reply)) + reply)
        writer.write(b"\x00\x00\x00\x01\x00")  # the original module's keepalive byte
        writer.write(struct.pack("!I", 4) + b"last")
        await writer.drain()
        await reader.read()  # until we close
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        conn = await net.connect("127.0.0.1", port, framing="raw")
        for p in (b"hello", b"", b"x" * 70_000):
            await net.send_data(conn, p)
        got = [(await net.receive(conn, timeout=5.0)).data for _ in range(4)]
        assert got == [b"r1", b"", b"r3" * 50_000, b"last"]  # keepalive filtered
        assert received == [b"hello", b"", b"x" * 70_000]
        await net.disconnect(conn)


async def test_raw_listener_serves_a_plain_socket_client(net: NetworkTransport) -> None:
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data.upper())

    listener = await net.listen("127.0.0.1", 0, framing="raw", handler=echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(struct.pack("!I", 5) + b"hello")
    (n,) = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), 5))
    assert await reader.readexactly(n) == b"HELLO"
    writer.close()
    await writer.wait_closed()


async def test_auto_listener_detects_native_and_raw(net: NetworkTransport) -> None:
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data)

    listener = await net.listen("127.0.0.1", 0, framing="auto", handler=echo)
    native = await net.connect("127.0.0.1", listener.port)
    raw = await net.connect("127.0.0.1", listener.port, framing="raw")
    await net.send_data(native, b"n" * 300_000)
    await net.send_data(raw, b"r")
    assert (await net.receive(native, timeout=5.0)).data == b"n" * 300_000
    assert (await net.receive(raw, timeout=5.0)).data == b"r"
    infos = [net.connection_info(c) for c in listener.connections]
    assert sorted(i.framing for i in infos) == ["native", "raw"]


async def test_auto_listener_detects_native_and_raw_over_tls(net: NetworkTransport,
                                                            tls: TLS) -> None:
    """The TLS layer hands bytes to the protocol's methods it took when it was made: after
    detection they must be the session's, on every loop."""
    async def echo(msg: Message) -> None:
        await net.send_data(msg.conn_id, msg.data)

    listener = await net.listen("127.0.0.1", 0, framing="auto", handler=echo,
                                ssl_context=tls.server_ctx)
    for framing in ("native", "raw"):
        conn = await net.connect("127.0.0.1", listener.port, framing=framing,
                                 ssl_context=tls.client_ctx)
        await net.send_data(conn, framing.encode() * 100_000)
        assert (await net.receive(conn, timeout=5.0)).data == framing.encode() * 100_000


async def test_reconnect_after_listener_restarts_on_the_same_port(
        net: NetworkTransport, server_net: NetworkTransport) -> None:
    listener = await server_net.listen("127.0.0.1", 0)
    port = listener.port
    conn = await net.connect("127.0.0.1", port, reconnect_interval=0.05,
                             max_reconnect_attempts=50)
    await net.send_data(conn, b"before")
    assert (await server_net.receive(timeout=5.0)).data == b"before"
    await listener.close()
    await eventually(lambda: net.connection_info(conn).state != "connected")
    listener = await server_net.listen("127.0.0.1", port)
    await net.send_data(conn, b"after", timeout=10.0)  # waits for the reconnection
    assert (await server_net.receive(timeout=5.0)).data == b"after"
    info = net.connection_info(conn)
    assert info.state == "connected" and info.reconnects == 1 and info.id == conn


async def test_gives_up_after_max_reconnect_attempts(
        net: NetworkTransport, server_net: NetworkTransport) -> None:
    from objtransport import ConnectionNotReady

    listener = await server_net.listen("127.0.0.1", 0)
    conn = await net.connect("127.0.0.1", listener.port, reconnect_interval=0.01,
                             max_reconnect_attempts=2, failure_threshold=100)
    await listener.close()
    await eventually(lambda: net.connection_info(conn).state == "disconnected")
    with pytest.raises(ConnectionNotReady) as info:
        await net.send_data(conn, b"x")
    assert info.value.state == "disconnected"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_breaker_opens_on_a_dead_port_and_closes_when_a_listener_appears() -> None:
    port = _free_port()
    async with NetworkTransport(failure_threshold=3, reset_timeout=0.2) as net:
        for _ in range(3):
            with pytest.raises(ConnectError, match="refused"):
                await net.connect("127.0.0.1", port)
        state = net.circuit_breaker("127.0.0.1", port)
        assert (state.state, state.failure_count) == ("open", 3)
        with pytest.raises(CircuitOpenError) as info:
            await net.connect("127.0.0.1", port)
        # refused at once, with no network attempt: an attempt on the dead port would have
        # failed and counted (a timing bound here failed under load: 17 ms, not a bug)
        assert net.circuit_breaker("127.0.0.1", port).failure_count == 3
        assert 0 < info.value.retry_after <= 0.2 + 1e-9  # (x + 0.2) - x: float rounding
        with pytest.raises(CircuitOpenError):
            await net.send_to("127.0.0.1", port, b"x")
        listener = await net.listen("127.0.0.1", port)
        await asyncio.sleep(0.25)  # past reset_timeout: the next attempt is the probe
        conn = await net.connect("127.0.0.1", port)
        assert net.circuit_breaker("127.0.0.1", port).state == "closed"
        await net.send_data(conn, b"ok")
        assert (await net.receive(timeout=5.0)).data == b"ok"
        await listener.close()


async def test_exact_metrics(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0)
    conn = await net.connect("127.0.0.1", listener.port)
    for n in (10, 20, 300_000):
        await net.send_data(conn, b"m" * n)
    for _ in range(3):
        msg = await net.receive(timeout=5.0)
    await net.send_data(msg.conn_id, b"reply")
    await net.receive(conn, timeout=5.0)
    m = net.get_metrics()
    assert m.total_connections == 2 and m.active_connections == 2
    assert m.total_messages == 4 and m.messages_received == 4
    assert m.total_bytes_sent == m.total_bytes_received == 10 + 20 + 300_000 + 5
    info = net.connection_info(conn)
    assert (info.bytes_sent, info.bytes_received, info.message_count) == (300_030, 5, 4)
    assert info.state == "connected" and info.circuit_breaker.state == "closed"
    assert info.host == "127.0.0.1" and info.port == listener.port
    await net.disconnect(conn)
    await net.disconnect(conn)  # idempotent
    await net.disconnect(12345)  # unknown: no error
    m = net.get_metrics()
    assert m.total_bytes_sent == 300_035 and m.total_messages == 4


async def test_latency_is_measured_from_ping_pong() -> None:
    async with NetworkTransport(keepalive_interval=0.05) as net:
        listener = await net.listen("127.0.0.1", 0)
        await net.connect("127.0.0.1", listener.port)
        await eventually(lambda: net.get_metrics().latency_samples >= 4)
        m = net.get_metrics()
        assert 0 < m.avg_latency_ms < 100
        assert 0 < m.p50_latency_ms <= m.p99_latency_ms


async def test_errors_name_what_and_where(net: NetworkTransport) -> None:
    with pytest.raises(ConnectionNotFound, match="999"):
        await net.send_data(999, b"x")
    with pytest.raises(ConnectionNotFound):
        net.connection_info(999)
    with pytest.raises(UnsupportedTransport, match="carrier-pigeon"):
        await net.connect("127.0.0.1", 1, transport="carrier-pigeon")
    listener = await net.listen("127.0.0.1", 0, max_message_size=1000)
    conn = await net.connect("127.0.0.1", listener.port)
    with pytest.raises(MessageTooLarge, match="1001 bytes"):
        await net.send_data(conn, b"x" * 1001)
    await net.send_data(conn, b"still fine")
    assert (await net.receive(timeout=5.0)).data == b"still fine"
    with pytest.raises(TimeoutError):
        await net.receive(conn, timeout=0.01)


async def test_service_not_running() -> None:
    net = NetworkTransport()
    with pytest.raises(ServiceNotRunning):
        await net.connect("127.0.0.1", 1)
    await net.start()
    await net.stop()
    with pytest.raises(ServiceNotRunning):
        await net.listen("127.0.0.1", 0)


async def test_stop_delivers_queued_messages_first(server_net: NetworkTransport) -> None:
    listener = await server_net.listen("127.0.0.1", 0)
    net = NetworkTransport()
    await net.start()
    conn = await net.connect("127.0.0.1", listener.port)
    for i in range(1000):
        await net.send_data(conn, b"%d" % i)
    await net.stop()
    got = [int((await server_net.receive(timeout=5.0)).data) for _ in range(1000)]
    assert got == list(range(1000))


async def test_send_backpressure_against_a_peer_that_never_reads() -> None:
    """send_data blocks once max_pending_bytes are queued, then raises SendTimeout; the
    queue never grows past the limit plus one message, and the breaker hears about it."""
    from objtransport import SendTimeout

    accepted: list[asyncio.StreamWriter] = []

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never reads

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, NetworkTransport(max_pending_bytes=256 * 1024) as net:
        conn = await net.connect("127.0.0.1", port, framing="raw")
        chunk = b"x" * 16 * 1024
        sent = 0
        with pytest.raises(SendTimeout, match="does not read"):
            for _ in range(100_000):
                await net.send_data(conn, chunk, timeout=0.3)
                sent += len(chunk)
                info = net.connection_info(conn)
                # scheduler <= limit + one message; transport buffer <= 256 KiB + one pop
                assert info.pending_bytes <= 3 * 256 * 1024 + 2 * len(chunk)
        assert sent < 64 * 1024 * 1024  # stopped long before buffering everything
        assert net.circuit_breaker("127.0.0.1", port).failure_count == 1
        for w in accepted:
            w.close()


async def test_send_nowait_from_a_plain_handler(net: NetworkTransport) -> None:
    from objtransport import SendTimeout

    def echo(msg: Message) -> None:
        net.send_nowait(msg.conn_id, msg.data.upper(), priority="high")

    listener = await net.listen("127.0.0.1", 0, handler=echo)
    conn = await net.connect("127.0.0.1", listener.port, max_pending_bytes=64 * 1024)
    net.send_nowait(conn, b"hi")
    assert (await net.receive(conn, timeout=5.0)).data == b"HI"
    with pytest.raises(SendTimeout, match="already queued"):
        for _ in range(100):
            net.send_nowait(conn, b"x" * 8192)  # no await: nothing drains
    await net.disconnect(conn)
    with pytest.raises(ConnectionNotFound):
        net.send_nowait(conn, b"gone")


@pytest.mark.parametrize("framing", ["native", "raw"])
async def test_send_many_delivers_every_message_in_order(net: NetworkTransport,
                                                         framing: str) -> None:
    """Batches mixing small and large messages (fragmented when native) and priorities
    arrive whole and in order; the batch after a refused message is not sent."""
    got: list[bytes] = []
    done = asyncio.Event()
    listener = await net.listen("127.0.0.1", 0, framing="auto", handler=lambda m: (
        got.append(m.data), len(got) == 3003 and done.set()))
    conn = await net.connect("127.0.0.1", listener.port, framing=framing)  # type: ignore[arg-type]
    big = bytes(range(256)) * 4096  # 1 MiB
    normal = [b"n%d" % i for i in range(1000)]
    high = [b"h%d" % i for i in range(1000)]
    other = [b"s%d" % i for i in range(1000)]
    await net.send_many(conn, normal)
    await net.send_many(conn, (bytearray(b) for b in [b"a", big, b"b"]))
    await net.send_many(conn, iter(high), priority="high")  # may overtake queued normal ones
    await net.send_many(conn, [memoryview(b) for b in other], stream=2)
    await asyncio.wait_for(done.wait(), 10)
    for group in ([*normal, b"a", big, b"b"], high, other):
        assert [m for m in got if m in group] == group  # each in order
    assert len(got) == 3003
    with pytest.raises(MessageTooLarge):
        await net.send_many(conn, [b"ok", bytes(net.options.max_message_size + 1), b"no"])
    await net.send_data(conn, b"last")
    await eventually(lambda: got[-1] == b"last")
    assert got[-2:] == [b"ok", b"last"]
    await net.flush(conn, timeout=5)
    assert net.connection_info(conn).unacked_messages == 0
