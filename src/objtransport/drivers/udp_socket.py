"""A datagram socket and the links that use it (:class:`DatagramSocket`), the base of
:mod:`.udp`'s connected endpoint and listener.

It switches reading on and off, keeps the links waiting for room to send (``add_writer``),
and sends a link's datagrams, a run of equal-sized ones in one ``sendmsg`` where the kernel
takes ``UDP_SEGMENT`` (segmentation offload, Linux, ``udp_offload``). Its socket receives
with ``UDP_GRO`` where it can; :func:`segments` tells the size of the datagrams a read
coalesced. Reading itself (``on_readable``) is each subclass's.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable

from ..config import Options
from ..sansio.datagram import Datagram
from .sockpeek import read_first
from .udp_link import DatagramLink

__all__ = ["ANC_SIZE", "GSO_SEGMENTS", "DatagramSocket", "make_socket", "segments"]

_RECV_SIZE = 65_536
#: datagrams per UDP_SEGMENT send at most (the kernel's UDP_MAX_SEGMENTS is 64 or more)
GSO_SEGMENTS = 64
_GSO_BYTES = 65_000
_UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
_UDP_GRO = getattr(socket, "UDP_GRO", 104)
ANC_SIZE = socket.CMSG_SPACE(4)
_SEG = struct.Struct("=H")
_INT = struct.Struct("=i")
_LINUX = sys.platform.startswith("linux")

_local = threading.local()


def _recv_buffer() -> bytearray:
    """This thread's receive buffer: every datagram is copied out before the next read."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(_RECV_SIZE)
    return buf


def make_socket(family: int, options: Options) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    size = options.udp_socket_buffer
    if size:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:  # pragma: no cover - the OS caps it silently on Linux
                pass
    return sock


def _set_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def _run_end(dgrams: list[Datagram], i: int) -> int:
    """The end of the run of datagrams from ``i`` one UDP_SEGMENT send can carry: equal
    sizes (the last may be shorter), plain ``bytes``, at most GSO_SEGMENTS and 64 KiB."""
    size = len(dgrams[i])
    end = min(len(dgrams), i + GSO_SEGMENTS, i + max(1, _GSO_BYTES // size))
    if size > 2 and len(set(map(len, dgrams[i:end]))) == 1:
        return end  # all of one size (a pair, the only non-bytes, has len 2 < 20)
    j = i + 1
    while j < end:
        d = dgrams[j]
        if isinstance(d, tuple) or len(d) > size:
            break
        j += 1
        if len(d) < size:
            break
    return j


def segments(n: int, ancdata: list[tuple[int, int, bytes]]) -> int:
    """The size of the datagrams coalesced into ``n`` bytes (GRO), else ``n``."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_UDP and kind == _UDP_GRO and len(data) >= 4:
            return int(_INT.unpack_from(data)[0]) or n
    return n


class DatagramSocket:
    """A datagram socket and the links that use it: reading switched on and off, the links
    waiting for room to send. The subclass reads in ``on_readable`` and provides the rest
    of :class:`~.udp_link.LinkOwner` (``transmit``, ``detach``)."""

    #: a connected socket (one link): pausing the link stops reading the socket
    connected = False
    #: send one datagram; False if the socket is full (each subclass's method)
    transmit: Callable[[DatagramLink, Datagram], bool]

    def __init__(self, sock: socket.socket, options: Options,
                 on_readable: Callable[[], None]) -> None:
        self.sock = sock
        self._on_readable = on_readable
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.fd = sock.fileno()
        self.buf = _recv_buffer()
        self.view = memoryview(self.buf)
        self._reading = False
        self._writers: deque[DatagramLink] = deque()
        self._writing = False
        self.closed = False
        self.send_errors = 0
        offload = options.udp_offload and _LINUX
        self.gso = offload  # until the kernel refuses a UDP_SEGMENT send
        self.gro = offload and _set_gro(sock)
        self.gso_sends = 0  # sendmsg calls that carried several datagrams
        self.coalesced_reads = 0  # reads that carried several datagrams (GRO)

    def transmit_many(self, link: DatagramLink, dgrams: list[Datagram]) -> int:
        """Send ``dgrams`` in order, runs of equal size in one UDP_SEGMENT send each;
        return how many went (fewer when the socket is full: the caller keeps the rest)."""
        n = len(dgrams)
        i = 0
        while i < n:
            first = dgrams[i]
            j = _run_end(dgrams, i) if self.gso and not isinstance(first, tuple) else i + 1
            if j - i == 1:
                if not self.transmit(link, first):
                    return i
            elif not self._send_run(link, dgrams, i, j):
                return i
            i = j
        return n

    def _send_run(self, link: DatagramLink, dgrams: list[Datagram], i: int, j: int) -> bool:
        size = len(dgrams[i])
        data = b"".join(dgrams[i:j])  # type: ignore[arg-type]
        cmsg = [(socket.IPPROTO_UDP, _UDP_SEGMENT, _SEG.pack(size))]
        try:
            if self.connected:
                self.sock.sendmsg([data], cmsg)
            else:
                self.sock.sendmsg([data], cmsg, 0, link.peer)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                self.gso = False  # no offload here: one datagram per call from now on
                return all(self.transmit(link, d) for d in dgrams[i:j])
            return self.transmit(link, dgrams[i])  # the per-datagram path maps the error
        self.gso_sends += 1
        return True

    def start_reading(self) -> None:
        if not self._reading and not self.closed:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    def read_waiting(self) -> None:
        """A link's deadline is about to judge its peer: read the datagrams waiting in the
        socket first (uvloop runs timers before it polls; after our loop was held up, the
        peer's datagrams may be there). At most READ_FIRST_BATCHES batches."""
        if self._reading:
            read_first(self.fd, self._on_readable)

    def stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def want_write(self, link: DatagramLink) -> None:
        """``link`` has datagrams waiting for room in the socket."""
        if link not in self._writers:
            self._writers.append(link)
        if not self._writing and not self.closed:
            self._writing = True
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        writers = self._writers
        for _ in range(len(writers)):
            link = writers.popleft()
            link.writable()
            if link.blocked:
                writers.append(link)
                break
        if not writers and self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    def close_socket(self) -> None:
        if self.closed:
            return
        self.stop_reading()
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self.closed = True
        self.sock.close()
