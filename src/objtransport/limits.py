"""A connection's bandwidth limits: its own send and receive buckets plus the shared ones
(the service's ``max_bandwidth``, a pool's), behind one :class:`~.drivers.pacing.Pacer`.

The buckets outlive links: a rate changed at run time applies at once and after every
reconnection.
"""

from __future__ import annotations

from .config import Options
from .drivers.pacing import Pacer, default_burst
from .sansio.throttle import TokenBucket

__all__ = ["Limits"]


class Limits:
    """Send and receive limits of one connection (bytes/s; 0 = none)."""

    __slots__ = ("_shared", "send_bucket", "receive_bucket", "pacer")

    def __init__(self, options: Options, now: float,
                 shared_buckets: list[TokenBucket] | None = None) -> None:
        #: tuples: the empty one (no shared limit) is no object of the connection's
        self._shared = tuple(shared_buckets or ())
        self.send_bucket: TokenBucket | None = None
        self.receive_bucket: TokenBucket | None = None
        #: what paces the link's sending (shared with every link of the connection)
        self.pacer = Pacer(self._shared)
        self.set(now, options.max_bandwidth, options.burst, options.max_receive_bandwidth,
                 options.receive_burst)

    def set(self, now: float, max_bandwidth: float | None = None, burst: float | None = None,
            max_receive_bandwidth: float | None = None,
            receive_burst: float | None = None) -> None:
        """Change the limits (0 removes a limit; None leaves it). The caller tells the live
        link about a new ``receive_bucket``."""
        if max_bandwidth is not None:
            self.send_bucket = _bucket(self.send_bucket, max_bandwidth, burst, now)
        if max_receive_bandwidth is not None:
            self.receive_bucket = _bucket(self.receive_bucket, max_receive_bandwidth,
                                          receive_burst, now)
        self.pacer.buckets = ((self.send_bucket,) if self.send_bucket else ()) + self._shared

    @property
    def max_bandwidth(self) -> float:
        return self.send_bucket.rate if self.send_bucket else 0.0

    @property
    def max_receive_bandwidth(self) -> float:
        return self.receive_bucket.rate if self.receive_bucket else 0.0


def _bucket(current: TokenBucket | None, rate: float, burst: float | None,
            now: float) -> TokenBucket | None:
    """The bucket for a new limit: None for 0, the current one re-rated, or a new one."""
    if rate <= 0:
        return None
    b = burst or default_burst(rate)
    if current is None:
        return TokenBucket(rate, b, now)
    current.set_rate(rate, b, now)
    return current
