"""The gRPC transport over real loopback sockets: native and raw, plaintext and TLS, against
plain ``grpcio`` peers built from the shipped .proto (stubs generated at test time)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.resources
import os
import sys
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
grpc_tools = pytest.importorskip("grpc_tools")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_tools import protoc  # noqa: E402

from objtransport import (  # noqa: E402
    ConnectError,
    Message,
    MessageTooLarge,
    NetworkTransport,
    ProtocolError,
    SendTimeout,
    TransportError,
)
from objtransport.config import Options  # noqa: E402
from objtransport.drivers.grpc_config import (  # noqa: E402
    METHOD,
    OVERHEAD,
    SERVICE,
    carriers,
    channel_options,
    server_options,
)
from objtransport.sansio.envelope import (  # noqa: E402
    decode_envelope,
    encode_frames,
    encode_payload,
)
from objtransport.sansio.session import NativeSession  # noqa: E402
from objtransport.testing import eventually  # noqa: E402

from .conftest import TLS  # noqa: E402

G = {"transport": "grpc"}
SIZES = [1, 100, 64 * 1024, 256 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024 + 7,
         16 * 1024 * 1024]
PROTO = importlib.resources.files("objtransport") / "proto/objtransport/v1/transport.proto"


# -- stubs generated from the shipped .proto, at test time --------------------------------------

@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """``transport_pb2`` and ``transport_pb2_grpc`` made by grpc_tools.protoc from the .proto
    in the package (copied flat, so the module names do not clash with ``objtransport``)."""
    out = tmp_path_factory.mktemp("proto")
    src = out / "transport.proto"
    src.write_text(PROTO.read_text(encoding="utf-8"), encoding="utf-8")
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{out}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(src)])
    assert rc == 0
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("transport_pb2")
        pb2_grpc = importlib.import_module("transport_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return types.SimpleNamespace(pb2=pb2, grpc=pb2_grpc)


def _tls_files(tls: TLS) -> dict[str, bytes]:
    cert = tls.ca.issue_cert("127.0.0.1", "localhost", "::1")
    return {"certificate_chain": b"".join(p.bytes() for p in cert.cert_chain_pems),
            "private_key": cert.private_key_pem.bytes()}


@contextlib.asynccontextmanager
async def plain_echo_server(pb: Any, **kw: Any) -> AsyncIterator[int]:
    """A plain grpc.aio server implementing the .proto (echoes every Envelope)."""
    class Echo(pb.grpc.TransportServicer):  # type: ignore[misc,name-defined]
        async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            async for env in request_iterator:
                yield pb.pb2.Envelope(payload=env.payload, text=env.text)

    server = grpc.aio.server(**kw)
    pb.grpc.add_TransportServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def echo_listener(net: NetworkTransport, host: str = "127.0.0.1", port: int = 0,
                        **kw: Any) -> Any:
    def echo(msg: Message) -> None:
        net.send_nowait(msg.conn_id, msg.data, text=msg.text)

    return await net.listen(host, port, handler=echo, transport="grpc", **kw)


# -- the contract: the .proto and the hand-written Envelope codec -------------------------------

def test_proto_is_shipped_in_the_package() -> None:
    text = PROTO.read_text(encoding="utf-8")
    assert "package objtransport.v1;" in text
    assert "rpc Connect(stream Envelope) returns (stream Envelope);" in text
    assert "bytes payload = 1;" in text
    assert (METHOD, SERVICE) == ("/objtransport.v1.Transport/Connect",
                                 "objtransport.v1.Transport")


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_100_000])
def test_envelope_codec_matches_protobuf(pb: Any, size: int) -> None:
    data = os.urandom(size)
    env = pb.pb2.Envelope
    for text in (False, True):
        ours = encode_payload(data, text)
        assert ours == env(payload=data, text=text).SerializeToString()
        parsed = env.FromString(ours)
        assert (parsed.payload, parsed.text) == (data, text)
        payload, frames, got_text = decode_envelope(ours)
        assert (bytes(payload), bytes(frames), got_text) == (data, b"", text)
    ours = encode_frames([data[:size // 2], memoryview(data)[size // 2:]])
    assert ours == env(frames=data).SerializeToString()
    full = env(payload=data[:10], frames=data, text=True).SerializeToString()
    payload, frames, text = decode_envelope(full)
    assert (bytes(payload), bytes(frames), text) == (data[:10], data, True)


def test_envelope_decoder_skips_unknown_fields_and_rejects_garbage() -> None:
    unknown = (b"\x38\x96\x01"            # field 7, varint 150
               + b"\x4a\x03abc"           # field 9, bytes
               + b"\x55\x01\x02\x03\x04"  # field 10, fixed32
               + b"\x59" + b"\x00" * 8)   # field 11, fixed64
    payload, frames, text = decode_envelope(unknown + encode_payload(b"hi") + unknown)
    assert (bytes(payload), bytes(frames), text) == (b"hi", b"", False)
    for bad in (b"\x0a\x05abc", b"\x0a", b"\x0a\xff\xff", b"\x0b", b"\x00\x01", b"\x55\x01"):
        with pytest.raises(ProtocolError):
            decode_envelope(bad)


def test_carriers_split_native_bytes_at_the_limit() -> None:
    chunks = [os.urandom(n) for n in (10, 700, 300, 5)]
    joined = b"".join(chunks)
    out = carriers(chunks, limit=256)
    assert [len(bytes(decode_envelope(e)[1])) for e in out] == [256, 256, 256, 247]
    assert b"".join(bytes(decode_envelope(e)[1]) for e in out) == joined
    assert carriers([b"abc"]) == [encode_frames([b"abc"])]


def test_channel_limits_and_keepalive_follow_the_options() -> None:
    opts = Options(max_frame_size=4 << 20, max_message_size=8 << 20, keepalive_interval=2.5,
                   pong_timeout=3.0)
    native = dict(channel_options(opts, True, None))
    raw = dict(channel_options(opts, False, "example.org"))
    server = dict(server_options(opts))
    assert native["grpc.max_receive_message_length"] == (4 << 20) + OVERHEAD
    assert raw["grpc.max_send_message_length"] == (8 << 20) + OVERHEAD
    assert server["grpc.max_receive_message_length"] == (8 << 20) + OVERHEAD
    assert (native["grpc.keepalive_time_ms"], native["grpc.keepalive_timeout_ms"]) == (2500,
                                                                                     3000)
    assert raw["grpc.ssl_target_name_override"] == "example.org"
    assert server["grpc.so_reuseport"] == 0 and server["grpc.http2.max_ping_strikes"] == 0


# -- native ---------------------------------------------------------------------------------------

async def test_native_features_priorities_text_acks_and_rtt(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, keepalive_interval=0.05, **G)
    conn = await net.connect("127.0.0.1", listener.port, keepalive_interval=0.05, **G)
    await net.send_data(conn, b"low", priority="low", stream=3)
    await net.send_data(conn, b"texte", text=True, priority="high")
    await net.flush(conn, timeout=5.0)  # every message acknowledged by the peer
    got = {}
    for _ in range(2):
        m = await net.receive(timeout=5.0)
        got[m.data] = m.text
    assert got == {b"low": False, b"texte": True}
    assert net.connection_info(conn).unacked_messages == 0
    await eventually(lambda: net.get_metrics().latency_samples >= 2)  # native PING/PONG
    assert net.connection_info(conn).rtt_ms is not None


async def test_native_coalesces_one_loop_turn_into_few_envelopes(
        net: NetworkTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    carriers_seen: list[int] = []  # Envelopes the listener side received
    original = NativeSession.receive_data

    def counting(self: NativeSession, data: Any, now: float) -> Any:
        if self.role == "server":
            carriers_seen.append(len(data))
        return original(self, data, now)

    monkeypatch.setattr(NativeSession, "receive_data", counting)
    got: list[bytes] = []
    listener = await net.listen("127.0.0.1", 0, handler=lambda m: got.append(m.data), **G)
    conn = await net.connect("127.0.0.1", listener.port, **G)
    await eventually(lambda: carriers_seen)  # HELLO and PING went out
    carriers_seen.clear()
    for i in range(1000):
        net.send_nowait(conn, i.to_bytes(4, "big") * 16)
    await eventually(lambda: len(got) == 1000)
    assert got == [i.to_bytes(4, "big") * 16 for i in range(1000)]
    assert 1 <= len(carriers_seen) <= 3, carriers_seen


async def test_native_client_against_plain_server_is_a_clear_connect_error(
        net: NetworkTransport, pb: Any) -> None:
    async with plain_echo_server(pb) as port:
        with pytest.raises(ConnectError, match="framing='raw'"):
            await net.connect("127.0.0.1", port, timeout=2.0, **G)


async def test_server_without_the_service_is_a_clear_connect_error(
        net: NetworkTransport) -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with pytest.raises(ConnectError, match="does not implement"):
            await net.connect("127.0.0.1", port, **G)
        # raw: the call opens; the status ends it (and is reported, never raised raw)
        conn = await net.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0,
                                 **G)
        await eventually(lambda: net.connection_info(conn).error_count >= 1)
        assert "UNIMPLEMENTED" in net.connection(conn).last_error
        # each call opens and fails at once: that is a failed attempt, not a success that
        # starts the backoff over, so the connection is given up after the attempts
        again = await net.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=3,
                                  reconnect_interval=0.01, **G)
        await eventually(lambda: net.connection_info(again).state == "disconnected", 10)
        assert net.connection_info(again).reconnects <= 3
    finally:
        await server.stop(None)


# -- raw: plain grpcio peers built from the .proto ----------------------------------------------

async def test_plain_grpc_client_talks_raw_to_a_listener(net: NetworkTransport, pb: Any) -> None:
    listener = await net.listen("127.0.0.1", 0, **G)
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{listener.port}",
            options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        call = pb.grpc.TransportStub(channel).Connect()
        await call.write(pb.pb2.Envelope(payload=b"\x00\x01binary"))
        await call.write(pb.pb2.Envelope(payload="texte ü".encode(), text=True))
        first = await net.receive(timeout=5.0)
        second = await net.receive(timeout=5.0)
        assert (first.data, first.text) == (b"\x00\x01binary", False)
        assert (second.data, second.text) == ("texte ü".encode(), True)
        assert first.transport == "grpc"
        assert net.connection_info(first.conn_id).framing == "raw"
        await net.send_data(first.conn_id, b"reply")
        await net.send_data(first.conn_id, "réponse".encode(), text=True)
        big = os.urandom(3 * 1024 * 1024)
        await net.send_data(first.conn_id, big)
        assert await call.read() == pb.pb2.Envelope(payload=b"reply")
        assert await call.read() == pb.pb2.Envelope(payload="réponse".encode(), text=True)
        assert (await call.read()).payload == big
        await call.done_writing()  # a raw client that is done: the listener ends the call
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_raw_client_against_plain_grpc_server(net: NetworkTransport, pb: Any) -> None:
    async with plain_echo_server(
            pb, options=[("grpc.max_receive_message_length", 64 << 20),
                         ("grpc.max_send_message_length", 64 << 20)]) as port:
        conn = await net.connect("127.0.0.1", port, framing="raw", **G)
        payloads = [b"a", b"", os.urandom(100_000), os.urandom(5 * 1024 * 1024)]
        for p in payloads:
            await net.send_data(conn, p)
        await net.send_data(conn, b"as text", text=True)
        for p in payloads:
            assert (await net.receive(conn, timeout=10.0)).data == p
        last = await net.receive(conn, timeout=5.0)
        assert last.data == b"as text" and last.text
        info = net.connection_info(conn)
        assert info.framing == "raw" and info.messages_received == 5
        await net.disconnect(conn)


async def test_raw_oversized_send_raises_message_too_large_locally(
        net: NetworkTransport, pb: Any) -> None:
    async with plain_echo_server(pb) as port:
        conn = await net.connect("127.0.0.1", port, framing="raw", max_message_size=1000, **G)
        with pytest.raises(MessageTooLarge):
            await net.send_data(conn, b"x" * 1001)
        await net.send_data(conn, b"x" * 1000)
        assert (await net.receive(conn, timeout=5.0)).data == b"x" * 1000


async def test_oversized_message_from_plain_client_is_resource_exhausted(
        net: NetworkTransport, pb: Any) -> None:
    listener = await echo_listener(net, max_message_size=1024)
    target = f"127.0.0.1:{listener.port}"
    opts = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=opts) as channel:
        stub = pb.grpc.TransportStub(channel)
        good = stub.Connect()
        await good.write(pb.pb2.Envelope(payload=b"ok"))
        assert (await good.read()).payload == b"ok"
        # above max_message_size (our check) and above the channel limit (grpc's own)
        for size in (2048, 3 * 1024 * 1024):
            bad = stub.Connect()
            await bad.write(pb.pb2.Envelope(payload=b"x" * size))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bad.read()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await good.write(pb.pb2.Envelope(payload=b"still here"))
        assert (await good.read()).payload == b"still here"
    async with grpc.aio.insecure_channel(target) as channel:
        again = pb.grpc.TransportStub(channel).Connect()
        await again.write(pb.pb2.Envelope(payload=b"new one"))
        assert (await again.read()).payload == b"new one"
    await eventually(lambda: net.get_metrics().errors >= 1)


async def test_status_codes_never_leak(net: NetworkTransport, pb: Any) -> None:
    class Denied(pb.grpc.TransportServicer):  # type: ignore[misc,name-defined]
        async def Connect(self, request_iterator: Any, context: Any) -> None:
            await context.read()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")

    server = grpc.aio.server()
    pb.grpc.add_TransportServicer_to_server(Denied(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        conn = await net.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0,
                                 **G)
        await net.send_data(conn, b"hi")
        await eventually(lambda: net.connection_info(conn).state == "disconnected")
        assert "PERMISSION_DENIED: not you" in net.connection(conn).last_error
        with pytest.raises(TransportError):  # never a grpc exception
            await net.send_data(conn, b"more", timeout=0.2)
    finally:
        await server.stop(None)


async def test_unavailable_feeds_the_breaker_and_reconnects(net: NetworkTransport,
                                                           pb: Any) -> None:
    calls = 0

    class Flaky(pb.grpc.TransportServicer):  # type: ignore[misc,name-defined]
        async def Connect(self, request_iterator: Any, context: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                await context.read()
                await context.abort(grpc.StatusCode.UNAVAILABLE, "try again later")
            async for env in request_iterator:
                yield env

    server = grpc.aio.server()
    pb.grpc.add_TransportServicer_to_server(Flaky(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        conn = await net.connect("127.0.0.1", port, framing="raw", reconnect_jitter=False,
                                 **G)
        await net.send_data(conn, b"first")
        await eventually(lambda: net.connection_info(conn).reconnects >= 1)
        # the failure was recorded (the successful reconnect then reset the count)
        assert net.circuit_breaker("127.0.0.1", port, transport="grpc").last_failure
        assert "UNAVAILABLE: try again later" in net.connection(conn).last_error
        await net.send_data(conn, b"second")
        assert (await net.receive(conn, timeout=5.0)).data == b"second"
    finally:
        await server.stop(None)


async def test_full_listener_refuses_with_resource_exhausted(net: NetworkTransport) -> None:
    listener = await echo_listener(net, max_connections=1)
    first = await net.connect("127.0.0.1", listener.port, **G)
    with pytest.raises(ConnectError, match="RESOURCE_EXHAUSTED"):
        await net.connect("127.0.0.1", listener.port, **G)
    await net.send_data(first, b"still served")
    assert (await net.receive(first, timeout=5.0)).data == b"still served"


async def test_a_client_that_never_reads_blocks_the_sender_within_limits(
        net: NetworkTransport, pb: Any) -> None:
    listener = await net.listen("127.0.0.1", 0, max_pending_bytes=1 << 20, **G)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
        call = pb.grpc.TransportStub(channel).Connect()
        await call.write(pb.pb2.Envelope(payload=b"hello"))  # then never reads
        conn = (await net.receive(timeout=5.0)).conn_id
        chunk = b"z" * 65536
        with pytest.raises(SendTimeout):
            for _ in range(2000):  # 128 MiB: far more than any window
                await net.send_data(conn, chunk, timeout=0.5)
        assert net.connection_info(conn).pending_bytes <= 2 * (1 << 20) + len(chunk)
        call.cancel()


@pytest.mark.parametrize("framing", ["raw", "native"])
async def test_answers_written_by_the_reader_keep_order_with_the_writer_task(
        net: NetworkTransport, framing: str) -> None:
    """Replies queued while the reader hands a small carrier over are written by the reader
    itself; messages sent from another task go through the writer task. Both take turns on
    one call: every message arrives, each sequence in its order."""
    n = 400
    started = asyncio.Event()
    conns: list[int] = []

    def echo(msg: Message) -> None:
        if not conns:
            conns.append(msg.conn_id)
            started.set()
        net.send_nowait(msg.conn_id, b"r" + msg.data)

    listener = await net.listen("127.0.0.1", 0, handler=echo, **G)

    async def own_stream() -> None:  # the listener's own sends, from a task of their own
        await started.wait()
        for i in range(n):
            await net.send_data(conns[0], b"s%d" % i)
            if i % 7 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(own_stream())
    conn = await net.connect("127.0.0.1", listener.port, framing=framing, **G)
    for i in range(n):
        await net.send_data(conn, b"c%d" % i)
        if i % 5 == 0:
            await asyncio.sleep(0)
    got = [(await net.receive(conn, timeout=10.0)).data for _ in range(2 * n)]
    await task
    assert [m for m in got if m.startswith(b"rc")] == [b"rc%d" % i for i in range(n)]
    assert [m for m in got if m.startswith(b"s")] == [b"s%d" % i for i in range(n)]


async def test_raw_lone_sends_survive_their_senders_being_cancelled(
        net: NetworkTransport) -> None:
    """Raw mode writes a message queued on an idle link from the sender's own step, but the
    sender does not await that write: grpc.aio would cancel the whole call if the task
    awaiting a write were cancelled. Each sender here is cancelled while its message is
    still being written; the call stays up and every message comes back, in order."""
    listener = await echo_listener(net)
    conn = await net.connect("127.0.0.1", listener.port, framing="raw", **G)
    n = 60
    parked = asyncio.Event()  # never set: a sender waits here until it is cancelled

    async def sender(i: int) -> None:
        await net.send_data(conn, b"m%d" % i)
        await parked.wait()

    for i in range(n):
        task = asyncio.create_task(sender(i))
        await asyncio.sleep(0)  # it queued (the write is under way) and is parked now
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if i % 3 == 0:  # now and then a burst: the writer task takes the rest in order
            for j in range(5):
                await net.send_data(conn, b"b%d.%d" % (i, j))
    expected = []
    for i in range(n):
        expected.append(b"m%d" % i)
        if i % 3 == 0:
            expected += [b"b%d.%d" % (i, j) for j in range(5)]
    got = [(await net.receive(conn, timeout=10.0)).data for _ in range(len(expected))]
    assert got == expected
    assert net.connection_info(conn).state == "connected"


# -- health ---------------------------------------------------------------------------------------

async def test_health_check_answers_serving_then_not_serving(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, **G)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", SERVICE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                     timeout=5.0)
            assert reply.status == serving
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10.0)
        assert (await watch.read()).status == serving
        closing = asyncio.create_task(listener.close())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.wait_for(closing, 5.0)


# -- TLS ------------------------------------------------------------------------------------------

async def test_tls_native_and_plain_client(net: NetworkTransport, tls: TLS, pb: Any) -> None:
    files = _tls_files(tls)
    listener = await echo_listener(net, **files)
    roots = tls.ca.cert_pem.bytes()
    conn = await net.connect("127.0.0.1", listener.port, ssl=True, root_certificates=roots,
                             **G)
    await net.send_data(conn, b"secret" * 1000)
    reply = await net.receive(conn, timeout=5.0)
    assert reply.data == b"secret" * 1000
    assert net.connection_info(conn).tls
    assert listener.tls and "+tls" in repr(listener)  # PEM material: a TLS listener too
    (accepted,) = listener.connections
    assert net.connection_info(accepted).tls
    # server_hostname: the name the certificate is checked against (and the :authority)
    named = await net.connect("127.0.0.1", listener.port, ssl=True, root_certificates=roots,
                              server_hostname="localhost", **G)
    await net.send_data(named, b"by name")
    assert (await net.receive(named, timeout=5.0)).data == b"by name"
    # the CAs of an ssl.SSLContext are used as the roots too
    other = await net.connect("127.0.0.1", listener.port, ssl_context=tls.client_ctx,
                              framing="raw", **G)
    await net.send_data(other, b"via context")
    assert (await net.receive(other, timeout=5.0)).data == b"via context"
    creds = grpc.ssl_channel_credentials(roots)
    async with grpc.aio.secure_channel(f"localhost:{listener.port}", creds) as channel:
        call = pb.grpc.TransportStub(channel).Connect()
        await call.write(pb.pb2.Envelope(payload=b"plain tls client"))
        assert (await call.read()).payload == b"plain tls client"


async def test_mutual_tls(net: NetworkTransport, tls: TLS) -> None:
    roots = tls.ca.cert_pem.bytes()
    listener = await echo_listener(net, root_certificates=roots, **_tls_files(tls))
    conn = await net.connect("127.0.0.1", listener.port, root_certificates=roots,
                             **_tls_files(tls), **G)
    await net.send_data(conn, b"both verified")
    assert (await net.receive(conn, timeout=5.0)).data == b"both verified"
    with pytest.raises(ConnectError):  # no client certificate
        await net.connect("127.0.0.1", listener.port, root_certificates=roots, **G)


async def test_tls_untrusted_certificate_is_refused(net: NetworkTransport, tls: TLS) -> None:
    listener = await echo_listener(net, **_tls_files(tls))
    started = time.monotonic()
    with pytest.raises(ConnectError, match="certificate verification failed"):
        await net.connect("127.0.0.1", listener.port, ssl=True, **G)  # system roots only
    with pytest.raises(ConnectError):  # plaintext to a TLS listener
        await net.connect("127.0.0.1", listener.port, **G)
    assert time.monotonic() - started < 4.0
    with pytest.raises(ValueError, match="certificate_chain"):
        await net.listen("127.0.0.1", 0, ssl_context=tls.server_ctx, **G)


# -- failures and recovery ----------------------------------------------------------------------

async def test_orderly_close_is_quick_and_error_free() -> None:
    async with NetworkTransport(timeout=5.0) as server:
        listener = await echo_listener(server)
        started = time.monotonic()
        async with NetworkTransport(timeout=5.0) as net:
            native = await net.connect("127.0.0.1", listener.port, **G)
            raw = await net.connect("127.0.0.1", listener.port, framing="raw", **G)
            for conn in (native, raw):
                await net.send_data(conn, b"ping", wait_ack=True)
                assert (await net.receive(conn, timeout=5.0)).data == b"ping"
            await net.disconnect(native)
            await net.disconnect(raw)
            await eventually(lambda: not server.connections())
            assert net.get_metrics().errors == 0 and server.get_metrics().errors == 0
            again = await net.connect("127.0.0.1", listener.port, **G)
            await net.send_data(again, b"x", wait_ack=True)
        # the listener side saw the client's GOAWAY: no error, nothing kept for resuming
        await eventually(lambda: not server.connections())
        assert server.get_metrics().errors == 0
        await listener.close()
        assert time.monotonic() - started < 3.0


def test_grpc_is_a_supported_transport() -> None:
    assert "grpc" in NetworkTransport().transports
