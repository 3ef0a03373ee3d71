"""How a gRPC link turns what its session queued into Envelopes: :class:`EnvelopeWriter`,
a base of :class:`~.grpc.GrpcLink` (which decides who writes and when: its writer task, its
reader answering, or a sender's own step, see :mod:`.grpc`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from ..sansio.envelope import encode_payload
from .grpc_config import CARRIER_MAX, carriers
from .message_link import MessageLink

__all__ = ["ANSWER_MAX", "EnvelopeWriter"]

#: a carrier up to this size is answered by the reader itself (interactive traffic); a
#: larger one, and a larger answer, go through the writer task (bulk)
ANSWER_MAX = 16 * 1024


class EnvelopeWriter(MessageLink):
    """Batches of Envelopes from the session's queue, written with ``_write`` (the call's or
    the context's ``write``): one Envelope per message in raw mode, native frames cut into
    carriers of up to ``carrier_max`` (doubling from ``CARRIER_START``) in native mode."""

    _write: Callable[[bytes], Any]
    #: a write is in flight (the writer's, or one started by ``_write_now``); the other
    #: writer stays out meanwhile, so batches stay whole and in queue order
    _writing = False
    #: the writer task was woken while another write was in flight: wake it after it
    _rekick = False

    def _write_failed(self, exc: Exception) -> None:
        """A write failed: the call is over (the link says what that means)."""
        raise NotImplementedError


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

    async def _write_now(self) -> None:
        """Write a small batch without the writer task: the reader awaits it for what a
        small carrier's delivery queued (a reply, an ACK, a PONG), as a plain gRPC handler
        writes between reads; in raw mode a sender starts it (:meth:`.eager.Eager.start`) for a
        message queued on an idle link. One task hop less per message. Only a small batch,
        with the writer idle and no pacing; else (and for what is left) the writer task is
        woken as usual. One write at a time (``_writing``), in queue order."""
        session = self.session
        if (self._writing or self._wake.is_set() or self.pacer.buckets
                or session.closed or session.scheduler.pending_bytes > ANSWER_MAX):
            self._kick()
            return
        self._writing = True
        if await self._write_owned(self._write_batch(self.carrier_max)):
            self._wrote()

    async def _write_one(self, envelope: bytes, size: int, now: float) -> None:
        """Write one raw message's Envelope for a sender that found the call idle (it set
        ``_writing``; see ``GrpcLink._queue_at_once``), then what ``_write_now`` does after
        its batch."""
        if await self._write_owned(self._write(envelope)):
            self.pacer.consume(size, now)
            self._wrote()

    async def _write_owned(self, write: Awaitable[object]) -> bool:
        """Await ``write``, a write started outside the writer task with ``_writing`` set
        (by ``_write_now`` or ``_write_one``); True when it went through. A failed write
        ends the call (``_write_failed``): False. Either way ``_writing`` is reset, and a
        writer task woken meanwhile (``_rekick``) is woken again."""
        try:
            await write
        except Exception as exc:  # noqa: BLE001 - grpc raises several kinds once a call ends
            self._write_failed(exc)
            return False
        finally:
            self._writing = False
            if self._rekick:
                self._rekick = False
                self._kick()
        return True

    def _wrote(self) -> None:
        """After a write of ``_write_now`` or ``_write_one``: what it freed is accounted
        (``_after_write``), and the writer task is woken for what is left (or the end)."""
        self._after_write()
        session = self.session
        if session.scheduler.pending_bytes or session.has_final or session.closed:
            self._kick()
