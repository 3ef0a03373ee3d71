"""Misbehaving peers over real sockets: each is closed with a reason, counted and logged once;
the listener and every other connection keep working; memory stays bounded."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from objtransport import NetworkTransport
from objtransport.sansio.decoder import RECV_BUFFER_SIZE
from objtransport.sansio.framing import MAGIC, GoAwayCode, decode_goaway
from objtransport.testing import eventually

HEADER = struct.Struct("!IBBBBIQ")


async def _read_goaway(reader: asyncio.StreamReader) -> tuple[int, str] | None:
    """Read frames until GOAWAY or EOF; return GOAWAY's (code, reason) or None."""
    async with asyncio.timeout(5):
        head = await reader.readexactly(4)
        assert head == MAGIC
        while True:
            try:
                raw = await reader.readexactly(20)
            except asyncio.IncompleteReadError:
                return None
            length, _v, ftype, _f, _p, _s, _q = HEADER.unpack(raw)
            body = await reader.readexactly(length - 16)
            if ftype == 6:
                return decode_goaway(body)


async def _healthy(net: NetworkTransport, port: int, good: int) -> None:
    """The listener still accepts, and an existing good connection still works."""
    await net.send_data(good, b"still alive")
    assert (await net.receive(timeout=5.0)).data == b"still alive"
    other = await net.connect("127.0.0.1", port)
    await net.send_data(other, b"new one")
    assert (await net.receive(timeout=5.0)).data == b"new one"
    await net.disconnect(other)


async def _attack(port: int, payload: bytes, eof: bool = False) -> tuple[int, str] | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    if eof:
        writer.write_eof()
    try:
        return await _read_goaway(reader)
    finally:
        writer.close()


@pytest.fixture
async def target(caplog: pytest.LogCaptureFixture) -> tuple[NetworkTransport, int, int]:
    caplog.set_level(logging.WARNING, logger="objtransport")
    net = NetworkTransport(timeout=5.0)
    await net.start()
    # the listener's HELLO wait only: a good client keeps the default for the listener's
    # answer (0.3 s of its own failed it when a loaded machine stalled the loop)
    listener = await net.listen("127.0.0.1", 0, max_frame_size=64 * 1024,
                                max_fragment_size=16 * 1024, hello_timeout=0.3)
    good = await net.connect("127.0.0.1", listener.port)
    yield net, listener.port, good
    await net.stop()


def _hello() -> bytes:
    from objtransport.sansio.framing import Hello, encode_hello

    return MAGIC + encode_hello(Hello(b"x" * 16, 0, 1 << 20, 1 << 20))


@pytest.mark.parametrize("name, payload, code", [
    ("garbage", b"\x16\x03\x01 this is not objtransport at all", GoAwayCode.PROTOCOL_ERROR),
    ("oversized length", MAGIC + b"\x7f\xff\xff\xff" + b"x" * 100, GoAwayCode.FRAME_TOO_LARGE),
    ("wrong version", MAGIC + HEADER.pack(16, 9, 1, 0, 0, 0, 0), GoAwayCode.UNSUPPORTED_VERSION),
    ("data before hello", MAGIC + HEADER.pack(17, 1, 2, 0, 2, 0, 1) + b"x",
     GoAwayCode.PROTOCOL_ERROR),
    ("bad fragment total", _hello() + struct.pack("!IBBBBIQII", 16 + 8 + 4, 1, 2, 1, 2, 0, 1,
                                                  0, 0xFFFFFFFF) + b"abcd",
     GoAwayCode.MESSAGE_TOO_LARGE),
])
async def test_malformed_input_gets_goaway(target: tuple[NetworkTransport, int, int],
                                           caplog: pytest.LogCaptureFixture, name: str,
                                           payload: bytes, code: int) -> None:
    net, port, good = target
    result = await _attack(port, payload)
    assert result is not None, name
    assert result[0] == code, result
    await eventually(lambda: net.get_metrics().errors >= 1)
    assert net.get_metrics().errors == 1
    logged = [r for r in caplog.records if "connection" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    await _healthy(net, port, good)


async def test_truncated_frame_then_eof(target: tuple[NetworkTransport, int, int]) -> None:
    net, port, good = target
    await _attack(port, _hello() + HEADER.pack(1000, 1, 2, 0, 2, 0, 1) + b"only a bit",
                  eof=True)
    await eventually(lambda: net.get_metrics().errors >= 1)
    await _healthy(net, port, good)


async def test_hello_that_never_comes(target: tuple[NetworkTransport, int, int]) -> None:
    net, port, good = target
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        result = await _read_goaway(reader)  # we send nothing at all
    finally:
        writer.close()
    assert result is not None and result[0] == GoAwayCode.HELLO_TIMEOUT
    await _healthy(net, port, good)


async def test_flood_from_a_peer_that_never_reads(target: tuple[NetworkTransport, int, int]
                                                  ) -> None:
    """A peer floods PINGs (each wants a PONG) and never reads: we stop reading from it or
    close it; memory stays bounded and everyone else is served."""
    net, port, good = target
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ping = HEADER.pack(24, 1, 4, 0, 0, 0, 0) + b"12345678"
    writer.write(_hello())
    chunk = ping * 4096  # 112 KiB of PINGs
    sent = 0
    outcome = "flooded everything"
    try:
        async with asyncio.timeout(1.5):
            while sent < 200 * 1024 * 1024:
                writer.write(chunk)
                await writer.drain()  # blocks once the listener stops reading
                sent += len(chunk)
    except TimeoutError:
        outcome = "blocked by the listener"
    except ConnectionError:
        outcome = "dropped by the listener"
    try:
        assert outcome != "flooded everything" and sent < 200 * 1024 * 1024
        # the bound: answers in the transport's buffer (one flush: at most the scheduler's
        # max_pending_bytes plus one read's answers) and in the scheduler (at most as much
        # again, when the guard stops reading): 2 x 4 MiB + 2 reads' answers (< 2 x 256 KiB)
        bound = 2 * net.options.max_pending_bytes + 2 * RECV_BUFFER_SIZE
        for cid in list(net.connections()):
            info = net.connection_info(cid)
            assert info.pending_bytes <= bound, info
        await _healthy(net, port, good)
    finally:  # (also on failure: an unclosed socket would fail a later test when collected)
        writer.transport.abort()  # reset: the listener need not wait to write its PONGs
    await eventually(lambda: len(net.connections()) == 2, timeout=10.0)  # the good pair
