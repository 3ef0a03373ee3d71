"""``{packet, 4}`` over a byte stream (docs/protocol.md section 2): a 4-byte length and a
payload per message, nothing else on the wire; no handshake, no goodbye frame."""

from __future__ import annotations

import struct
from typing import Any

from ..config import Options, Priority
from ..exceptions import ProtocolError
from .core import SessionState
from .events import HandshakeComplete, Received
from .framing import RAW_KEEPALIVE, GoAwayCode, encode_raw
from .raw_decoder import RawDecoder
from .sniff import wrong_peer
from .stream_core import StreamCore

__all__ = ["RawSession"]

_RAW_LEN = struct.Struct("!I")
_CONTROL = int(Priority.CONTROL)


class RawSession(StreamCore[RawDecoder]):
    """``{packet, 4}``: a length and a payload per message, nothing else on the wire.

    A message begun must keep arriving (:class:`~.progress.FrameClock`); a listener's
    session (``role="server"``) also ends after ``idle_timeout`` without a byte."""

    __slots__ = ("role", "_count")

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, role: str = "peer") -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.role = role
        self._count = 0
        self._set_state(SessionState.OPEN)
        self.decoder = RawDecoder(conn_id, transport, peer, options.max_message_size,
                                  options.raw_keepalive_filter)
        self.events.append(HandshakeComplete(b"", options.max_frame_size,
                                             options.max_message_size))

    @property
    def keepalives_received(self) -> int:
        return self.decoder.keepalives

    @property
    def messages_sent(self) -> int:
        return self._count

    def connection_lost(self, reason: str) -> None:
        """A raw peer has no goodbye frame: closing its side between two messages is its
        orderly end. EOF in the middle of a message is an error."""
        if self.state is not SessionState.CLOSED and self.decoder.frame_at is None:
            self.peer_closed(GoAwayCode.NORMAL, "peer closed the connection")
            return
        if not self.messages_received and not self.decoder.bytes_received:
            # what it sent before it went was not a whole message: another protocol?
            hint = wrong_peer(self.decoder.head)
            if hint is not None:
                reason = f"{reason}: {hint}"
        super().connection_lost(reason)

    # -- receiving -------------------------------------------------------------------------
    def buffer_updated(self, nbytes: int, now: float) -> list[Received]:
        self.last_receive = now
        try:
            self.decoder.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._fail(exc)
        return self._take(now)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        if self.state is SessionState.CLOSED:
            return []
        self.last_receive = now
        try:
            self.decoder.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
        return self._take(now)

    def _take(self, now: float) -> list[Received]:
        if self.frames.update(self.decoder.frame_at, now):
            self.timer_changed = True
        msgs = self.decoder.messages
        if msgs:
            self.decoder.messages = []
            self.messages_received += len(msgs)
        return msgs

    # -- sending ---------------------------------------------------------------------------
    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one ``{packet, 4}`` frame. ``stream``/``priority`` order the local queue
        only; nothing of them reaches the wire."""
        size = len(data)
        if size > self._send_limit:
            self._check_send(size)
        self._count += 1
        self.bytes_queued += size
        if priority != 2:
            self.other_priority_messages[priority] += 1
        sched = self.scheduler
        if size < 65536 and not sched.blocked:
            buf = sched.small[priority]
            buf += _RAW_LEN.pack(size)
            buf += data
            sched.pending_bytes += size + 4
        elif size < 65536:
            sched.push_frame(priority, _RAW_LEN.pack(size) + bytes(data), stream)
        else:  # header and payload as one atomic item: no copy of the payload
            sched.push(priority, (_RAW_LEN.pack(size), memoryview(data)), stream)
        return self._count

    # -- time ------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.state is not SessionState.OPEN:
            return None
        interval = self.options.raw_keepalive_interval
        due = [self.last_send + interval] if interval else []
        if self.role == "server":
            due.append(self.last_receive + self.options.idle_timeout)
        frame = self.frames.deadline(self.decoder.fed)
        if frame is not None:
            due.append(frame)
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        if self.state is not SessionState.OPEN:
            return
        if self.frames.expired(self.decoder.fed, now):
            self.fail(self.frames.describe(self.decoder.fed, now), GoAwayCode.IDLE_TIMEOUT)
            return
        idle = self.options.idle_timeout
        if self.role == "server" and now >= self.last_receive + idle:
            self.fail(f"no bytes from the peer for {idle:g} s (idle_timeout)",
                      GoAwayCode.IDLE_TIMEOUT)
            return
        interval = self.options.raw_keepalive_interval
        if interval and now >= self.last_send + interval:
            self.scheduler.push_frame(_CONTROL, encode_raw(RAW_KEEPALIVE))
            self.last_send = now
