"""Authentication of accepted connections (``listen(..., authenticate=fn)``).

``fn(credentials)`` gets the bearer token the client sent (``connect(..., token=...)`` or
``credentials=``; None if it sent none) and returns the peer's identity (any value; kept as
``str``), or None to refuse. It may be a coroutine function. The token travels in the native
HELLO (TCP, TLS, UDP), in the WebSocket upgrade's ``Authorization: Bearer`` header and in
gRPC metadata ``authorization`` (docs/protocol.md section 9); a refused client gets
:class:`~.exceptions.AuthenticationError`, never retried.

``credentials=`` is a token, or a function (plain or async) returning one, called before
every connection attempt (the first and each reconnect), so a token that expires is fetched
again.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["AUTH_OPTIONS", "Authenticate", "Credentials", "authenticate", "bearer",
           "bearer_header", "certificate_subject", "check_credentials", "client_token"]

#: the listener's and the client's options, handled by the drivers that support them
AUTH_OPTIONS = frozenset({"authenticate", "token", "credentials", "max_authentications"})

log = logging.getLogger("objtransport.auth")

Authenticate = Callable[[str | None], Any] | Callable[[str | None], Awaitable[Any]]
#: ``connect(..., credentials=...)``: a token, or what returns one (plain or async)
Credentials = str | Callable[[], str | None] | Callable[[], Awaitable[str | None]]


def check_credentials(options: dict[str, Any]) -> None:
    """Reject ``token=`` together with ``credentials=``, and values of the wrong type, at
    ``connect`` time (``ValueError`` / ``TypeError``)."""
    token = options.get("token")
    creds = options.get("credentials")
    if token is not None and creds is not None:
        raise ValueError("give token= or credentials=, not both")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if creds is not None and not (isinstance(creds, str) or callable(creds)):
        raise TypeError("credentials must be a str or a function returning one")


async def client_token(options: dict[str, Any]) -> str | None:
    """The token for the next connection attempt: ``token=``, or what ``credentials=``
    gives now (a function is called again at each attempt). What the function raises
    propagates (the caller makes it a ``ConnectError``)."""
    token = options.get("token")
    if token is not None:
        return str(token)
    creds = options.get("credentials")
    if creds is None or isinstance(creds, str):
        return creds
    result = creds()
    if inspect.isawaitable(result):
        result = await result
    if result is not None and not isinstance(result, str):
        raise TypeError(f"credentials() returned {type(result).__name__}, not a str")
    return result


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
