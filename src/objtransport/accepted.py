"""The server side of a connection: the accepted link, and the session kept for a resume.

An accepted connection has one link at a time. When a native link breaks unexpectedly the
connection is *detached* (CONNECTING, kept by :class:`~.sessions.SessionKeeper`) instead of
ending, and a client that resumes the session on a new socket hands that socket over
(:meth:`AcceptedSide.take_over`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .drivers.base import Link
from .endpoint import ConnState, Endpoint
from .sansio.reliability import ResumeState
from .sansio.session import NativeSession

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["AcceptedSide"]


class AcceptedSide:
    """Binds accepted links to one server-side connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: finds the session a client's HELLO names (the service's, shared by all)
        self.lookup: Callable[[Connection, bytes], tuple[ResumeState, bool]] | None = None

    def resume(self, sid: bytes) -> tuple[ResumeState, bool]:
        """The session's ``resume_lookup``: the session to resume for ``sid``, or a new one."""
        assert self.lookup is not None, "the connector sets lookup before any link"
        return self.lookup(self.conn, sid)

    def adopt(self, link: Link) -> None:
        """Bind an accepted socket's link to the connection."""
        self.conn.attach(link)
        self.conn.identity = getattr(link, "identity", None)
        link.on_made = self._made
        # a bound method, not a partial of the link (two fewer objects per idle connection
        # for the garbage collector): the future names its link through conn.link
        link.closed.add_done_callback(self._closed)

    def _made(self, link: Link) -> None:
        conn = self.conn
        peer = link.peer
        conn.peer_address = peer
        if conn.identity is None:  # mutual TLS: known once the socket is made
            conn.identity = getattr(link, "identity", None)
        if isinstance(peer, tuple) and len(peer) >= 2:
            conn.endpoint = Endpoint(conn.endpoint.transport, str(peer[0]), int(peer[1]),
                                     conn.endpoint.tls)

    def _closed(self, closed: object) -> None:
        link = self.conn.link
        if link is not None and link.closed is closed:
            self._link_closed(link)

    def _link_closed(self, link: Link) -> None:
        conn = self.conn
        if conn.link is not link:
            return  # the link moved to the connection whose session it resumed
        conn.fold_link(link)
        closed = link.closed.result() if link.closed.done() else None
        orderly = closed is not None and closed.by_peer and not closed.error
        if (link.session.acks if isinstance(link.session, NativeSession) else False) \
                and not orderly and not conn.closed_by_user:
            # keep the session for the client to resume
            conn.set_state(ConnState.CONNECTING)
            conn.hooks.on_detached(conn)
            return
        conn.set_state(ConnState.DISCONNECTED)

    def take_over(self, link: Link) -> None:
        """A new socket resumed this connection's session: it is ours now. A link we still
        hold (we had not noticed the old socket died) is aborted."""
        conn = self.conn
        stale = conn.link
        if stale is not None:
            conn.fold_link(stale)
            stale.abort()
        link.on_messages = conn.on_messages
        link.on_event = conn.link_events.on_event
        session = link.session
        session.conn_id = conn.id
        session.set_peer(link.peer)
        decoder = getattr(session, "decoder", None)
        if decoder is not None:
            decoder.conn_id = conn.id
        conn.reconnects += 1
        self.adopt(link)
        self._made(link)

    def expire(self) -> None:
        """The kept session was not resumed in time: what the peer had not acknowledged is
        reported as unconfirmed, and the connection ends."""
        conn = self.conn
        if conn.link is not None:
            return
        rs = conn.resume_state
        if rs.unacked_count:
            conn.session_lost(rs.take_unconfirmed())
        conn.set_state(ConnState.DISCONNECTED)
