"""Every link kind files its far deadlines in its loop's wheel (drivers/wheel_timer.py), over
real sockets on loopback (docs/design.md, "Keepalive without garbage"): UDP, WebSocket, gRPC
and QUIC links with a keepalive interval and pong timeout of at least ``NEAR`` are on the
wheel while idle, keep each other alive, and a peer that falls silent (a proxy between them
that forwards nothing any more, both ways) is cut within the keepalive timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import monotonic
from typing import Any

import pytest
import trustme

from objtransport import NetworkTransport
from objtransport.drivers.link_wheel import NEAR, wheel_for
from objtransport.events import Disconnected
from objtransport.sansio.timer_wheel import RESOLUTION
from objtransport.testing import FaultProxy, eventually
from objtransport.testing.lossy import LossyDatagramProxy

pytestmark = pytest.mark.timeout(60)

KA, PONG = 0.5, 0.5  # both far enough for the wheel
assert KA >= NEAR and PONG >= NEAR
#: what a loaded machine may add to a cut (the loop's lateness on both sides)
SLACK = 2.0

KINDS = ["udp", "websocket", "grpc", "quic"]


@pytest.fixture(scope="module")
def quic_tls() -> tuple[dict[str, Any], dict[str, Any]]:
    """A server certificate for 127.0.0.1 (made now) and the client's roots, as PEM."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = {"certificate_chain": b"".join(b.bytes() for b in cert.cert_chain_pems),
              "private_key": cert.private_key_pem.bytes()}
    return server, {"root_certificates": ca.cert_pem.bytes()}


class _Silence:
    """A proxy from a port of its own to the listener, which goes silent on ``mute()``."""

    def __init__(self, proxy: FaultProxy | LossyDatagramProxy) -> None:
        self.proxy = proxy
        self.port = proxy.port

    def mute(self) -> None:
        if isinstance(self.proxy, FaultProxy):
            self.proxy.blackhole(True)  # bytes read and dropped both ways, nothing closed
        else:
            self.proxy.drop = 1.0  # every datagram dropped, both ways


@asynccontextmanager
async def _proxy(transport: str, port: int) -> AsyncIterator[_Silence]:
    if transport in ("udp", "quic"):
        async with LossyDatagramProxy("127.0.0.1", port, both_ways=True) as udp:
            yield _Silence(udp)
    else:
        async with FaultProxy("127.0.0.1", port) as tcp:
            yield _Silence(tcp)


@pytest.mark.parametrize("transport", KINDS)
async def test_idle_links_are_on_the_wheel_and_a_silent_peer_is_cut_within_the_timeout(
        transport: str, quic_tls: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """A listener and a client (keepalive KA, pong timeout PONG) through a proxy: idle, both
    links (and over QUIC both ends' aioquic timers) are filed in the loop's wheel and the
    keepalive goes round (an RTT is measured); once the proxy forwards nothing, the listener
    cuts the client within KA + PONG of the silence (and not before PONG, less a bucket)."""
    server_kw, client_kw = quic_tls if transport == "quic" else ({}, {})
    loop = asyncio.get_running_loop()
    wheel = wheel_for(loop).wheel
    async with NetworkTransport(keepalive_interval=KA, pong_timeout=PONG, timeout=5.0) as srv, \
            NetworkTransport(keepalive_interval=KA, pong_timeout=PONG, timeout=5.0,
                             max_reconnect_attempts=0) as cli:
        listener = await srv.listen("127.0.0.1", 0, transport=transport,  # type: ignore[arg-type]
                                    **server_kw)
        async with _proxy(transport, listener.port) as proxy:
            conn = await cli.connect("127.0.0.1", proxy.port,
                                     transport=transport, **client_kw)  # type: ignore[arg-type]
            await cli.send_data(conn, b"hello")
            msg = await srv.receive(timeout=10.0)
            assert msg.data == b"hello"
            accepted = msg.conn_id
            # idle: each link's next deadline is its keepalive (or the peer's silence), far;
            # a QUIC connection's own timer (aioquic's idle timeout) is on the wheel too
            filed = 4 if transport == "quic" else 2
            await eventually(lambda: len(wheel) == filed, timeout=10.0)
            # the keepalive goes round (whichever side's PING comes first: a PING received
            # is the peer's life, so only one side may need to ping)
            await eventually(lambda: cli.connection_info(conn).rtt_ms is not None
                             or srv.connection_info(accepted).rtt_ms is not None,
                             timeout=10.0)
            assert list(listener.connections) == [accepted]
            events = srv.events()
            proxy.mute()
            muted = monotonic()
            async with asyncio.timeout(KA + PONG + 10.0):
                while True:  # the listener's link of the client ends (UDP: forgotten)
                    ev = await events.get()
                    if isinstance(ev, Disconnected) and ev.conn_id == accepted:
                        break
            cut = monotonic() - muted
        assert PONG - RESOLUTION - 0.05 <= cut <= KA + PONG + RESOLUTION + SLACK, cut
    await eventually(lambda: len(wheel) == 0, timeout=10.0)  # closed links leave the wheel
