"""Worker pools over the message transports (issue 16): ``serve(..., workers=N,
transport="websocket" | "grpc")`` and ``objtransport serve --workers N`` with them. Every
worker listens on the one port (``listen(reuse_port=True)``) and takes connections. Real
processes and sockets on 127.0.0.1; every worker is reaped by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from objtransport import NetworkTransport, WorkerPool

from .test_workers import ROOT, _ask, pid_echo

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", ["websocket", "grpc"])
async def test_a_pool_of_two_workers_serves_websocket_and_grpc(transport: str) -> None:
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, transport=transport) as pool, \
            NetworkTransport() as net:
        assert len(set(pool.pids)) == 2 and 0 not in pool.pids
        seen: set[int] = set()
        for _ in range(48):  # new connections until both answered: p(all on one) ~ 7e-15
            conn = await net.connect("127.0.0.1", pool.port, transport=transport)
            seen.add(await _ask(net, conn))
            if seen == set(pool.pids):
                break
        assert seen == set(pool.pids)
        m = await pool.metrics()
        assert m.messages_received == m.total_messages >= 2


def _accepted(pids: list[int], port: int) -> dict[int, int]:
    """pid -> established connections it holds whose local port is ``port`` (Linux /proc:
    which worker accepted them)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f[9])
    out = {}
    for pid in pids:
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                n += target.startswith("socket:[") and target[8:-1] in inodes
        out[pid] = n
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("transport", ["websocket", "grpc"])
def test_cli_serve_workers_over_websocket_and_grpc(transport: str) -> None:
    """``objtransport serve --workers 2 --transport websocket|grpc``: two pids on one port;
    connections until each worker holds one (read from /proc), echoes through them, then
    SIGTERM stops all, status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "objtransport", "serve", "--workers", "2",
                             "--port", "0", "--transport", transport],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no ready line within 30 s"
        line = proc.stdout.readline()
        assert line.startswith("echo listener on 127.0.0.1:"), line
        assert f"({transport}," in line
        port = int(line.split()[3].split(":")[1])
        pids = [int(p) for p in line.split("pids ")[1].split(")")[0].split()]
        assert len(pids) == 2

        async def until_both_took_one() -> dict[int, int]:
            async with NetworkTransport() as net:
                for i in range(48):  # all on one worker: p ~ 7e-15
                    conn = await net.connect("127.0.0.1", port, transport=transport)
                    await net.send_data(conn, b"ping %d" % i)
                    assert (await net.receive(conn, timeout=10)).data == b"ping %d" % i
                    held = _accepted(pids, port)
                    if all(held.values()):
                        return held
            return _accepted(pids, port)

        held = asyncio.run(until_both_took_one())
        assert all(held.values()), held
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
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
