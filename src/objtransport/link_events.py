"""What a connection does with the events of its link's session (:class:`LinkEvents`).

RTT samples and answers go to the owner's hooks, ACKs wake the waiters for confirmations, a
lost session is reported, a completed handshake may be a resume (and makes an accepted
connection CONNECTED), and how the link ended is recorded: counted as an error when it was a
fault, published as ``Overloaded`` when our side dropped a peer that does not read or went
over a memory budget. Links call :meth:`LinkEvents.on_event` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .endpoint import ConnState
from .events import Overloaded, RttMeasured, SessionResumed
from .lifecycle import emit
from .sansio.events import (
    Acked,
    Closed,
    Event,
    HandshakeComplete,
    PongReceived,
    RepliesReceived,
)
from .sansio.events import SessionLost as CoreSessionLost
from .sansio.framing import GoAwayCode

if TYPE_CHECKING:
    from .connection import Connection
    from .drivers.base import Link

__all__ = ["LinkEvents"]


class LinkEvents:
    """The session events of one connection's links."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_event(self, link: Link, ev: Event) -> None:
        conn = self.conn
        if isinstance(ev, PongReceived):
            conn.hooks.on_rtt(ev.rtt)
            emit(conn, RttMeasured, rtt=ev.rtt)
        elif isinstance(ev, Acked):
            conn.confirmations.wake()
        elif isinstance(ev, RepliesReceived):
            conn.hooks.on_replies(conn, ev.replies)
        elif isinstance(ev, CoreSessionLost):
            conn.session_lost(ev.unconfirmed)
        elif isinstance(ev, HandshakeComplete):
            conn.resumed = ev.resumed
            if ev.resumed:
                emit(conn, SessionResumed, resent=ev.resent)
            if conn.role == "server":
                identity = getattr(link, "identity", None)  # authenticated by now
                if identity is not None:
                    conn.identity = identity
                conn.set_state(ConnState.CONNECTED)
        elif isinstance(ev, Closed):
            conn.end_reason = (ev.reason, ev.error)
            conn.end_code = ev.code
            if ev.error and not conn.closed_by_user:
                conn.record_error(ev.reason)
                conn.hooks.on_error(conn, ev.reason)
                if ev.code == GoAwayCode.OVERLOADED and not ev.by_peer:
                    # drivers/overload.py says "peer does not read"; other OVERLOADED ends
                    # are memory budgets (e.g. max_total_reassembly_bytes)
                    emit(conn, Overloaded, reason=ev.reason,
                         what="dropped_slow_consumer" if "does not read" in ev.reason
                         else "dropped_over_budget")
