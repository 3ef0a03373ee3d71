"""A service bounds the spare chunk buffers of all its connections together
(``max_spare_chunk_bytes``): over real loopback sockets, several connections each send
megabytes with ACKs (their large written chunks kept as copies in pool buffers); once all is
acknowledged, the spares kept by all their pools stay within the bound."""

from __future__ import annotations

import asyncio
import gc

import pytest

from objtransport import NetworkTransport
from objtransport.sansio.chunk_pool import CHUNK_POOL_SIZE, SPARE_CHUNK_BYTES, ChunkPool


async def test_the_spares_of_all_connections_stay_within_the_service_bound(
        server_net: NetworkTransport) -> None:
    limit = 2 * CHUNK_POOL_SIZE
    listener = await server_net.listen("127.0.0.1", 0)
    async with NetworkTransport(timeout=5.0, max_spare_chunk_bytes=limit) as net:
        budget = net.spare_chunks
        assert budget is not None and budget.limit == limit
        conns = [await net.connect("127.0.0.1", listener.port) for _ in range(4)]
        payload = b"z" * 1024
        for conn in conns:  # 4 MiB each: with a sender that does not yield, in ~1 MiB chunks
            for _ in range(4096):
                await net.send_data(conn, payload)
        got = 0
        async with asyncio.timeout(30):
            while got < 4 * 4096:
                got += len(await server_net.receive_many(max_messages=4096, timeout=10.0))
        for conn in conns:
            await net.flush(conn, timeout=10.0)  # all acknowledged: the copies are spares
        # type(), not isinstance(): a dead weakref.proxy among gc's objects (left by
        # another test in the worker) raises ReferenceError when asked for its class
        pools = [o for o in gc.get_objects()
                 if type(o) is ChunkPool and o.budget is budget]
        assert pools  # large chunks were kept as copies in pool buffers
        spares = sum(len(p.free) for p in pools) * CHUNK_POOL_SIZE
        assert 0 < spares == budget.held <= limit  # 4 pools, each would keep several


def test_the_bound_has_a_safe_default_and_refuses_a_negative_one() -> None:
    assert NetworkTransport().options.max_spare_chunk_bytes == SPARE_CHUNK_BYTES == 64 << 20
    with pytest.raises(ValueError, match="max_spare_chunk_bytes"):
        NetworkTransport(max_spare_chunk_bytes=-1)


async def test_a_call_refuses_the_service_wide_bound_rather_than_ignoring_it(
        server_net: NetworkTransport) -> None:
    """``max_spare_chunk_bytes`` is one budget for the whole service: given to one
    ``connect``, ``listen``, group or pool send it would be silently ignored, so it raises
    ``TypeError`` there, and nothing is left behind (the service goes on as before)."""
    listener = await server_net.listen("127.0.0.1", 0)
    async with NetworkTransport(timeout=5.0) as net:
        with pytest.raises(TypeError, match="max_spare_chunk_bytes is service-wide"):
            await net.connect("127.0.0.1", listener.port,
                              max_spare_chunk_bytes=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="max_spare_chunk_bytes is service-wide"):
            await net.listen("127.0.0.1", 0, max_spare_chunk_bytes=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="max_spare_chunk_bytes is service-wide"):
            await net.connect_group(  # type: ignore[call-arg]
                [f"127.0.0.1:{listener.port}"], max_spare_chunk_bytes=1)
        with pytest.raises(TypeError, match="max_spare_chunk_bytes is service-wide"):
            await net.send_to("127.0.0.1", listener.port, b"x",
                              max_spare_chunk_bytes=1)  # type: ignore[call-arg]
        assert net.get_metrics().active_connections == 0
        conn = await net.connect("127.0.0.1", listener.port)
        await net.send_data(conn, b"still fine")
        assert (await server_net.receive(timeout=10.0)).data == b"still fine"
