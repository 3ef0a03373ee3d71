"""Bytes waiting unread in a socket (``FIONREAD``): a deadline that finds the peer's bytes
there is our loop's delay, not the peer's silence.

uvloop runs its due timers before it polls the sockets: after the loop was held up (a big
read on a starved CPU, a blocking call), a liveness deadline comes while what the peer sent
in time still waits in our socket. Stream links count such bytes as heard
(:meth:`~.stream.StreamLink._on_timer`); datagram links (UDP, QUIC) read them first and
judge after the read (``read_waiting`` of their socket owners).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable

if sys.platform != "win32":
    from fcntl import ioctl
    from termios import FIONREAD

__all__ = ["READ_FIRST_BATCHES", "read_first", "unread"]

#: read batches a deadline takes at most before it judges (a socket a flood keeps full
#: would otherwise hold the verdict, and the loop, for ever)
READ_FIRST_BATCHES = 4

_INT = struct.Struct("i")
_ZERO = bytes(4)


def unread(fd: int) -> bool:
    """Are bytes waiting unread in the socket ``fd``? (False where it cannot tell.)"""
    if sys.platform == "win32" or fd < 0:
        return False
    try:
        n: int = _INT.unpack(ioctl(fd, FIONREAD, _ZERO))[0]
    except OSError:
        return False
    return n > 0


def read_first(fd: int, read: Callable[[], None]) -> None:
    """Before a deadline judges the peer: run ``read`` (a socket owner's read callback,
    which drains a batch) while datagrams wait in ``fd``, at most READ_FIRST_BATCHES times."""
    for _ in range(READ_FIRST_BATCHES):
        if not unread(fd):
            return
        read()
