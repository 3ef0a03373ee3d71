"""Request/reply and headers over real sockets (TCP, WebSocket, gRPC): answers, errors sent
back by the peer, deadlines, the in-flight bound, resume across a reconnection."""

from __future__ import annotations

import asyncio
import time

import pytest

from objtransport import (
    Message,
    NetworkTransport,
    NoResponder,
    RequestCancelled,
    RequestTimeout,
    SendTimeout,
    UnsupportedFeature,
)
from objtransport.testing.proxy import FaultProxy

pytestmark = pytest.mark.timeout(30)

TRANSPORTS = ["tcp", "websocket", "grpc"]


def _upper(msg: Message) -> bytes:
    return msg.data.upper()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_handler_returning_bytes_answers_each_request(transport: str) -> None:
    async with NetworkTransport(timeout=5.0) as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport, handler=_upper)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport)
        replies = await asyncio.gather(*(client.request(conn, b"req %d" % i, timeout=5.0)
                                         for i in range(200)))
        assert [r.data for r in replies] == [b"REQ %d" % i for i in range(200)]
        # an ordinary message on the same connection is untouched by all this
        m = client.get_metrics().messaging
        assert m["requests_sent"] == 200 and m["replies_received"] == 200
        assert server.get_metrics().messaging["replies_sent"] == 200


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_headers_travel_both_ways_and_msg_reply_answers(transport: str) -> None:
    async def handler(msg: Message) -> None:
        assert msg.expects_reply
        assert msg.headers == {"trace-id": b"abc", "x-bin": b"\x00\xff"}
        await msg.reply(b"ok:" + msg.data, headers={"Content-Type": "text/plain"})

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, transport=transport, handler=handler)
        conn = await client.connect("127.0.0.1", listener.port, transport=transport)
        reply = await client.request(conn, b"x", headers={"Trace-Id": "abc",
                                                          "x-bin": b"\x00\xff"})
        assert reply.data == b"ok:x"
        assert reply.headers == {"content-type": b"text/plain"}
        assert reply.content_type == "text/plain"


async def test_send_data_headers_reach_receive_and_plain_messages_have_none() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"plain")
        await client.send_data(conn, b"tagged", headers={"k": "v"}, priority="high",
                               stream=3)
        first = await server.receive(timeout=5.0)
        second = await server.receive(timeout=5.0)
        by_data = {m.data: m for m in (first, second)}
        assert by_data[b"plain"].headers is None and not by_data[b"plain"].expects_reply
        tagged = by_data[b"tagged"]
        assert tagged.headers == {"k": b"v"}
        assert (tagged.stream, tagged.priority) == (3, "high")
        with pytest.raises(ValueError, match="expects no reply"):
            await tagged.reply(b"no")


async def test_receive_users_answer_with_msg_reply() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        pending = asyncio.ensure_future(client.request(conn, b"ping", timeout=5.0))
        msg = await server.receive(timeout=5.0)
        assert msg.expects_reply and msg.deadline > time.time()
        await msg.reply(b"pong")
        with pytest.raises(RuntimeError, match="already answered"):
            await msg.reply(b"again")
        assert (await pending).data == b"pong"


async def test_a_large_request_and_reply_are_fragmented_and_put_back_together() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=lambda m: m.data[::-1])
        conn = await client.connect("127.0.0.1", listener.port)
        data = bytes(range(256)) * 8192  # 2 MiB: eight 256 KiB fragments
        reply = await client.request(conn, data, headers={"k": "v"}, timeout=10.0)
        assert reply.data == data[::-1]


async def test_no_responder_and_a_failing_handler_answer_at_once() -> None:
    def handler(msg: Message) -> bytes | None:
        if msg.data == b"boom":
            raise KeyError("secret-in-the-traceback")
        return None

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=handler)
        conn = await client.connect("127.0.0.1", listener.port)
        t0 = time.monotonic()
        with pytest.raises(NoResponder, match="returned no reply") as none:
            await client.request(conn, b"nothing", timeout=10.0)
        with pytest.raises(NoResponder, match="raised KeyError") as boom:
            await client.request(conn, b"boom", timeout=10.0)
        assert time.monotonic() - t0 < 5.0  # answered, not timed out
        assert none.value.status == 1 and boom.value.status == 2
        assert "secret" not in str(boom.value)
        assert len(str(boom.value)) < 400


async def test_request_timeout_and_the_late_reply_is_dropped_and_counted() -> None:
    release = asyncio.Event()

    async def slow(msg: Message) -> bytes:
        await release.wait()
        return b"late"

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=slow)
        conn = await client.connect("127.0.0.1", listener.port)
        with pytest.raises(RequestTimeout) as exc:
            await client.request(conn, b"x", timeout=0.2)
        assert isinstance(exc.value, TimeoutError)
        release.set()
        for _ in range(200):
            if client.get_metrics().messaging["late_replies"] == 1:
                break
            await asyncio.sleep(0.01)
        m = client.get_metrics().messaging
        assert (m["late_replies"], m["request_timeouts"]) == (1, 1)
        # the connection is fine afterwards
        assert (await client.request(conn, b"y", timeout=5.0)).data == b"late"


async def test_a_request_received_after_its_deadline_does_not_run_the_handler() -> None:
    ran: list[bytes] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def handler(msg: Message) -> bytes:
        if msg.data == b"first":
            started.set()
            await gate.wait()  # holds the second request in the backlog past its deadline
        ran.append(msg.data)
        return b"done"

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=handler)
        conn = await client.connect("127.0.0.1", listener.port)
        first = asyncio.ensure_future(client.request(conn, b"first", timeout=5.0))
        await asyncio.wait_for(started.wait(), 5.0)
        with pytest.raises(RequestTimeout):
            await client.request(conn, b"second", timeout=0.2)
        gate.set()
        assert (await first).data == b"done"
        assert ran == [b"first"]
        assert server.get_metrics().messaging["expired_requests"] == 1


async def test_max_inflight_requests_bounds_requests_per_connection() -> None:
    async with NetworkTransport() as server, \
            NetworkTransport(max_inflight_requests=4) as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        held = [asyncio.ensure_future(client.request(conn, b"a%d" % i, timeout=5.0))
                for i in range(4)]
        received = [await server.receive(timeout=5.0) for _ in range(4)]
        with pytest.raises(SendTimeout, match="max_inflight_requests"):
            await client.request(conn, b"b", timeout=0.3)
        waiting = asyncio.ensure_future(client.request(conn, b"c", timeout=5.0))
        with pytest.raises(TimeoutError):  # no fifth request goes out while four wait
            await server.receive(timeout=0.2)
        for msg in received:
            await msg.reply(msg.data)
        last = await server.receive(timeout=5.0)
        assert last.data == b"c"  # "b" never went out
        await last.reply(b"done")
        assert [r.data for r in await asyncio.gather(*held, waiting)] == [
            b"a0", b"a1", b"a2", b"a3", b"done"]


async def test_requests_survive_a_reset_and_are_answered_exactly_once() -> None:
    calls: list[bytes] = []

    def handler(msg: Message) -> bytes:
        calls.append(msg.data)
        return b"re:" + msg.data

    async with NetworkTransport() as server, \
            NetworkTransport(reconnect_interval=0.01) as client:
        listener = await server.listen("127.0.0.1", 0, handler=handler)
        async with FaultProxy("127.0.0.1", listener.port, reset_every=6_000) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            payloads = [b"%04d" % i + b"." * 40 for i in range(400)]
            replies = await asyncio.gather(*(client.request(conn, p, timeout=20.0)
                                             for p in payloads))
            assert proxy.resets >= 2
    assert [r.data for r in replies] == [b"re:" + p for p in payloads]
    assert sorted(calls) == sorted(payloads)  # each handled once, none twice


async def test_requests_are_cancelled_when_the_connection_is_given_up() -> None:
    async def never(msg: Message) -> bytes:
        await asyncio.Event().wait()
        return b""

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=never)
        conn = await client.connect("127.0.0.1", listener.port)
        pending = asyncio.ensure_future(client.request(conn, b"x", timeout=10.0))
        await asyncio.sleep(0.05)
        await client.disconnect(conn, timeout=0.5)
        with pytest.raises(RequestCancelled):
            await pending


async def test_request_to_goes_through_the_pool() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=_upper)
        replies = [await client.request_to("127.0.0.1", listener.port, b"p%d" % i)
                   for i in range(5)]
        assert [r.data for r in replies] == [b"P%d" % i for i in range(5)]
        assert client.get_metrics().pooled_connections == 1


async def test_raw_connections_raise_unsupported_feature() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, framing="raw")
        conn = await client.connect("127.0.0.1", listener.port, framing="raw")
        with pytest.raises(UnsupportedFeature, match="native"):
            await client.request(conn, b"x")
        with pytest.raises(UnsupportedFeature, match="headers"):
            await client.send_data(conn, b"x", headers={"a": "b"})
        with pytest.raises(UnsupportedFeature, match="compression"):
            await client.connect("127.0.0.1", listener.port, framing="raw",
                                 compression="zlib")
        await client.send_data(conn, b"plain still works")
        assert (await server.receive(timeout=5.0)).data == b"plain still works"


async def test_too_many_headers_are_refused_locally_and_by_the_receiver() -> None:
    async with NetworkTransport(max_headers=4) as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        with pytest.raises(ValueError, match="at most 64"):
            await client.send_data(conn, b"x", headers={f"k{i}": "v" for i in range(65)})
        with pytest.raises(ValueError, match="more than 8192 bytes"):
            await client.send_data(conn, b"x", headers={"big": "v" * 9000})
        # the receiver checks its own (lower) limit before copying: the connection fails
        await client.send_data(conn, b"x", headers={f"k{i}": "v" for i in range(5)})
        for _ in range(300):
            if server.get_metrics().errors:
                break
            await asyncio.sleep(0.01)
        assert server.get_metrics().errors >= 1
        assert server.get_metrics().messages_queued == 0  # nothing was delivered


async def test_a_listener_can_ask_the_client_too() -> None:
    """Requests go both ways: the client's connect(handler=) answers the listener's."""
    asked = asyncio.get_running_loop().create_future()

    def on_server(msg: Message) -> None:
        if not asked.done():
            asked.set_result(msg.conn_id)

    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0, handler=on_server)
        conn = await client.connect("127.0.0.1", listener.port,
                                    handler=lambda m: b"client says " + m.data)
        await client.send_data(conn, b"hello")
        server_side = await asyncio.wait_for(asked, 5.0)
        reply = await server.request(server_side, b"hi", timeout=5.0)
        assert reply.data == b"client says hi"
