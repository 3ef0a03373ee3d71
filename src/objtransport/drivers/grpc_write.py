"""How a gRPC link turns what its session queued into Envelopes: :class:`EnvelopeWriter`,
a base of :class:`~.grpc.GrpcLink` (which decides who writes and when: its writer task, its
reader answering, or a sender's own step, see :mod:`.grpc`).
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any

from ..sansio.envelope import encode_payload
from .grpc_config import CARRIER_MAX, carriers
from .message_link import MessageLink

__all__ = ["EnvelopeWriter"]


class EnvelopeWriter(MessageLink):
    """Batches of Envelopes from the session's queue, written with ``_write`` (the call's or
    the context's ``write``): one Envelope per message in raw mode, native frames cut into
    carriers of up to ``carrier_max`` (doubling from ``CARRIER_START``) in native mode."""

    _write: Callable[[bytes], Any]

    async def _write_queued(self) -> None:
        """Write what is queued as Envelopes, batch after batch until nothing is left."""
        while True:
            if self.pacer.buckets:
                budget, strict = await self._budget()
            else:
                budget, strict = self.carrier_max, False
            if not await self._write_batch(budget, strict):
                return

    async def _write_batch(self, budget: int, strict: bool = False) -> bool:
        """Write one batch of about ``budget`` bytes; False when nothing was queued."""
        now = monotonic()
        n = 0
        msession = self._msession
        write = self._write
        if msession is not None:
            items = msession.messages_to_send(now, budget, strict)
            if not items:
                return False
            for payload, text in items:
                n += len(payload)
                await write(encode_payload(payload, text))
        else:
            chunks = self.session.data_to_send(now, budget, strict)
            if not chunks:
                return False
            size = self.carrier_max
            for envelope in carriers(chunks, size + size // 16):
                n += len(envelope)
                await write(envelope)
            if size < CARRIER_MAX:
                self.carrier_max = min(CARRIER_MAX, size * 2)
        self.pacer.consume(n, now)
        if self._drain_waiters:
            self._wake_drain_waiters()
        return True
