"""``send_data`` with headers, a ttl or compression: the slow path of
:meth:`~objtransport.NetworkTransport.send_data`, out of
:class:`~objtransport.api_sending.SendingAPI` (which stays under the size guide).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

from .connection import Connection
from .exceptions import ConnectionNotReady, SendTimeout
from .requests import MessagingCounters, outgoing
from .sansio.headers import HeaderValue

__all__ = ["send_extended"]


async def send_extended(conn: Connection, data: bytes | bytearray | memoryview, prio: int,
                        stream: int, text: bool, timeout: float,
                        headers: Mapping[str, HeaderValue] | None, ttl: float | None,
                        counters: MessagingCounters) -> None:
    """send_data with headers, a ttl or compression (``timeout`` resolved, ``prio`` parsed):
    the slow path."""
    expires = conn.hooks.clock() + ttl if ttl is not None else 0.0
    link = conn.link
    if link is None or not link.session.open:
        try:
            link = await conn.ready_link(timeout if ttl is None else min(ttl, timeout))
        except ConnectionNotReady:
            if ttl is None or ttl >= timeout:
                raise
            _expired(conn, data, stream, prio, text)
            return
    opts = conn.options
    payload, flags = outgoing(link, data, text, headers=headers, expires=expires,
                              compression=opts.compression,
                              min_size=opts.compression_min_size,
                              counters=counters, where=conn.endpoint)
    if ttl is not None:
        conn.expiry.check()  # what is past its ttl leaves before this one queues
    try:
        if link.send(payload, stream, prio, cast(bool, flags)):
            if ttl is not None:
                conn.expiry.track(link.last_seq, expires)
            await link.wait_writable(timeout if ttl is None else min(ttl, timeout), prio)
        elif ttl is not None:
            conn.expiry.track(link.last_seq, expires)
    except SendTimeout:
        if ttl is None or ttl >= timeout:
            conn.breaker.record_failure(asyncio.get_running_loop().time())
            raise
        # queued, past its ttl: it may still go out; the receiver drops it then


def _expired(conn: Connection, data: bytes | bytearray | memoryview, stream: int,
             prio: int, text: bool) -> None:
    """A message's ttl passed before it could be queued: report it, never silently."""
    conn.expiry.report([(0, bytes(data), stream, prio, text)])
