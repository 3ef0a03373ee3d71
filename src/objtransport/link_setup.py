"""How a connection's links are set up: the parts a driver builds a link from
(:func:`make_parts`), and the session of each new link (:func:`new_session`: native or
raw, client or listener side).

Both read the connection's public state only; a :class:`~.connection.Connection` keeps
what outlives its links (the resume state, the token, the hooks), this module builds what
lives as long as one link.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from .drivers.base import LinkParts
from .sansio.session import NativeSession, RawSession, Session

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["make_parts", "new_session"]


def make_parts(conn: Connection, detect: bool = False) -> LinkParts:
    """What a driver needs to build a link for ``conn``.

    With ``detect`` the framing is chosen from the peer's first bytes (until then a native
    session that sends nothing holds the place, with its HELLO timeout).
    """
    extra = conn.extra
    if conn.role == "client" and ("credentials" in extra or "token" in extra):
        extra = {k: v for k, v in extra.items() if k != "credentials"}
        extra["token"] = conn.token  # this attempt's (drivers send it as they can)
        if conn.token is None:
            del extra["token"]
    server = conn.server
    limits = conn.limits
    return LinkParts(partial(new_session, conn), None if detect else conn.native,
                     conn.on_messages, conn.link_events.on_event,
                     conn.options.max_pending_bytes, extra,
                     server.adopt if server is not None else None,
                     limits.pacer, limits.receive_bucket)


def new_session(conn: Connection, native: bool | None) -> Session:
    """A session for a new link of ``conn``: raw (``native`` False), or native (True, or
    None: a placeholder until the framing is detected). A client's native session resumes
    the connection's :class:`~.sansio.reliability.ResumeState`; a listener's finds the
    session to resume through ``conn.resume_lookup`` once the client's HELLO names it."""
    if native is not None:
        conn.native = native
    now = conn.loop.time()
    if native is False:
        return RawSession(conn.options, conn.id, conn.transport_name, conn.peer_address,
                          now, role=conn.role)
    if conn.role == "server":
        session = NativeSession(conn.options, conn.id, conn.transport_name,
                                conn.peer_address, now, conn.resume_state.session_id,
                                send_preface=False, role="server",
                                resume_lookup=conn.resume_lookup)
    else:
        conn.expiry.check()  # nothing past its ttl is sent again by a resume
        session = NativeSession(conn.options, conn.id, conn.transport_name,
                                conn.peer_address, now, conn.resume_state.session_id,
                                resume=conn.resume_state, role="client", token=conn.token)
    session.responder = conn.hooks.responder
    return session
