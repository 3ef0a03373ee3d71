"""What a :class:`~.connection.Connection` carried over all its links
(:class:`ConnectionCounters`, its base): the links that ended are folded into its
:class:`~.counters.LinkTotals`, the live one is added when asked."""

from __future__ import annotations

from .counters import LinkTotals, Traffic, add_counts
from .drivers.base import Link

__all__ = ["ConnectionCounters"]


class ConnectionCounters:
    """The counters of a connection: its current link and the totals of those that ended
    (set by the connection)."""

    __slots__ = ("link", "totals")

    link: Link | None
    totals: LinkTotals

    def traffic(self) -> Traffic:
        """Bytes and messages each way over every link of this connection."""
        link = self.link
        return self.totals.with_live(link.session if link is not None else None)

    def datagram_counters(self) -> dict[str, int]:
        """UDP loss counters over every link of this connection (empty for streams)."""
        link = self.link
        out = self.totals.datagram_with_live(link.session if link is not None else None)
        own = getattr(link, "datagram_counters", None)  # a link's own (QUIC DATAGRAM frames)
        if own is not None:
            add_counts(out, own())
        return out

    def fold_link(self, link: Link) -> None:
        """A link ended: add its figures to the totals; it is no longer the current one."""
        self.totals.fold(link.session)
        own = getattr(link, "datagram_counters", None)
        if own is not None:
            add_counts(self.totals.datagram, own())
        if self.link is link:
            self.link = None
