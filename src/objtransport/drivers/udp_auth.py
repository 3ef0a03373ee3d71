"""A UDP listener's authentication of new peers (``listen(..., authenticate=fn)``).

A native UDP peer has no HELLO: its token rides after the cookie of the PING that admits it
(:func:`~objtransport.sansio.admission.credential_of_ping`). So the listener's return-path
check comes first (no state and no call for a forged address), then :class:`UdpAuth` holds
the admitting PING while ``fn`` decides, in the listener's :class:`~.authgate.AuthGate`
(bounded, owned tasks). Accepted: the PING is admitted again, now with the identity, and the
peer gets its link and its PONG. Refused: one GOAWAY ``UNAUTHENTICATED`` to the (proven)
address; nothing is kept. An authentication slower than ``hello_timeout`` ends with GOAWAY
``HELLO_TIMEOUT``. The PINGs the client repeats meanwhile are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..config import Options
from ..exceptions import ProtocolError
from ..sansio.admission import credential_of_ping
from ..sansio.framing import GoAwayCode, encode_goaway
from .authgate import AuthGate
from .tcp import auth_gate

__all__ = ["UdpAuth", "udp_gate"]

#: ``send(datagram, addr)``: best effort
Send = Callable[[bytes, Any], None]
#: ``readmit(ping, addr)``: admit the address now that it is authenticated
Readmit = Callable[[bytes, Any], None]


def udp_gate(extra: dict[str, Any], options: Options) -> AuthGate | None:
    """A UDP listener's gate for ``authenticate=`` (None without one). The token rides
    after the return-path cookie, so the check must be on (``ValueError`` otherwise)."""
    gate = auth_gate(extra)
    if gate is not None and not options.udp_return_check:
        raise ValueError("authenticate= over UDP needs udp_return_check=True: the token "
                         "rides after the return-path cookie")
    return gate


class _Pending:
    """One address whose token ``fn`` is checking (the gate's :class:`Authenticated`)."""

    def __init__(self, owner: UdpAuth, addr: Any, ping: bytes, timeout: float) -> None:
        self.owner = owner
        self.addr = addr
        self.ping = ping
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._deadline = loop.call_later(timeout, self.fail,
                                         f"no authentication within {timeout:g} s",
                                         GoAwayCode.HELLO_TIMEOUT)

    def end(self) -> bool:
        """Stop waiting (answered, timed out, or the listener closes); False if it had."""
        self._deadline.cancel()
        if self.closed.done():
            return False
        self.closed.set_result(None)  # the gate cancels its task, if still running
        self.owner.pending.pop(self.addr, None)
        return True

    def authenticated(self, identity: str | None) -> None:
        if not self.end():
            return
        if identity is None:
            self.owner.refuse(self.addr, "authentication refused", GoAwayCode.UNAUTHENTICATED)
        else:
            self.owner.grant(self.addr, identity, self.ping)

    def fail(self, reason: str, code: int) -> None:
        if self.end():
            self.owner.refuse(self.addr, reason, code)


class UdpAuth:
    """The authentications under way on one UDP listener."""

    def __init__(self, gate: AuthGate, timeout: float, send: Send, readmit: Readmit) -> None:
        self.gate = gate
        self.timeout = timeout
        self._send = send
        self._readmit = readmit
        self.pending: dict[Any, _Pending] = {}
        #: addresses just accepted, with their identity, until readmitted
        self._granted: dict[Any, str] = {}
        #: PINGs dropped: repeated while their address was checked, or a malformed token
        self.dropped = 0

    def check(self, ping: bytes | bytearray | memoryview, addr: Any) -> str | None:
        """A PING that proved its address: its identity if ``fn`` accepted it already,
        else None (the check starts, or is under way; nothing to admit yet)."""
        identity = self._granted.pop(addr, None)
        if identity is not None:
            return identity
        if addr in self.pending:
            self.dropped += 1
            return None
        try:
            token = credential_of_ping(ping)
        except ProtocolError as exc:
            self.dropped += 1
            self.refuse(addr, str(exc), exc.code)
            return None
        pending = _Pending(self, addr, bytes(ping), self.timeout)
        self.pending[addr] = pending
        self.gate.start(pending, token)
        return None

    def grant(self, addr: Any, identity: str, ping: bytes) -> None:
        self._granted[addr] = identity
        self._readmit(ping, addr)
        self._granted.pop(addr, None)  # not admitted after all (closing, max_connections)

    def refuse(self, addr: Any, reason: str, code: int) -> None:
        """One GOAWAY to a proven address (never more than its PING's size plus ~300 B)."""
        self._send(encode_goaway(code, reason), addr)

    def counters(self) -> dict[str, int]:
        return {**self.gate.counters(), "auth_dropped": self.dropped}

    def close(self) -> None:
        """The listener closes: every check under way ends (no answer is sent)."""
        for pending in list(self.pending.values()):
            pending.end()
        self.gate.close()
