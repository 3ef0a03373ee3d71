"""QUIC after our own stall: packets the peer sent in time wait in our socket when our
deadlines come (uvloop runs its timers before it polls the sockets). The peer runs in a
thread of its own (the blocking API), so it goes on sending while our loop is held up."""

from __future__ import annotations

import asyncio
import socket
import time
from functools import partial

import pytest

pytest.importorskip("aioquic")

from objtransport import NetworkTransport  # noqa: E402
from objtransport.sync import NetworkTransport as BlockingTransport  # noqa: E402

from .test_quic import make_pem  # noqa: E402

pytestmark = pytest.mark.timeout(60)

#: our keepalive_interval + pong_timeout: our session's liveness and QUIC's idle timeout (the
#: smaller side's counts for both ends); the peer's are 20 s, so only ours can judge
SILENCE = 3.0


async def test_a_quic_peer_whose_packets_wait_in_our_socket_is_not_silent_after_our_stall(
        ) -> None:
    """The peer speaks (we read it: its silence begins), then our loop is held up past
    SILENCE by an I/O callback; halfway the peer sends a message, which waits in our socket.
    Before, our session called the peer silent (and aioquic's idle timeout ended the
    connection) on uvloop, the client reconnected; now the waiting packets are read first."""
    pem = make_pem()
    loop = asyncio.get_running_loop()
    with BlockingTransport(keepalive_interval=10.0, pong_timeout=10.0) as peer:
        listener = peer.listen("127.0.0.1", 0, transport="quic", **pem.server)
        async with NetworkTransport(keepalive_interval=SILENCE - 0.5, pong_timeout=0.5,
                                    max_reconnect_attempts=0) as net:
            conn = await net.connect("127.0.0.1", listener.port, transport="quic",
                                     **pem.client)
            await net.send_data(conn, b"hello")
            hello = await loop.run_in_executor(None, partial(peer.receive, timeout=5.0))
            stalled = loop.create_future()
            wake, waker = socket.socketpair()

            def stall() -> None:
                """Hogs the loop past our deadline; the peer's message comes meanwhile
                (its own idle timer restarts with it: it still waits for us after)."""
                loop.remove_reader(wake.fileno())
                time.sleep(max(0.0, begun + SILENCE / 2 - time.monotonic()))
                peer.send_data(hello.conn_id, b"alive")
                time.sleep(max(0.0, begun + SILENCE + 0.4 - time.monotonic()))
                stalled.set_result(None)

            try:
                await loop.run_in_executor(None, peer.send_data, hello.conn_id, b"first")
                assert (await net.receive(timeout=5.0)).data == b"first"
                begun = time.monotonic()  # we heard the peer last now
                loop.add_reader(wake.fileno(), stall)
                waker.send(b"!")
                await stalled
                alive = await net.receive(timeout=5.0)
                assert alive.data == b"alive" and alive.conn_id == conn
                info = net.connection_info(conn)
                assert info.state == "connected" and info.reconnects == 0, info
            finally:
                wake.close()
                waker.close()
