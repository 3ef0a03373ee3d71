"""A UDP client's connected socket (:class:`UdpEndpoint`): one link, its datagrams read
on every wake-up (at most :data:`BATCH`, GRO runs split), sent with ``send`` / ``sendmsg``;
an ICMP port unreachable ends the link (see :mod:`.udp`)."""

from __future__ import annotations

import errno
import socket
from time import monotonic

from ..config import Options
from ..sansio.datagram import Datagram, DatagramSession
from .tcp import describe_connect_error
from .udp_link import DatagramLink
from .udp_socket import ANC_SIZE, DatagramSocket, segments

__all__ = ["BATCH", "UdpEndpoint"]

#: datagrams read per wake-up at most
BATCH = 256
_REFUSED = "connection refused (ICMP port unreachable)"


class UdpEndpoint(DatagramSocket):
    """A connected socket for one client link."""

    connected = True

    def __init__(self, sock: socket.socket, options: Options) -> None:
        super().__init__(sock, options, self.on_readable)
        self.link: DatagramLink | None = None

    def on_readable(self) -> None:
        link = self.link
        if link is None:
            return
        receive = link.ds.receive_datagram
        recv_into = self.sock.recv_into
        view = self.view
        now = monotonic()
        failure = ""
        try:
            if self.gro:
                self._receive_coalesced(link.ds, now)
            else:
                for _ in range(BATCH):
                    receive(view[:recv_into(self.buf)], now)
        except (BlockingIOError, InterruptedError):
            pass
        except ConnectionRefusedError:
            failure = _REFUSED
        except OSError as exc:
            failure = f"socket error: {describe_connect_error(exc)}"
        link.after_receive()
        if failure:
            link.fail(failure)

    def _receive_coalesced(self, session: DatagramSession, now: float) -> None:
        """Read until the socket is empty (at most about BATCH datagrams); a read may carry
        a run of datagrams that GRO coalesced: split at the segment size."""
        recvmsg_into = self.sock.recvmsg_into
        receive = session.receive_datagram
        bufs = [self.buf]
        view = self.view
        got = 0
        while got < BATCH:
            n, anc, _, _ = recvmsg_into(bufs, ANC_SIZE)
            seg = segments(n, anc) if anc else n
            if seg >= n:
                receive(view[:n], now)
                got += 1
                continue
            session.receive_run(view[:n], seg, now)
            got += -(-n // seg)
            self.coalesced_reads += 1

    def transmit(self, link: DatagramLink, dgram: Datagram) -> bool:
        """Send one datagram; False if the socket is full (the caller keeps it)."""
        try:
            if isinstance(dgram, tuple):
                self.sock.sendmsg(dgram)
            else:
                self.sock.send(dgram)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionRefusedError:
            link.fail(_REFUSED)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            self.send_errors += 1
            link.fail(f"send failed: {describe_connect_error(exc)}")
        return True

    def detach(self, link: DatagramLink) -> None:
        self.link = None
        self.close_socket()
