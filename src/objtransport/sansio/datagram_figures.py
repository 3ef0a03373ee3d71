"""What a UDP session counts, as read-only figures (:class:`DatagramFigures`, a base of
:class:`~.datagram_receive.DatagramReceiver`).

The receiver bumps its own counters inline on the per-datagram path; the window, the
reassembly and the pinger keep theirs. This class puts them together under the names of
:data:`LOSS_COUNTERS` (docs/protocol.md section 6). Like the drivers' ``FlowControl`` it
declares the session attributes it reads; the receiver sets them in its ``__init__``.
"""

from __future__ import annotations

from .liveness import Pinger
from .reassembly import Reassembly, SeqWindow

__all__ = ["LOSS_COUNTERS", "DatagramFigures"]

#: what :meth:`DatagramFigures.loss_counters` reports, in this order
LOSS_COUNTERS = (
    "datagrams_sent", "datagrams_received", "fragments_received", "fragments_expired",
    "messages_dropped", "messages_missing", "duplicates", "reordered", "garbage", "oversized",
    "inconsistent", "evicted", "overrun", "keepalives",
)


class DatagramFigures:
    """The loss counters and the receive figures of a datagram session."""

    window: SeqWindow
    reassembly: Reassembly
    pinger: Pinger
    _received_bytes: int
    _duplicates: int
    _oversized: int

    @property
    def bytes_received(self) -> int:
        return self._received_bytes

    @property
    def delivered_bytes(self) -> int:
        return self._received_bytes

    @property
    def acks(self) -> bool:
        """Datagram sessions never acknowledge: delivery is best effort."""
        return False

    @property
    def rtt_last(self) -> float | None:
        return self.pinger.rtt_last

    @property
    def pings_sent(self) -> int:
        return self.pinger.sent

    @property
    def messages_missing(self) -> int:
        return self.window.missing

    @property
    def partial_messages(self) -> int:
        return len(self.reassembly.partials)

    @property
    def held(self) -> int:
        """Bytes of partial messages held."""
        return self.reassembly.held

    @property
    def duplicates(self) -> int:
        return self._duplicates + self.reassembly.duplicates

    @property
    def oversized(self) -> int:
        return self._oversized + self.reassembly.oversized

    @property
    def fragments_received(self) -> int:
        return self.reassembly.fragments_received

    @property
    def fragments_expired(self) -> int:
        return self.reassembly.fragments_expired

    @property
    def messages_dropped(self) -> int:
        return self.reassembly.messages_dropped

    @property
    def inconsistent(self) -> int:
        return self.reassembly.inconsistent

    @property
    def evicted(self) -> int:
        return self.reassembly.evicted

    def loss_counters(self) -> dict[str, int]:
        """The datagram figures, named as in :data:`LOSS_COUNTERS`."""
        return {name: getattr(self, name) for name in LOSS_COUNTERS}
