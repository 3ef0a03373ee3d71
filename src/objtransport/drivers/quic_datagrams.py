"""Unreliable messages on a QUIC link (:class:`QuicDatagrams`, a base of
:class:`~.quic_link.QuicLink`): one message per DATAGRAM frame (RFC 9221), unordered, never
re-sent, and their counters.
"""

from __future__ import annotations

from collections.abc import Callable

from aioquic.quic.connection import QuicConnection

from ..exceptions import ConnectionNotReady, MessageTooLarge
from .flow import FlowControl
from .quic_config import DATAGRAM_FRAME_MAX
from .quic_conn import QuicPump

__all__ = ["QuicDatagrams"]


class QuicDatagrams(FlowControl):
    """``send_datagram``, what arrives in DATAGRAM frames, and the counts."""

    pump: QuicPump
    quic: QuicConnection
    datagrams_sent: int
    datagrams_received: int
    datagrams_dropped: int
    _answer: Callable[[], None]
    _process_events: Callable[[], None]
    _rearm: Callable[[], None]

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Send one message as a QUIC DATAGRAM frame (unreliable, unordered).

        Raises ``MessageTooLarge`` (nothing sent) when it cannot fit one packet, and
        ``ConnectionNotReady`` unless the session is open.
        """
        session = self.session
        if not session.is_open:
            raise ConnectionNotReady(session.conn_id, session.state.value)
        limit = self.datagram_limit
        if len(data) > limit:
            raise MessageTooLarge(len(data), limit)
        self.quic.send_datagram_frame(bytes(data))
        self.datagrams_sent += 1
        session.bytes_sent += len(data)
        self.pump.transmit_soon()

    @property
    def datagram_limit(self) -> int:
        """The largest payload one DATAGRAM frame carries on this connection."""
        size = self.quic.configuration.max_datagram_size
        return min(DATAGRAM_FRAME_MAX, size - 64)  # short header, frame header, AEAD tag

    def datagram_counters(self) -> dict[str, int]:
        """Unreliable messages (DATAGRAM frames) sent and received on this link, and those
        dropped because the session was not open."""
        return {"quic_datagrams_sent": self.datagrams_sent,
                "quic_datagrams_received": self.datagrams_received,
                "quic_datagrams_dropped": self.datagrams_dropped}

    def _on_datagram(self, data: bytes) -> None:
        session = self.session
        if not session.is_open:
            self.datagrams_dropped += 1
            return
        self.datagrams_received += 1
        self._delivered([data])
