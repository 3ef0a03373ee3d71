"""QUIC listeners on every core: ``WorkerPool(..., transport="quic")`` and ``objtransport
serve --workers N --transport quic``. The workers' UDP sockets share one port
(SO_REUSEPORT); the kernel keeps each client address on one of them, so new clients (new
ports) spread over the workers. Real processes, certificates made at test time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("aioquic")

from objtransport import NetworkTransport, WorkerPool  # noqa: E402

from .cli_helpers import background  # noqa: E402
from .test_quic import Pem, make_pem  # noqa: E402
from .test_workers import _ask, pid_echo  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def pem() -> Pem:
    return make_pem()


@pytest.fixture
def pem_files(pem: Pem, tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pem.chain)
    key.write_bytes(pem.key)
    return str(cert), str(key)


async def test_a_quic_pool_spreads_its_clients(pem: Pem, pem_files: tuple[str, str]) -> None:
    certfile, keyfile = pem_files
    async with WorkerPool(pid_echo, "127.0.0.1", 0, workers=2, transport="quic",
                          certfile=certfile, keyfile=keyfile) as pool, \
            NetworkTransport(timeout=10.0) as net:
        seen: set[int] = set()
        for _ in range(48):  # new clients until both answered: all 48 on one is p ~ 7e-15
            conn = await net.connect("127.0.0.1", pool.port, transport="quic", **pem.client)
            seen.add(await _ask(net, conn))
            if seen == set(pool.pids):
                break
        assert seen == set(pool.pids)
        assert (await pool.metrics()).total_connections >= 2


def test_serve_workers_over_quic_from_the_command_line(pem: Pem,
                                                       pem_files: tuple[str, str]) -> None:
    certfile, keyfile = pem_files
    with background("serve", "--port", "0", "--workers", "2", "--transport", "quic",
                    "--cert", certfile, "--key", keyfile) as bg:
        m = bg.wait_for(r"listener on 127\.0\.0\.1:(\d+) \(quic.*2 workers: pids (\d+) (\d+)",
                        timeout=60)
        port = int(m.group(1))
        assert m.group(2) != m.group(3)

        async def one() -> bytes:
            async with NetworkTransport(timeout=10.0) as net:
                conn = await net.connect("127.0.0.1", port, transport="quic", **pem.client)
                await net.send_data(conn, b"over quic")
                return (await net.receive(conn, timeout=10)).data

        assert asyncio.run(one()) == b"over quic"
