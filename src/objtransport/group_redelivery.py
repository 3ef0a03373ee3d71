"""What a group's failed members had not confirmed (:class:`Redelivery`): re-sent through
the other members (``redeliver=True``: at least once, within the group's
:class:`~.sansio.balancer.RetryBudget`) or kept for ``unconfirmed(group)``, never dropped
silently. Request retries draw from the same budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from .exceptions import TransportError
from .sansio.balancer import RetryBudget
from .sansio.reliability import Unacked

__all__ = ["Redelivery", "Resend"]

log = logging.getLogger("objtransport.groups")

#: re-send one message through the group: (payload, priority, stream, text)
Resend = Callable[[bytes, int, int, bool], Awaitable[object]]


class Redelivery:
    """The retry budget, the messages in doubt, and the counts of both outcomes."""

    def __init__(self, group_id: int, target: str, redeliver: bool,
                 retry_budget: tuple[float, float], resend: Resend) -> None:
        self.group_id = group_id
        self.target = target
        self.redeliver = redeliver
        self._loop = asyncio.get_running_loop()
        self.budget = RetryBudget(*retry_budget, now=self._loop.time())
        self._resend = resend
        #: what could not be confirmed nor redelivered, until taken
        self.unconfirmed: list[Unacked] = []
        #: messages redelivered through another member, reported unconfirmed, in all
        self.redelivered = 0
        self.unconfirmed_total = 0

    def allow_retry(self) -> bool:
        """May a request be retried on another member now? Takes one retry from the
        budget if so."""
        return self.budget.try_withdraw(self._loop.time()) > 0

    def report(self, lost: Iterable[Unacked]) -> None:
        """Keep ``lost`` for ``unconfirmed(group)`` (and say so once)."""
        lost = list(lost)
        if lost:
            self.unconfirmed.extend(lost)
            self.unconfirmed_total += len(lost)
            log.warning("group %s (%s): %d message(s) could not be confirmed nor redelivered; "
                        "unconfirmed(%s) hands them over", self.group_id, self.target,
                        len(lost), self.group_id)

    def take(self) -> list[bytes]:
        """Hand over (and forget) the payloads reported so far."""
        out = [u[1] for u in self.unconfirmed]
        self.unconfirmed.clear()
        return out

    async def redeliver_lost(self, lost: list[Unacked]) -> None:
        """Re-send what a failed member had not confirmed through the others (at least
        once: some may have arrived); what the budget or the members refuse is reported."""
        if not lost:
            return
        if not self.redeliver:
            self.report(lost)
            return
        granted = self.budget.try_withdraw(self._loop.time(), len(lost))
        self.report(lost[granted:])
        for i, (_seq, payload, stream, priority, text) in enumerate(lost[:granted]):
            try:
                await self._resend(payload, priority, stream, text)
            except TransportError as exc:
                log.warning("group %s: redelivery failed (%s)", self.group_id, exc)
                self.report(lost[i:granted])
                return
            except BaseException:  # cancelled (the group closes): still reported
                self.report(lost[i:granted])
                raise
            self.redelivered += 1
