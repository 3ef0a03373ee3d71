"""``SO_RCVLOWAT`` while a plain TCP link receives a large frame body (:class:`RcvLowat`).

Inside a large DATA frame (or fragment) the decoder knows how many body bytes are still to
come: the frame's length header committed the peer to them. Without a low-water mark the
kernel wakes the reader for every few segments and each wake-up is a loop turn, a
``recv_into`` and a ``buffer_updated`` for a small part of the body. With
``SO_RCVLOWAT = min(left, CAP)`` the socket is readable once that much is there; it goes
back to 1 when the body is complete or the frame is small.

Safety: the mark never exceeds what the frame's header committed the peer to send, so a
reader never waits for bytes the peer does not owe; FIN and errors wake the reader whatever
the mark; a peer that stops mid-frame is cut by the link's deadlines (timers, not reads).
When a deadline comes the link puts the mark back to 1 first (:meth:`RcvLowat.reset`): the
bytes waiting below it are then read at the next poll (the link counts bytes waiting unread
as heard, and the frame's deadline resumes with that read).

Not for TLS links (the socket carries TLS records, not our frames) nor non-TCP sockets.
"""

from __future__ import annotations

import socket
from typing import Any

from ..sansio.decoder import DecoderBase

__all__ = ["RcvLowat", "LOWAT_CAP", "LOWAT_MIN", "rcvlowat_for"]

#: the largest mark asked for (the kernel grows the receive buffer to twice it)
LOWAT_CAP = 256 * 1024
#: bodies with fewer bytes left than this read as they come (mark 1)
LOWAT_MIN = 64 * 1024


class RcvLowat:
    """The socket's ``SO_RCVLOWAT``, set only when the wanted value changes."""

    __slots__ = ("sock", "mark")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.mark = 1

    def follow(self, decoder: DecoderBase) -> None:
        """After a read: the mark for the body bytes ``decoder`` still expects."""
        left = decoder.body_left
        want = min(left, LOWAT_CAP) if left >= LOWAT_MIN else 1
        if want != self.mark:
            self._set(want)

    def reset(self) -> None:
        """Back to 1 (a deadline came, the link ends)."""
        if self.mark != 1:
            self._set(1)

    def _set(self, value: int) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
        except OSError:  # closed, or the platform refuses it: read as before
            value = 1
        self.mark = value


def rcvlowat_for(transport: Any) -> RcvLowat | None:
    """A :class:`RcvLowat` for a plain TCP transport's socket; None for TLS, Unix sockets,
    or where the platform has no ``SO_RCVLOWAT``."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if sock.type != socket.SOCK_STREAM or not hasattr(socket, "SO_RCVLOWAT"):
        return None
    return RcvLowat(sock)
