"""The public event stream (objtransport.events) over real sockets on loopback.

Every wait is on an event (or a bounded timeout), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TypeVar

import pytest

from objtransport import Message, NetworkTransport
from objtransport.events import (
    Accepted,
    BreakerChanged,
    Connected,
    Disconnected,
    Event,
    GivenUp,
    HandlerFailed,
    ListenerClosed,
    Listening,
    Overloaded,
    Reconnecting,
    SessionLost,
    SessionResumed,
    Subscription,
)
from objtransport.info import KeptSessions
from objtransport.sansio.framing import MAGIC, FrameType, Hello, encode_frame, encode_hello
from objtransport.testing import FaultProxy

T = 5.0  # every wait is bounded


E = TypeVar("E", bound=Event)


async def next_of(sub: Subscription, kind: type[E], seen: list[Event] | None = None,
                  timeout: float = T, **match: object) -> E:
    """The next event of ``kind`` (with the given field values); what is skipped goes to
    ``seen``."""
    async with asyncio.timeout(timeout):
        while True:
            ev = await sub.get()
            if seen is not None:
                seen.append(ev)
            if isinstance(ev, kind) and all(getattr(ev, k) == v for k, v in match.items()):
                return ev


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_listen_connect_disconnect_and_close_are_events() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        srv = server.events()
        cli = client.events()
        listener = await server.listen("127.0.0.1", 0)
        listening = await next_of(srv, Listening)
        assert listening.conn_id is None and listening.transport == "tcp"
        assert listening.endpoint == f"tcp://127.0.0.1:{listener.port}"

        conn = await client.connect("127.0.0.1", listener.port)
        connected = await next_of(cli, Connected)
        assert (connected.conn_id, connected.resumed) == (conn, False)
        assert connected.endpoint == f"tcp://127.0.0.1:{listener.port}"
        accepted = await next_of(srv, Accepted)
        assert accepted.conn_id is not None and accepted.endpoint.startswith("tcp://127.0.0.1:")

        await client.disconnect(conn)
        gone = await next_of(cli, Disconnected)
        assert (gone.conn_id, gone.final, gone.error) == (conn, True, False)
        server_gone = await next_of(srv, Disconnected, conn_id=accepted.conn_id)
        assert server_gone.final and not server_gone.error

        await listener.close()
        closed = await next_of(srv, ListenerClosed)
        assert closed.endpoint == listening.endpoint
        assert listening.time <= accepted.time <= server_gone.time <= closed.time


async def test_a_broken_link_reconnects_and_resumes_the_session() -> None:
    async with NetworkTransport() as server, NetworkTransport(reconnect_interval=0.01) as client:
        listener = await server.listen("127.0.0.1", 0)
        srv = server.events()
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            await client.send_data(conn, b"confirmed", wait_ack=True)
            cli = client.events()
            proxy.blackhole(True)  # the next message cannot be acknowledged...
            await client.send_data(conn, b"in flight")
            proxy.reset_all()  # ...and the socket breaks under it
            proxy.blackhole(False)
            seen: list[Event] = []
            lost = await next_of(cli, Disconnected, seen)
            assert (lost.conn_id, lost.final, lost.error) == (conn, False, True)
            retry = await next_of(cli, Reconnecting, seen)
            assert retry.attempt == 1 and retry.delay >= 0.0
            resumed = await next_of(cli, SessionResumed, seen)
            assert resumed.conn_id == conn and resumed.resent == 1
            back = await next_of(cli, Connected, seen)
            assert back.resumed and back.conn_id == conn
            # the listener side: the same connection id goes on
            server_resumed = await next_of(srv, SessionResumed)
            server_back = await next_of(srv, Connected, conn_id=server_resumed.conn_id)
            assert server_back.resumed
            await client.flush(conn, timeout=T)
        assert [type(e) for e in seen] == [Disconnected, Reconnecting, SessionResumed, Connected]


async def test_listener_restart_reconnects_with_a_new_session() -> None:
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.02, reconnect_max_delay=0.05,
            max_reconnect_attempts=100) as client:
        listener = await server.listen("127.0.0.1", 0)
        port = listener.port
        conn = await client.connect("127.0.0.1", port)
        cli = client.events()
        await listener.close()  # closes its connections in order
        lost = await next_of(cli, Disconnected)
        assert (lost.final, lost.error) == (False, False)
        await next_of(cli, Reconnecting)
        await server.listen("127.0.0.1", port)
        back = await next_of(cli, Connected)
        assert back.conn_id == conn and not back.resumed  # the listener's session was gone


async def test_giving_up_and_the_breaker_opening_are_events() -> None:
    port = _free_port()
    async with NetworkTransport() as server, NetworkTransport(
            reconnect_interval=0.01, reconnect_max_delay=0.01, max_reconnect_attempts=2,
            failure_threshold=2, reset_timeout=60.0) as client:
        listener = await server.listen("127.0.0.1", port)
        conn = await client.connect("127.0.0.1", port)
        await client.send_data(conn, b"never acknowledged")
        cli = client.events()
        await server.stop(timeout=0.0)  # the listener goes away for good
        seen: list[Event] = []
        given_up = await next_of(cli, GivenUp, seen)
        assert given_up.conn_id == conn and given_up.attempts == 2
        reconnecting = [e for e in seen if isinstance(e, Reconnecting)]
        assert [e.attempt for e in reconnecting] == [1, 2]
        opened = [e for e in seen if isinstance(e, BreakerChanged)]
        assert opened and (opened[0].old, opened[0].new) == ("closed", "open")
        assert opened[0].conn_id is None and opened[0].endpoint == f"tcp://127.0.0.1:{port}"
        end = await next_of(cli, Disconnected, seen, final=True)
        assert end.conn_id == conn
        assert listener.port == port


async def test_unconfirmed_messages_are_a_session_lost_event() -> None:
    async with NetworkTransport() as server, NetworkTransport(
            max_reconnect_attempts=0) as client:
        listener = await server.listen("127.0.0.1", 0)
        async with FaultProxy("127.0.0.1", listener.port) as proxy:
            conn = await client.connect("127.0.0.1", proxy.port)
            cli = client.events()
            proxy.blackhole(True)
            await client.send_data(conn, b"a")
            await client.send_data(conn, b"b")
            proxy.reset_all()  # no reconnect attempts: the two are in doubt
            lost = await next_of(cli, SessionLost)
            assert lost.conn_id == conn and lost.unconfirmed == 2
            assert sorted(client.unconfirmed(conn)) == [b"a", b"b"]


async def test_a_failing_handler_is_an_event_and_the_connection_goes_on() -> None:
    def handler(msg: Message) -> None:
        if msg.data == b"boom":
            raise ValueError("the user's bug")

    async with NetworkTransport() as server, NetworkTransport() as client:
        srv = server.events()
        listener = await server.listen("127.0.0.1", 0, handler=handler)
        conn = await client.connect("127.0.0.1", listener.port)
        accepted = await next_of(srv, Accepted)
        await client.send_data(conn, b"boom")
        failed = await next_of(srv, HandlerFailed)
        assert failed.conn_id == accepted.conn_id
        assert isinstance(failed.error, ValueError)
        await client.send_data(conn, b"fine", wait_ack=True)
        assert server.get_metrics().handler_errors == 1


async def test_a_full_inbox_pauses_reading_and_says_so() -> None:
    async with NetworkTransport(receive_queue_size=4) as server, NetworkTransport() as client:
        srv = server.events()
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        for i in range(20):
            await client.send_data(conn, b"%d" % i)
        paused = await next_of(srv, Overloaded)
        assert paused.what == "paused_reading"
        for _ in range(20):
            await server.receive(timeout=T)
        resumed = await next_of(srv, Overloaded)
        assert resumed.what == "resumed_reading" and resumed.conn_id == paused.conn_id


async def test_a_peer_that_sends_but_does_not_read_is_dropped_and_says_so() -> None:
    """A raw peer floods PINGs and never reads the PONGs: the listener stops reading from it,
    then drops it after ``timeout``."""
    async with NetworkTransport() as net:
        srv = net.events()
        listener = await net.listen("127.0.0.1", 0, max_pending_bytes=64 * 1024, timeout=0.5)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up sooner
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", listener.port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(MAGIC + encode_hello(Hello(b"s" * 16, 0, 1 << 20, 1 << 20)))
        pings = encode_frame(FrameType.PING, b"12345678") * 10_000

        async def flood() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(pings)
                    await writer.drain()

        task = asyncio.create_task(flood())
        try:
            dropped = await next_of(srv, Overloaded, what="dropped_slow_consumer", timeout=10)
            assert "does not read" in dropped.reason
            gone = await next_of(srv, Disconnected, conn_id=dropped.conn_id)
            assert gone.error and gone.final
        finally:
            task.cancel()
            writer.close()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task


async def test_a_lagging_subscriber_loses_the_oldest_events_and_counts_them() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        everything = client.events(maxsize=1000)
        small = client.events(maxsize=3)
        listener = await server.listen("127.0.0.1", 0)
        for _ in range(5):
            await client.connect("127.0.0.1", listener.port)
        all_events = [e for _ in range(len(everything)) if (e := everything.get_nowait())]
        assert len(all_events) >= 5
        kept = [e for _ in range(len(small)) if (e := small.get_nowait())]
        assert kept == all_events[-3:]  # the newest stay
        assert small.dropped == len(all_events) - 3
        assert everything.dropped == 0
        small.close()
        everything.close()


async def test_on_event_callback_sees_events_and_its_exception_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    got: list[Event] = []

    def on_event(ev: Event) -> None:
        got.append(ev)
        raise RuntimeError("observer bug")

    caplog.set_level(logging.ERROR, logger="objtransport.events")
    async with NetworkTransport() as server, NetworkTransport(on_event=on_event) as client:
        listener = await server.listen("127.0.0.1", 0)
        a = await client.connect("127.0.0.1", listener.port)
        b = await client.connect("127.0.0.1", listener.port)
        await client.send_data(b, b"still works", wait_ack=True)
    connected = [e.conn_id for e in got if isinstance(e, Connected)]
    assert connected == [a, b]
    assert any(isinstance(e, Disconnected) and e.final for e in got)  # stop() closed them
    logged = [r for r in caplog.records if "observer bug" in str(r.exc_info)]
    assert len(logged) == 1


async def test_iteration_ends_when_the_service_stops() -> None:
    got: list[Event] = []
    async with NetworkTransport() as net:
        sub = net.events()

        async def consume() -> None:
            async for ev in sub:
                got.append(ev)

        task = asyncio.create_task(consume())
        await net.listen("127.0.0.1", 0)
    await asyncio.wait_for(task, T)  # ended by stop(), after the queued events
    assert [type(e) for e in got] == [Listening, ListenerClosed]


async def test_without_subscribers_nothing_is_published() -> None:
    async with NetworkTransport() as server, NetworkTransport() as client:
        listener = await server.listen("127.0.0.1", 0)
        conn = await client.connect("127.0.0.1", listener.port)
        await client.send_data(conn, b"x", wait_ack=True)
        await client.disconnect(conn)
        assert client.events_published == 0 and server.events_published == 0
        sub = client.events()
        await client.connect("127.0.0.1", listener.port)
        assert isinstance(await next_of(sub, Connected), Connected)
        assert client.events_published >= 1


async def test_kept_sessions_are_bounded_by_the_keepers_budget() -> None:
    async with NetworkTransport(session_resume_timeout=60.0) as server, NetworkTransport(
            max_reconnect_attempts=0) as client:
        srv = server.events()
        # at most one detached session waits to be resumed
        listener = await server.listen("127.0.0.1", 0, max_kept_sessions=1)
        async with FaultProxy("127.0.0.1", listener.port) as pa, \
                FaultProxy("127.0.0.1", listener.port) as pb:
            a = await client.connect("127.0.0.1", pa.port)
            await client.send_data(a, b"a", wait_ack=True)
            first = await next_of(srv, Accepted)
            b = await client.connect("127.0.0.1", pb.port)
            await client.send_data(b, b"b", wait_ack=True)
            second = await next_of(srv, Accepted)
            pa.reset_all()
            kept = await next_of(srv, Disconnected, conn_id=first.conn_id)
            assert not kept.final  # detached: waits for a resume
            pb.reset_all()
            await next_of(srv, Disconnected, conn_id=second.conn_id, final=False)
            # the budget is full: the session that waited longest ends now, not in 60 s
            evicted = await next_of(srv, Disconnected, conn_id=first.conn_id, final=True)
            assert evicted.time - kept.time < 10.0
            assert server.kept_sessions() == KeptSessions(waiting=1, evicted=1)


async def test_two_readers_of_one_subscription_both_wake() -> None:
    async with NetworkTransport() as net:
        sub = net.events()
        readers = [asyncio.create_task(sub.get(timeout=T)) for _ in range(2)]
        await asyncio.sleep(0)  # let both start waiting (a yield, not a delay)
        listener = await net.listen("127.0.0.1", 0)
        await listener.close()
        got = await asyncio.gather(*readers)
    assert sorted(type(e).__name__ for e in got) == ["ListenerClosed", "Listening"]
