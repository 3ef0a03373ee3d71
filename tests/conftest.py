"""Shared fixtures: a running service, TLS material generated at test time (trustme).

Every asyncio test runs once per event loop: the default loop and uvloop when it is
installed (ids ``[default]`` and ``[uvloop]``). ``--loop default`` or ``--loop uvloop``
runs one of them only. Tests of the pure core (tests/sansio) are synchronous and run once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import pytest
import trustme

from objtransport import NetworkTransport

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency except on Windows
    uvloop = None

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _loop_factories() -> dict[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"default": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop", choices=["all", "default", "uvloop"], default="all",
        help="run the asyncio tests on this event loop only (default: every loop installed)",
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """pytest-asyncio's hook (>= 1.4): each asyncio test is parametrised over these."""
    factories = _loop_factories()
    chosen = config.getoption("--loop")
    if chosen == "all":
        return factories
    if chosen not in factories:
        raise pytest.UsageError(f"--loop {chosen}: {chosen} is not installed")
    return {chosen: factories[chosen]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first: with ``-n auto --dist worksteal`` the workers then
    share the short ones at the end and finish together, instead of one running a long test
    while the other is idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass
class TLS:
    """A CA, a server certificate for 127.0.0.1 / localhost, and contexts using them."""

    ca: trustme.CA
    server_ctx: ssl.SSLContext
    client_ctx: ssl.SSLContext


@pytest.fixture(scope="session")
def tls() -> TLS:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    return TLS(ca, server_ctx, client_ctx)


@pytest.fixture
async def net() -> AsyncIterator[NetworkTransport]:
    async with NetworkTransport(timeout=5.0, reconnect_interval=0.05) as service:
        yield service


@pytest.fixture
async def server_net() -> AsyncIterator[NetworkTransport]:
    """A second, independent service: the far side of a test."""
    async with NetworkTransport(timeout=5.0) as service:
        yield service
