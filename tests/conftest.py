"""Shared fixtures: a running service, TLS material generated at test time (trustme)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trustme

from objtransport import NetworkTransport


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
