"""What every byte-stream session shares: a decoder and a frame clock behind the driver's
verbs.

:class:`StreamCore` delegates the input side a stream driver calls (``get_buffer``, the
shared receive buffer, the listener's reassembly budget, the peer's address, reading
pauses) to the session's :class:`~.decoder.DecoderBase` and :class:`~.progress.FrameClock`.
:class:`~.raw.RawSession` and :class:`~.handshake.NativeHandshake` (so
:class:`~.session.NativeSession`) derive from it; each sets ``decoder`` to its framing's
decoder in its ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..config import Options
from .core import SessionCore
from .decoder import DecoderBase
from .progress import FrameClock
from .reassembly import ReassemblyBudget

__all__ = ["StreamCore"]

D = TypeVar("D", bound=DecoderBase)


class StreamCore(SessionCore, Generic[D]):
    """A session fed by a byte stream through its decoder ``D``."""

    __slots__ = ("frames", "decoder")

    decoder: D

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.frames = FrameClock(options.timeout)  # a frame begun must keep arriving

    def set_peer(self, peer: Any) -> None:
        self.peer = peer
        self.decoder.peer = peer

    def use_buffer(self, buf: bytearray | memoryview) -> None:
        self.decoder.use_buffer(buf)

    def use_budget(self, budget: ReassemblyBudget) -> None:
        self.decoder.use_budget(budget)

    def drop_incomplete(self) -> None:
        self.decoder.release()

    def reading_paused(self, now: float) -> None:
        self.frames.pause(now)

    def reading_resumed(self, now: float) -> None:
        self.frames.resume(now)

    def input_waiting(self, now: float) -> None:
        """The driver found the peer's bytes waiting unread in the socket when a deadline
        came (uvloop runs its timers before it polls the sockets, so after a stall of our
        own they are still there): the peer is neither silent nor slow. It counts as heard
        now, and the frame in progress waits for the read that follows."""
        self.last_receive = now
        self.frames.hold(now)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_getter(self) -> Callable[[int], memoryview]:
        """:meth:`get_buffer` without this session's call in between (the decoder's own,
        for a driver that asks before every read; the decoder is the session's for life)."""
        return self.decoder.get_buffer

    @property
    def bytes_received(self) -> int:
        return self.decoder.bytes_received

    @property
    def delivered_bytes(self) -> int:
        return self.decoder.bytes_received
