"""Listeners on every core (issue 16): SO_REUSEPORT, a pool of worker processes that share
one port, restarts, graceful stop, aggregated metrics, and what a resume on another worker
does. Real processes and sockets on 127.0.0.1; every worker is reaped by the test."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from objtransport import (
    ListenError,
    NetworkTransport,
    SessionLost,
    WorkerPool,
)
from objtransport.pool_http import PoolEndpoint
from objtransport.testing import eventually

from .conftest import TLS
from .peers.pid_echo import pid_echo

ROOT = Path(__file__).resolve().parent.parent


async def _ask(net: NetworkTransport, conn: int, data: bytes = b"hi") -> int:
    """Send ``data``; the pid of the worker that answered."""
    await net.send_data(conn, data)
    reply = await net.receive(conn, timeout=10)
    pid, _, rest = reply.data.partition(b":")
    assert rest == data
    return int(pid)


async def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    async with NetworkTransport() as a, NetworkTransport() as b, NetworkTransport() as c:
        first = await a.listen("127.0.0.1", 0, reuse_port=True, handler=lambda m: None)
        second = await b.listen("127.0.0.1", first.port, reuse_port=True,
                                handler=lambda m: None)
        assert second.port == first.port
        with pytest.raises(ListenError):
            await c.listen("127.0.0.1", first.port)  # without reuse_port: busy
        for _ in range(20):
            await c.connect("127.0.0.1", first.port)
        await eventually(lambda: len(a.connections()) + len(b.connections()) == 20)
        assert a.connections() and b.connections()  # the kernel spread them (p ~ 2e-6)


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_reuse_port_over_udp_keeps_each_peer_on_one_listener() -> None:
    async with NetworkTransport() as a, NetworkTransport() as b, NetworkTransport() as c:
        got: dict[str, list[bytes]] = {"a": [], "b": []}
        first = await a.listen("127.0.0.1", 0, transport="udp", reuse_port=True,
                               handler=lambda m: got["a"].append(m.data))
        await b.listen("127.0.0.1", first.port, transport="udp", reuse_port=True,
                       handler=lambda m: got["b"].append(m.data))
        conns = [await c.connect("127.0.0.1", first.port, transport="udp")
                 for _ in range(20)]
        for i, conn in enumerate(conns):
            for k in range(3):
                await c.send_data(conn, b"%d/%d" % (i, k))
        await eventually(lambda: len(got["a"]) + len(got["b"]) == 60)
        assert got["a"] and got["b"]  # spread (p ~ 2e-6)
        a_peers = {m.split(b"/")[0] for m in got["a"]}
        assert not a_peers & {m.split(b"/")[0] for m in got["b"]}  # each peer on one


async def test_a_pool_serves_one_port_from_every_worker_and_adds_up_metrics() -> None:
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2) as pool, \
            NetworkTransport(reconnect_interval=0.05) as net:
        endpoint = await PoolEndpoint(pool).start()
        try:
            assert len(set(pool.pids)) == 2 and 0 not in pool.pids
            conns = [await net.connect("127.0.0.1", pool.port) for _ in range(16)]
            seen = {await _ask(net, c) for c in conns}
            assert seen == set(pool.pids)  # both workers took connections (p ~ 3e-5)
            m = await pool.metrics()
            assert m.active_connections == 16
            assert m.messages_received == 16 and m.total_messages == 16
            assert await _get(endpoint.port, "/ready") == (200, "2/2 workers listening\n")
            status, text = await _get(endpoint.port, "/metrics")
            assert status == 200
            assert "objtransport_workers 2\n" in text
            assert "objtransport_received_messages_total 16\n" in text
            assert "objtransport_connections_active 16\n" in text
            pool.stopping_now()
            assert (await _get(endpoint.port, "/ready"))[0] == 503
            assert (await _get(endpoint.port, "/healthz"))[0] == 200
        finally:
            await endpoint.close()


async def test_a_udp_pool_spreads_its_peers() -> None:
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, transport="udp") as pool, \
            NetworkTransport() as net:
        seen: set[int] = set()
        for _ in range(48):  # new peers until both answered: all 48 on one is p ~ 7e-15
            conn = await net.connect("127.0.0.1", pool.port, transport="udp")
            seen.add(await _ask(net, conn))
            if seen == set(pool.pids):
                break
        assert seen == set(pool.pids)


async def test_a_dead_worker_is_restarted() -> None:
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, restart_delay=0.05) as pool, \
            NetworkTransport(reconnect_interval=0.05) as net:
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: pool.restarts == 1, timeout=10)
        await pool.wait_ready(timeout=30)
        assert victim not in pool.pids and 0 not in pool.pids
        conns = [await net.connect("127.0.0.1", pool.port) for _ in range(16)]
        assert {await _ask(net, c) for c in conns} == set(pool.pids)


async def test_a_resume_on_another_worker_reports_session_lost_at_once() -> None:
    """The session lived in the worker that died: the reconnection (on the other worker, or
    on its replacement) is told it is unknown, and the client says so: SessionLost, the
    messages in doubt handed over, and the connection goes on."""
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, restart_delay=0.05) as pool, \
            NetworkTransport(reconnect_interval=0.05, timeout=10) as net:
        conn = await net.connect("127.0.0.1", pool.port)
        worker = await _ask(net, conn)
        os.kill(worker, signal.SIGSTOP)  # it reads and acknowledges nothing from now on
        try:
            doubt = [b"doubt %d" % i for i in range(50)]
            for d in doubt:
                await net.send_data(conn, d)
        finally:
            os.kill(worker, signal.SIGKILL)
        async with asyncio.timeout(15):  # no hang: the report comes with the reconnection
            with pytest.raises(SessionLost) as lost:
                await net.flush(conn, timeout=15)
        assert set(doubt) <= {u[1] for u in lost.value.unconfirmed}
        assert set(doubt) <= set(net.unconfirmed(conn))
        assert await _ask(net, conn, b"after") != worker  # the connection goes on


def test_serve_workers_echoes_and_stops_every_worker_on_sigterm() -> None:
    """``objtransport serve --workers 2`` (``objtransport.serve``): one port, two pids,
    an echo through it, then SIGTERM stops the parent and both workers, status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "objtransport", "serve", "--workers", "2",
                             "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no ready line within 30 s"
        line = proc.stdout.readline()
        assert line.startswith("echo listener on 127.0.0.1:"), line
        port = int(line.split()[3].split(":")[1])
        pids = [int(p) for p in line.split("pids ")[1].split(")")[0].split()]
        assert len(pids) == 2

        async def echo_once() -> bytes:
            async with NetworkTransport() as net:
                conn = await net.connect("127.0.0.1", port)
                await net.send_data(conn, b"ping")
                return (await net.receive(conn, timeout=10)).data

        assert asyncio.run(echo_once()) == b"ping"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for pid in pids:  # the workers are gone too
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def test_a_tls_pool_loads_its_certificate_in_every_worker(tls: TLS,
                                                                 tmp_path: Path) -> None:
    cert = tls.ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    with pytest.raises(ValueError, match="both certfile and keyfile"):
        WorkerPool(pid_echo, certfile=str(certfile))
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, certfile=str(certfile),
                          keyfile=str(keyfile)) as pool, NetworkTransport() as net:
        conns = [await net.connect("127.0.0.1", pool.port, ssl_context=tls.client_ctx)
                 for _ in range(12)]
        assert {await _ask(net, c) for c in conns} == set(pool.pids)  # p ~ 5e-4
        assert net.connection_info(conns[0]).tls


async def test_a_graceful_stop_kills_no_worker(caplog: pytest.LogCaptureFixture) -> None:
    """Workers that exit on SIGTERM are reaped, never killed: a worker whose exit was seen
    (its sentinel closed) but not yet reaped is joined, not SIGKILLed with a warning."""
    for _ in range(3):
        pool = await WorkerPool(pid_echo, "127.0.0.1", 0, workers=2).start()
        pids = list(pool.pids)
        await pool.stop()
        for pid in pids:  # reaped: not even a zombie is left
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
