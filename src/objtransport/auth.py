"""Authentication of accepted connections (``listen(..., authenticate=fn)``).

``fn(credentials)`` gets the bearer token the client sent (``connect(..., token=...)``; None
if it sent none) and returns the peer's identity (any value; kept as ``str``), or None to
refuse. It may be a coroutine function. The token travels in the WebSocket upgrade's
``Authorization: Bearer`` header and in gRPC metadata ``authorization`` (docs/protocol.md);
a refused client gets :class:`~.exceptions.AuthenticationError`, never retried.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["AUTH_OPTIONS", "Authenticate", "authenticate", "bearer", "bearer_header",
           "certificate_subject"]

#: the listener's and the client's options, handled by the drivers that support them
AUTH_OPTIONS = frozenset({"authenticate", "token"})

log = logging.getLogger("objtransport.auth")

Authenticate = Callable[[str | None], Any] | Callable[[str | None], Awaitable[Any]]


async def authenticate(fn: Authenticate, token: str | None) -> str | None:
    """The identity ``fn`` grants ``token``, or None (refused, also when ``fn`` raises)."""
    try:
        result = fn(token)
        if inspect.isawaitable(result):
            result = await result
    except Exception:  # a broken authenticator refuses: it never lets anybody in
        log.exception("authenticate raised: the client is refused")
        return None
    return None if result is None else str(result)


def bearer(value: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_header(token: str) -> str:
    """The ``Authorization`` value for ``token``."""
    if not token or any(c in token for c in "\r\n"):
        raise ValueError("token must be a non-empty string without line breaks")
    return f"Bearer {token}"


def certificate_subject(peercert: Any) -> str | None:
    """The subject of a verified peer certificate (``ssl`` ``getpeercert()``), as
    ``"CN=client,O=Example"``; None without one (no mutual TLS)."""
    if not isinstance(peercert, dict):
        return None
    parts = [f"{k}={v}" for rdn in peercert.get("subject", ()) for k, v in rdn]
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}
    out = []
    for part in parts:
        key, _, value = part.partition("=")
        out.append(f"{names.get(key, key)}={value}")
    return ",".join(out) or None
