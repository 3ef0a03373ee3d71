"""A listener's authentications of native HELLO tokens (TCP, TLS, UDP): :class:`AuthGate`.

The session holds the client's HELLO and reports
:class:`~objtransport.sansio.events.AuthenticationRequested`; the link hands the token here.
The gate calls the listener's ``authenticate`` in a task it owns, at most ``limit`` at once:
a slow authenticator (an identity service that hangs) cannot pile up tasks, and a client
above the bound is refused at once (GOAWAY ``OVERLOADED``, retryable) instead of waiting
behind the others. Each authentication is bounded by the session's ``hello_timeout``: the
session ends the link, and the gate's task is cancelled with it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..auth import Authenticate, authenticate
from ..sansio.framing import GoAwayCode

__all__ = ["AUTH_LIMIT", "AuthGate", "Authenticated"]

#: authentications under way at once per listener, by default (``max_authentications``)
AUTH_LIMIT = 64


class Authenticated(Protocol):
    """The link side of an authentication."""

    closed: asyncio.Future[Any]

    def authenticated(self, identity: str | None) -> None: ...

    def fail(self, reason: str, code: int) -> None: ...


class AuthGate:
    """Runs one listener's ``authenticate`` calls, bounded; cancelled on close."""

    def __init__(self, fn: Authenticate, limit: int = AUTH_LIMIT) -> None:
        if limit < 1:
            raise ValueError("max_authentications must be at least 1")
        self.fn = fn
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        #: tokens accepted, refused, and clients refused because ``limit`` were under way
        self.accepted = 0
        self.refused = 0
        self.busy = 0

    @property
    def running(self) -> int:
        """Authentications under way."""
        return len(self._tasks)

    def start(self, link: Authenticated, token: str | None) -> None:
        """Authenticate ``token`` for ``link``; the answer goes to ``link.authenticated``."""
        if len(self._tasks) >= self.limit:
            self.busy += 1
            link.fail(f"too many authentications under way ({self.limit}); try again",
                      GoAwayCode.OVERLOADED)
            return
        task = asyncio.get_running_loop().create_task(self._run(link, token),
                                                      name="objtransport-authenticate")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        link.closed.add_done_callback(lambda _f: task.cancel())

    async def _run(self, link: Authenticated, token: str | None) -> None:
        identity = await authenticate(self.fn, token)
        if identity is None:
            self.refused += 1
        else:
            self.accepted += 1
        link.authenticated(identity)

    def counters(self) -> dict[str, int]:
        return {"auth_accepted": self.accepted, "auth_refused": self.refused,
                "auth_busy": self.busy}

    def close(self) -> None:
        """The listener closes: every authentication under way is cancelled."""
        for task in list(self._tasks):
            task.cancel()
