"""Compression negotiated in the HELLO (and a zip bomb refused before expansion), messages
that expire, JSON and MessagePack helpers: over real sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import zlib

import pytest

from objtransport import Message, NetworkTransport, UnsupportedFeature
from objtransport.events import SessionLost as SessionLostEvent
from objtransport.events import Subscription
from objtransport.exceptions import ProtocolError
from objtransport.sansio.framing import (
    FEATURE_ACKS,
    FEATURE_META,
    FEATURE_RESUME,
    FEATURE_ZLIB,
    FLAG_ZIP,
    MAGIC,
    FrameType,
    GoAwayCode,
    Hello,
    decode_goaway,
    encode_data,
    encode_hello,
)
from objtransport.sansio.headers import CODEC_ZLIB, compress, decompress
from objtransport.testing import ManualClock, eventually
from objtransport.testing.proxy import FaultProxy

pytestmark = pytest.mark.timeout(30)

TEXT = json.dumps([{"id": i, "name": f"sensor-{i}", "value": i * 0.5, "ok": True}
                   for i in range(20_000)]).encode()  # about 1 MiB of JSON-like text


def _codecs() -> list[str]:
    out = ["zlib"]
    try:
        import zstandard  # noqa: F401
        out.append("zstd")
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("codec", _codecs())
@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_compression_is_negotiated_and_saves_bytes_on_the_wire(
        codec: str, transport: str) -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport)
        if transport == "tcp":
            async with FaultProxy("127.0.0.1", listener.port) as proxy:
                conn = await client.connect("127.0.0.1", proxy.port, compression=codec)
                before = proxy.bytes_forwarded
                await client.send_data(conn, TEXT)
                await client.send_data(conn, b"small stays plain")
                got = [await server.receive(timeout=10.0) for _ in range(2)]
                wire = proxy.bytes_forwarded - before
                await client.disconnect(conn)
            assert wire < len(TEXT) // 4  # JSON-like text compresses well
        else:
            conn = await client.connect("127.0.0.1", listener.port, transport=transport,
                                        compression=codec)
            await client.send_data(conn, TEXT)
            await client.send_data(conn, b"small stays plain")
            got = [await server.receive(timeout=10.0) for _ in range(2)]
        assert [m.data for m in got] == [TEXT, b"small stays plain"]
        assert client.get_metrics().messaging["compressed_sent"] == 1


async def test_without_compression_nothing_is_compressed() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            await client.send_data(conn, TEXT)
            assert (await server.receive(timeout=10.0)).data == TEXT
            assert proxy.bytes_forwarded > len(TEXT)
            await client.disconnect(conn)
        assert client.get_metrics().messaging["compressed_sent"] == 0


def test_decompress_checks_the_declared_size_before_expanding() -> None:
    bomb = zlib.compress(b"\0" * (32 << 20), 9)  # 32 MiB of zeros in ~32 KiB
    with pytest.raises(ProtocolError, match="above max_message_size") as too_big:
        decompress(bytes((CODEC_ZLIB,)) + (32 << 20).to_bytes(4, "big") + bomb, 1 << 20)
    assert too_big.value.code == GoAwayCode.MESSAGE_TOO_LARGE
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="does not expand to the 1000 bytes"):
            decompress(bytes((CODEC_ZLIB,)) + (1000).to_bytes(4, "big") + bomb, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the 32 MiB were never produced
    assert decompress(compress(TEXT, CODEC_ZLIB), len(TEXT)) == TEXT


async def test_a_zip_bomb_closes_the_connection_before_expansion() -> None:
    bomb = zlib.compress(b"\0" * (32 << 20), 9)
    async with NetworkTransport(max_message_size=1 << 20) as server:
        listener = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        hello = Hello(b"\1" * 16, FEATURE_ACKS | FEATURE_RESUME | FEATURE_META | FEATURE_ZLIB,
                      1 << 20, 1 << 20)
        payload = bytes((CODEC_ZLIB,)) + (1000).to_bytes(4, "big") + bomb
        tracemalloc.start()
        try:
            writer.write(MAGIC + encode_hello(hello) + encode_data(payload, 1, 0, 2, FLAG_ZIP))
            data = await asyncio.wait_for(reader.read(), 10.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            writer.close()
        assert peak < 8 << 20
        # magic, the listener's HELLO, then GOAWAY MESSAGE_TOO_LARGE
        goaway = data.rfind(bytes((1, FrameType.GOAWAY)))
        assert goaway > 0
        code, reason = decode_goaway(data[goaway + 16:])
        assert code == GoAwayCode.MESSAGE_TOO_LARGE, reason
        assert server.get_metrics().messages_queued == 0


async def test_a_raw_websocket_connection_has_no_headers_nor_requests() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, transport="websocket")
        conn = await client.connect("127.0.0.1", listener.port, transport="websocket",
                                    framing="raw")
        with pytest.raises(UnsupportedFeature):
            await client.send_json(conn, {"a": 1})
        with pytest.raises(UnsupportedFeature):
            await client.request(conn, b"x")
        await client.send_data(conn, b'{"a": 1}', text=True)
        msg = await server.receive(timeout=5.0)
        assert msg.json() == {"a": 1} and msg.text and msg.headers is None


async def test_raw_framing_has_no_compression() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, framing="raw")
        with pytest.raises(UnsupportedFeature):
            await client.connect("127.0.0.1", listener.port, framing="raw",
                                 compression="zstd")


# -- ttl ---------------------------------------------------------------------------------------
async def test_a_message_whose_ttl_passes_before_it_can_be_queued_is_reported() -> None:
    async with NetworkTransport() as server, \
            NetworkTransport(reconnect_interval=5.0, reconnect_jitter=False) as client:
        listener = await server.listen("127.0.0.1", 0)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            proxy.blackhole()
            proxy.reset_all()
            for _ in range(200):  # until the client noticed the loss
                if client.connection_info(conn).state != "connected":
                    break
                await asyncio.sleep(0.01)
            await client.send_data(conn, b"telemetry", ttl=0.1, priority="low", timeout=5.0)
        m = client.get_metrics().messaging
        assert (m["expired_sent"], m["expired_sent_low"]) == (1, 1)
        assert client.unconfirmed(conn) == [b"telemetry"]


@pytest.mark.parametrize("transport", ["tcp", "websocket", "grpc"])
async def test_a_message_delivered_after_its_ttl_is_dropped_by_the_receiver(
        transport: str) -> None:
    got: list[bytes] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def handler(msg: Message) -> None:
        if msg.data == b"first":
            started.set()
            await gate.wait()
        got.append(msg.data)

    clock = ManualClock()  # the receiver's: its ttl checks read it
    async with NetworkTransport(clock=clock) as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=handler, transport=transport)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport)
        await client.send_data(conn, b"first")
        await asyncio.wait_for(started.wait(), 5.0)
        await client.send_data(conn, b"stale", ttl=5.0)
        await client.send_data(conn, b"fresh", ttl=30.0)
        await client.flush(conn)  # both wait in the handler's backlog
        clock.advance(10.0)  # "stale" outlives its ttl there
        gate.set()
        await eventually(lambda: len(got) == 2)
        assert got == [b"first", b"fresh"]
        assert server.get_metrics().messaging["expired_received"] == 1


# -- codecs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_send_json_sets_the_content_type_and_msg_json_decodes(transport: str) -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport)
        await client.send_json(conn, {"temp": 21.5, "unit": "°C"}, headers={"x": "1"})
        msg = await server.receive(timeout=5.0)
        assert msg.json() == {"temp": 21.5, "unit": "°C"}
        assert msg.content_type == "application/json"
        assert msg.headers is not None and msg.headers["x"] == b"1"


async def test_send_msgpack_round_trips() -> None:
    pytest.importorskip("msgpack")
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_msgpack(conn, {"b": b"\x00\x01", "n": [1, 2, 3]})
        msg = await server.receive(timeout=5.0)
        assert msg.msgpack() == {"b": b"\x00\x01", "n": [1, 2, 3]}
        assert msg.content_type == "application/msgpack"


async def test_unconfirmed_gives_the_payload_without_meta_block_or_compression() -> None:
    async with NetworkTransport() as server, \
            NetworkTransport(reconnect_interval=0.01, max_reconnect_attempts=1) as client:
        listener = await server.listen("127.0.0.1", 0)
        proxy = await FaultProxy("127.0.0.1", listener.port).start()
        conn = await client.connect("127.0.0.1", proxy.port, compression="zlib")
        proxy.blackhole()
        await client.send_data(conn, b"with headers", headers={"k": "v"})
        await client.send_data(conn, TEXT)  # compressed
        await client.send_data(conn, b"plain")
        await proxy.close()  # nothing acknowledged; reconnecting is refused: given up
        for _ in range(500):
            if client.connection_info(conn).state == "disconnected":
                break
            await asyncio.sleep(0.01)
        assert client.unconfirmed(conn) == [b"with headers", TEXT, b"plain"]


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_an_unacknowledged_message_past_its_ttl_is_skipped_not_resent(
        transport: str) -> None:
    """Written, never acknowledged (the proxy swallows it), then the ttl passes on the
    injected clock: the resumed session sends a SKIP for its number instead of the
    payload. The listener never sees it (not even to drop it), and flush() completes,
    so the skipped number left no gap in the acknowledgements."""
    clock = ManualClock()
    async with NetworkTransport() as server, \
            NetworkTransport(reconnect_interval=0.01, clock=clock) as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port, transport=transport)
            events = client.events()
            proxy.blackhole()  # written, never delivered, never acknowledged
            await client.send_data(conn, b"stale telemetry", ttl=5.0, priority="high")
            await client.send_data(conn, b"kept")
            clock.advance(10.0)  # the ttl passes while the link is dead
            proxy.blackhole(False)
            proxy.reset_all()  # the client reconnects and resumes
            await client.flush(conn, timeout=10.0)
            msg = await server.receive(timeout=5.0)
            assert msg.data == b"kept"
            lost = await _next_session_lost(events)
            assert (lost.unconfirmed, lost.reason) == (1, "expired")
            await client.disconnect(conn)
        assert server.get_metrics().messaging["expired_received"] == 0
        assert server.get_metrics().messages_queued == 0
        m = client.get_metrics().messaging
        assert (m["expired_sent"], m["expired_sent_high"]) == (1, 1)
        assert client.unconfirmed(conn) == [b"stale telemetry"]


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_a_queued_message_past_its_ttl_leaves_the_queue_unsent(transport: str) -> None:
    """Behind 1 MiB on a 64 KiB/s connection a message waits in the send queue; its ttl
    passes (injected clock): it is taken out, counted, reported, and never written."""
    clock = ManualClock()
    async with NetworkTransport() as server, NetworkTransport(clock=clock) as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport,
                                    max_bandwidth=64 * 1024)
        events = client.events()
        await client.send_data(conn, bytes(1 << 20))  # about 16 s at this rate
        await client.send_data(conn, b"stale", ttl=5.0)
        clock.advance(10.0)
        await client.send_data(conn, b"fresh", ttl=60.0)  # gives up "stale" first
        lost = await _next_session_lost(events)
        assert (lost.unconfirmed, lost.reason) == (1, "expired")
        client.set_bandwidth(conn, 0)
        await client.flush(conn, timeout=10.0)
        got = [await server.receive(timeout=5.0) for _ in range(2)]
        assert [len(got[0].data), got[1].data] == [1 << 20, b"fresh"]
        assert server.get_metrics().messages_queued == 0  # "stale" never arrived
        assert server.get_metrics().messaging["expired_received"] == 0
        assert client.unconfirmed(conn) == [b"stale"]
        assert client.get_metrics().messaging["expired_sent_normal"] == 1


async def _next_session_lost(events: Subscription) -> SessionLostEvent:
    async with asyncio.timeout(5.0):
        async for ev in events:
            if isinstance(ev, SessionLostEvent):
                return ev
    raise AssertionError("the event stream ended")
