"""Endpoint -> circuit breaker (:class:`BreakerRegistry`).

Client connections and pools to the same endpoint share one breaker, so one that keeps
failing fails fast for all of them. Every transition is logged and reported through
``on_change(endpoint, old, new, now)`` (the service turns it into a ``BreakerChanged``
event). Accepted connections get a breaker of their own (:meth:`BreakerRegistry.detached`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .config import Options
from .endpoint import Endpoint
from .info import breaker_snapshot
from .logfields import log_fields
from .sansio.backoff import RandomSource
from .sansio.breaker import BreakerState, CircuitBreaker, CircuitBreakerState

__all__ = ["BreakerRegistry", "ChangeCallback"]

log = logging.getLogger("objtransport")

ChangeCallback = Callable[[Endpoint, BreakerState, BreakerState, float], None]


class BreakerRegistry:
    """One breaker per endpoint, created on first use with the service's options."""

    def __init__(self, options: Options, on_change: ChangeCallback | None = None,
                 rng: RandomSource | None = None) -> None:
        self.options = options
        self.on_change = on_change
        #: more callbacks for every transition (the groups: an open breaker ejects a member)
        self.watchers: list[ChangeCallback] = []
        #: jitters the open times of breakers that keep re-opening
        self.rng = rng
        self._breakers: dict[Endpoint, CircuitBreaker] = {}

    def __len__(self) -> int:
        return len(self._breakers)

    def for_endpoint(self, endpoint: Endpoint) -> CircuitBreaker:
        """The endpoint's breaker (created closed on first use)."""
        b = self._breakers.get(endpoint)
        if b is None:
            o = self.options

            def changed(old: BreakerState, new: BreakerState, now: float) -> None:
                log.warning("circuit breaker for %s: %s -> %s", endpoint, old.value, new.value,
                            extra=log_fields(None, endpoint))
                if self.on_change is not None:
                    self.on_change(endpoint, old, new, now)
                for watcher in self.watchers:
                    watcher(endpoint, old, new, now)

            b = self._breakers[endpoint] = CircuitBreaker(
                o.failure_threshold, o.reset_timeout, o.half_open_max_probes,
                on_state_change=changed, max_reset_timeout=o.max_reset_timeout, rng=self.rng)
        return b

    def detached(self) -> CircuitBreaker:
        """A breaker of its own (an accepted connection's; shared with no one)."""
        o = self.options
        return CircuitBreaker(o.failure_threshold, o.reset_timeout,
                              max_reset_timeout=o.max_reset_timeout, rng=self.rng)

    def snapshot(self, endpoint: Endpoint, wall_offset: float) -> CircuitBreakerState:
        """The endpoint's breaker state, ``last_failure`` in wall-clock time."""
        return breaker_snapshot(self.for_endpoint(endpoint), wall_offset)
