"""Ids to connections and the live listeners: the lookup and listing part of the facade."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

from .connection import Connection
from .listener import Listener

__all__ = ["MAX_ORPHANS", "Registry"]

log = logging.getLogger("objtransport")

#: gone connections whose unconfirmed messages are kept for ``unconfirmed()``, at most
MAX_ORPHANS = 1024


class Registry:
    """Connections by id (client and accepted alike) and the listeners, in opening order.

    ``conns`` is a plain dict so that the per-message paths look a connection up with one
    ``dict.get``; only this class adds or removes entries.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.conns: dict[int, Connection] = {}
        self._listeners: list[Listener] = []
        #: unconfirmed payloads of connections that are gone (a pooled connection that
        #: died), until ``unconfirmed(conn_id)`` hands them over
        self._orphans: dict[int, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self.conns)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self.conns

    def next_id(self) -> int:
        """A new connection id (never reused within the service)."""
        return next(self._ids)

    def add(self, conn: Connection) -> None:
        self.conns[conn.id] = conn
        listener = conn.listener
        if listener is not None:
            listener.add(conn.id)

    def get(self, conn_id: int) -> Connection | None:
        return self.conns.get(conn_id)

    def remove(self, conn_id: int) -> Connection | None:
        """Forget an id; returns the connection if it was known."""
        conn = self.conns.pop(conn_id, None)
        if conn is not None and conn.listener is not None:
            conn.listener.remove(conn_id)
        return conn

    def keep_orphan(self, conn_id: int, payloads: list[bytes]) -> None:
        """Keep the unconfirmed payloads of a gone connection (bounded: the oldest go)."""
        self._orphans[conn_id] = payloads
        if len(self._orphans) > MAX_ORPHANS:
            old_id = next(iter(self._orphans))
            dropped = self._orphans.pop(old_id)
            log.warning("the %d unconfirmed message(s) of gone connection %s were never "
                        "collected with unconfirmed(); discarded", len(dropped), old_id)

    def take_orphan(self, conn_id: int) -> list[bytes] | None:
        """Hand over (and forget) a gone connection's unconfirmed payloads, if any."""
        return self._orphans.pop(conn_id, None)

    def ids(self) -> list[int]:
        return list(self.conns)

    def connections(self) -> list[Connection]:
        return list(self.conns.values())

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.conns.values())

    # -- listeners --------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> bool:
        """Forget a listener; False if it was not (or no longer) registered."""
        if listener in self._listeners:
            self._listeners.remove(listener)
            return True
        return False

    @property
    def listeners(self) -> list[Listener]:
        """The live listeners (a copy)."""
        return list(self._listeners)

    def accepted_by(self, listener: Listener) -> list[Connection]:
        """The live connections a listener accepted."""
        return [c for cid in list(listener.connections) if (c := self.conns.get(cid))]
