"""Turning a connection's lifecycle into public events (:mod:`.events`).

Called by the connection and its parts at the moments that matter (state changes, a
handshake, a loss, a reconnection attempt); each function returns at once when nobody
subscribed to the service's events.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .endpoint import ConnState, Endpoint
from .events import Accepted, BreakerChanged, Connected, Disconnected, Event, EventHub
from .sansio.breaker import BreakerState

if TYPE_CHECKING:
    from .connection import Connection
    from .listener import Listener

__all__ = ["breaker_event", "emit", "listener_event", "state_changed"]


def emit(conn: Connection, kind: type[Event], **fields: Any) -> None:
    """Publish an event about ``conn`` if anybody listens."""
    hub = conn.hooks.events
    if hub.active:
        hub.publish(kind(conn_id=conn.id, endpoint=str(conn.endpoint),
                         transport=conn.transport_name, time=conn.loop.time(), **fields))


def state_changed(conn: Connection, old: ConnState, new: ConnState) -> None:
    """``Accepted`` / ``Connected`` when a connection becomes CONNECTED, ``Disconnected``
    when it leaves CONNECTED or ends (``final`` when it ends)."""
    if not conn.hooks.events.active:
        return
    if new is ConnState.CONNECTED:
        if conn.role == "server" and not conn.ever_connected:
            emit(conn, Accepted)
        else:
            emit(conn, Connected, resumed=conn.resumed)
    elif old is ConnState.CONNECTED or new is ConnState.DISCONNECTED:
        reason, error = conn.end_reason
        emit(conn, Disconnected, reason=reason, error=error,
             final=new is ConnState.DISCONNECTED)


def listener_event(hub: EventHub, kind: type[Event], listener: Listener) -> None:
    """Publish ``Listening`` / ``ListenerClosed`` for ``listener`` if anybody listens."""
    if hub.active:
        ep = Endpoint(listener.kind, listener.host, listener.port, listener.tls)
        hub.publish(kind(conn_id=None, endpoint=str(ep), transport=listener.transport,
                         time=asyncio.get_running_loop().time()))


def breaker_event(hub: EventHub, ep: Endpoint, old: BreakerState, new: BreakerState,
                  now: float) -> None:
    """Publish ``BreakerChanged`` if anybody listens."""
    if hub.active:
        hub.publish(BreakerChanged(conn_id=None, endpoint=str(ep), transport=ep.transport.value,
                                   time=now, old=old.value, new=new.value))
