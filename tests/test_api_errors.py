"""Errors that catch the caller's mistakes at once, named by what happened (issue 11)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from objtransport import (
    ConnectError,
    ListenError,
    NetworkTransport,
    ReceiveTimeout,
    SendTimeout,
    ServiceNotRunning,
    TransportError,
)


def test_timeouts_are_transport_errors_and_timeout_errors() -> None:
    for exc in (SendTimeout, ReceiveTimeout):
        assert issubclass(exc, TransportError) and issubclass(exc, TimeoutError)


async def test_receive_timeout_is_both(net: NetworkTransport) -> None:
    with pytest.raises(ReceiveTimeout, match="within 0.05 s") as info:
        await net.receive(timeout=0.05)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, TransportError)


async def test_a_busy_port_is_a_listen_error_not_a_connect_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with NetworkTransport() as net:
            with pytest.raises(ListenError, match=f"cannot listen on tcp://127.0.0.1:{port}") \
                    as info:
                await net.listen("127.0.0.1", port)
    assert not isinstance(info.value, ConnectError)
    assert isinstance(info.value.__cause__, OSError)


async def test_a_busy_udp_port_is_a_listen_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        async with NetworkTransport() as net:
            with pytest.raises(ListenError, match="udp://127.0.0.1"):
                await net.listen("127.0.0.1", port, transport="udp")


async def test_send_before_start_and_after_stop_is_service_not_running() -> None:
    net = NetworkTransport()
    with pytest.raises(ServiceNotRunning):
        await net.send_data(1, b"x")
    with pytest.raises(ServiceNotRunning):
        net.send_nowait(1, b"x")
    async with net:
        listener = await net.listen("127.0.0.1", 0)
        conn = await net.connect("127.0.0.1", listener.port)
    with pytest.raises(ServiceNotRunning):
        await net.send_data(conn, b"x")


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None, (b"a",)])
async def test_a_payload_that_is_not_bytes_like_is_a_type_error(
        net: NetworkTransport, payload: object) -> None:
    listener = await net.listen("127.0.0.1", 0)
    conn = await net.connect("127.0.0.1", listener.port)
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview, not"):
        await net.send_data(conn, payload)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        net.send_nowait(conn, payload)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        await net.send_to("127.0.0.1", listener.port, payload)  # type: ignore[arg-type]
    # nothing was sent: the next message is the first one to arrive
    await net.send_data(conn, bytearray(b"ok"))
    await net.send_data(conn, memoryview(b"ok too"))
    assert (await net.receive(timeout=5.0)).data == b"ok"
    assert (await net.receive(timeout=5.0)).data == b"ok too"


def test_a_missing_extra_names_the_pip_command() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        sys.modules["websockets"] = None  # as if objtransport[websocket] was not installed
        from objtransport import NetworkTransport, UnsupportedTransport

        async def main():
            async with NetworkTransport() as net:
                assert "websocket" not in net.transports
                try:
                    await net.listen("127.0.0.1", 0, transport="websocket")
                except UnsupportedTransport as exc:
                    print(f"{type(exc).__name__}: {exc}")

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == ("UnsupportedTransport: transport 'websocket' needs: "
                           "pip install 'objtransport[websocket]'")


async def test_an_unknown_transport_lists_the_supported_ones(net: NetworkTransport) -> None:
    from objtransport import UnsupportedTransport

    with pytest.raises(UnsupportedTransport, match="supported: tcp, udp"):
        await net.connect("127.0.0.1", 1, transport="sctp")  # type: ignore[arg-type]


async def test_send_data_stays_a_coroutine_errors_and_effects_at_the_await(
        net: NetworkTransport, server_net: NetworkTransport) -> None:
    """The fast path of send_data (bytes, an open link, no extras) is the coroutine's
    body: nothing happens and nothing is raised until it is awaited (so
    ``run_coroutine_threadsafe`` and ``create_task`` keep working), then its errors are
    raised at the await."""
    import asyncio
    import inspect

    from objtransport import ConnectionNotFound, Message
    from objtransport.testing import eventually

    got: list[bytes] = []

    def on_message(msg: Message) -> None:
        got.append(msg.data)

    listener = await server_net.listen("127.0.0.1", 0, handler=on_message)
    conn = await net.connect("127.0.0.1", listener.port)
    never = net.send_data(conn, b"not awaited")
    assert inspect.iscoroutine(never)
    never.close()  # dropped: nothing was queued
    missing = net.send_data(conn + 1000, b"x")  # no error yet ...
    with pytest.raises(ConnectionNotFound):
        await missing  # ... but at the await
    not_bytes = net.send_data(conn, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        await not_bytes
    # the options besides priority are a ``**`` dict (cheaper than keyword-only defaults):
    # a misspelt one still raises TypeError, and queues nothing
    misspelt = net.send_data(conn, b"lost", prioritty="high")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'prioritty'"):
        await misspelt
    await asyncio.create_task(net.send_data(conn, b"one"))
    await net.send_data(conn, b"two", priority="high")
    await net.send_data(conn, bytearray(b"three"))
    await net.send_data(conn, b"four", stream=0, text=False, timeout=5.0)
    await net.flush(conn, timeout=5.0)
    await eventually(lambda: len(got) >= 4)
    assert sorted(got) == [b"four", b"one", b"three", b"two"]


async def test_a_receive_waiting_on_a_connection_that_goes_raises_connection_not_found(
        net: NetworkTransport, server_net: NetworkTransport) -> None:
    """A receive()/receive_many() waiting on one connection ends when it is gone for good
    (it used to wait until its timeout, for ever without one); what came before is still
    taken first."""
    import asyncio

    from objtransport import ConnectionNotFound

    listener = await server_net.listen("127.0.0.1", 0)
    conn = await net.connect("127.0.0.1", listener.port)
    one = asyncio.ensure_future(net.receive(conn))
    many = asyncio.ensure_future(net.receive_many(conn))
    await asyncio.sleep(0)  # one loop turn: both are waiting
    assert not one.done() and not many.done()
    await net.disconnect(conn)
    for waiting in (one, many):
        with pytest.raises(ConnectionNotFound):
            await asyncio.wait_for(waiting, 5.0)
    # a connection that goes with a message queued: the message first, then the error
    peer = await net.connect("127.0.0.1", listener.port)
    await net.send_data(peer, b"hi")
    hi = await server_net.receive(timeout=5.0)
    await server_net.send_data(hi.conn_id, b"back", wait_ack=True)  # in peer's inbox
    await net.disconnect(peer)
    assert (await asyncio.wait_for(net.receive(peer), 5.0)).data == b"back"
    with pytest.raises(ConnectionNotFound):
        await asyncio.wait_for(net.receive(peer), 5.0)
