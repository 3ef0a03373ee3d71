"""Raw gRPC calls that never send are cut (issue 12, item 7).

100 calls on one channel used to hold a ``max_connections=100`` listener for ever while health
said SERVING. A raw call must now send within ``handshake_timeout`` and is cut after
``idle_timeout`` with no message either way; health says NOT_SERVING while the listener
refuses calls. The client is a plain ``grpc.aio`` channel, not objtransport.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from objtransport import NetworkTransport  # noqa: E402
from objtransport.drivers.grpc_config import METHOD, SERVICE  # noqa: E402
from objtransport.sansio.envelope import encode_payload  # noqa: E402
from objtransport.testing import eventually  # noqa: E402

pytestmark = pytest.mark.timeout(60)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(channel: Any) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5.0)
    return int(reply.status)


async def test_100_silent_calls_are_cut_at_the_handshake_deadline() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        # 3 s: the 100 calls must all be open before the first is cut, on a loaded machine
        # (2 s failed once at load 7-9)
        listener = await net.listen("127.0.0.1", 0, transport="grpc", max_connections=100,
                                    handshake_timeout=3.0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            connect = channel.stream_stream(METHOD)
            t0 = time.monotonic()
            calls = [connect() for _ in range(100)]  # they never send a message
            await eventually(lambda: listener.live == 100)
            extra = connect()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await extra.read()
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await _health(channel) == NOT_SERVING  # full: a balancer goes elsewhere
            codes = await asyncio.gather(*(c.code() for c in calls))
            cut_after = time.monotonic() - t0
            assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
            assert cut_after < 10.0  # handshake_timeout (3 s), not never
            await eventually(lambda: listener.live == 0)
            assert await _health(channel) == SERVING
            # the listener serves again
            call = connect()
            await call.write(encode_payload(b"hello"))
            assert (await net.receive(timeout=5.0)).data == b"hello"
            call.cancel()


async def test_a_call_gone_quiet_is_cut_after_idle_timeout() -> None:
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, transport="grpc", idle_timeout=0.5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            call = channel.stream_stream(METHOD)()
            await call.write(encode_payload(b"one"))
            msg = await net.receive(timeout=5.0)
            await net.send_data(msg.conn_id, b"answer")
            assert await call.read() == encode_payload(b"answer")
            t0 = time.monotonic()
            assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.3 < time.monotonic() - t0 < 3.0
            assert "idle_timeout" in (await call.details())
