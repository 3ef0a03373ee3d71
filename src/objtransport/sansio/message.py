"""Message-oriented raw framing: one transport message is one application message.

:class:`MessageSession` has the surface of :class:`~.core.AnySession` (like
:class:`~.raw.RawSession`, without its byte-stream input) for carriers that keep message
boundaries themselves (a WebSocket in raw mode): there is no length prefix on
the wire, a text message keeps its text flag, and liveness is the carrier's own ping/pong.

* received: ``receive_message(data, text, now)`` per carrier message;
* sending: ``send_message`` queues; ``messages_to_send(now, budget)`` returns
  ``(payload, text)`` pairs, each one carrier message, in priority order;
  ``send_at_once(size, priority, now)`` counts a message a driver writes itself while
  nothing is queued (the counts as if it had been queued and taken at once);
* time: ``next_deadline()`` / ``handle_timer(now)`` decide when a ping is due
  (``ping_due`` turns true: the driver sends one) and when a missing pong ends the session;
  the driver reports each pong with ``pong_received(rtt, now)``.

Inside the scheduler each message is held as ``[length (4)][flags (1)][payload]`` where
length counts the flag byte, so priority budgets still cut at message boundaries.
"""

from __future__ import annotations

import struct
from typing import Any

from ..config import Options
from ..exceptions import ProtocolError
from .core import AnySession, SessionCore, SessionState
from .events import HandshakeComplete, Message, PongReceived, Received
from .framing import GoAwayCode
from .scheduler import Chunk

__all__ = ["MessageSession"]

_HDR = struct.Struct("!IB")
_TEXT = 1
_SMALL = 64 * 1024


class MessageSession(SessionCore):
    """One carrier message per application message; text messages flagged."""

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, keepalive: bool = True, idle_limit: bool = False) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        #: a listener's peer without keepalive (a raw gRPC call): it must send within
        #: ``handshake_timeout`` (unless we sent to it), and it ends after ``idle_timeout``
        #: with no message either way
        self.idle_limit = idle_limit
        self._count = 0
        self._received_bytes = 0
        self._need: int | None = None  # a large message's payload is the next chunk
        self._need_text = False
        self.keepalive = keepalive
        self.rtt_last: float | None = None
        self.pings_sent = 0
        #: the driver must send a ping (and then set this back to False)
        self.ping_due = False
        self._ping_sent_at: float | None = None
        self._next_ping = now + options.keepalive_interval
        self._set_state(SessionState.OPEN)
        self.events.append(HandshakeComplete(b"", options.max_frame_size,
                                             options.max_message_size))

    @classmethod
    def like(cls, other: AnySession, now: float, keepalive: bool = True,
             idle_limit: bool = False) -> MessageSession:
        """A message session for the same connection as ``other`` (built by an owner that
        only knows stream framings)."""
        return cls(other.options, other.conn_id, other.transport_name, other.peer, now,
                   keepalive, idle_limit)

    # -- receiving -------------------------------------------------------------------------
    @property
    def bytes_received(self) -> int:
        return self._received_bytes

    @property
    def delivered_bytes(self) -> int:
        return self._received_bytes

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Received]:
        """One whole binary message."""
        return self.receive_message(bytes(data), False, now)

    def receive_message(self, data: bytes, text: bool, now: float) -> list[Received]:
        """One whole carrier message: a binary message, or a text one as its UTF-8 bytes."""
        if self.state is not SessionState.OPEN:
            return []
        self.last_receive = now
        size = len(data)
        limit = self.options.max_message_size
        if size > limit:
            self._fail(ProtocolError(f"message of {size} bytes exceeds max_message_size "
                                     f"({limit})", GoAwayCode.MESSAGE_TOO_LARGE))
            return []
        if self.idle_limit and not self.messages_received:
            self.timer_changed = True  # from the first-message deadline to idle_timeout
        self.messages_received += 1
        self._received_bytes += size
        if text:
            return [Message(data, self.conn_id, self.transport_name, self.peer, text=True)]
        return [data]

    # -- sending ---------------------------------------------------------------------------
    def _count_queued(self, size: int, priority: int) -> None:
        """Count one message of ``size`` bytes at ``priority`` as queued (what
        :meth:`send_message` and :meth:`send_at_once` both count first); raises before
        counting anything when it may not be sent."""
        if size > self._send_limit:  # -1 unless open: any size takes the full check
            self._check_send(size)
        if self.idle_limit and not self._count:
            self.timer_changed = True
        self._count += 1
        self.bytes_queued += size
        if priority != 2:
            self.other_priority_messages[priority] += 1

    def send_message(self, data: bytes | bytearray | memoryview, stream: int = 0,
                     priority: int = 2, text: bool = False) -> int:
        """Queue one message; ``stream``/``priority`` order the local queue only."""
        size = len(data)
        self._count_queued(size, priority)
        sched = self.scheduler
        header = _HDR.pack(size + 1, _TEXT if text else 0)
        if size < _SMALL and not sched.blocked:
            buf = sched.small[priority]
            buf += header
            buf += data
            sched.pending_bytes += size + 5
        elif size < _SMALL:
            sched.push_frame(priority, header + bytes(data), stream)
        else:  # header and payload as one item: the payload is not copied
            sched.push(priority, (header, memoryview(data)), stream)
        return self._count

    def send_at_once(self, size: int, priority: int, now: float) -> None:
        """Count a message of ``size`` bytes as queued and sent at once, without the queue:
        for a driver that writes it itself, only while nothing is queued (a raw gRPC link
        sending on an idle call). The counts end as :meth:`send_message` then
        :meth:`messages_to_send` leave them; raises like :meth:`send_message` (nothing
        counted)."""
        self._count_queued(size, priority)
        self.scheduler.sent_bytes[priority] += size + 5  # as if it had its queue header
        self.last_send = now
        sent = self.bytes_queued - self._dropped  # the queue is empty: exact
        if sent > self.bytes_sent:
            self.bytes_sent = sent

    @property
    def messages_sent(self) -> int:
        return self._count

    def messages_to_send(self, now: float, budget: int = 1 << 62,
                         strict: bool = False) -> list[tuple[Chunk, bool]]:
        """The next messages to send, as ``(payload, text)``, about ``budget`` bytes."""
        out: list[tuple[Chunk, bool]] = []
        for chunk in self.data_to_send(now, budget, strict):
            if self._need is not None:
                out.append((chunk, self._need_text))
                self._need = None
                continue
            n = len(chunk)
            view = memoryview(chunk)
            off = 0
            while off < n:
                length, flags = _HDR.unpack_from(chunk, off)
                end = off + 4 + length
                if end > n:  # a large message's header: its payload is the next chunk
                    self._need = length - 1
                    self._need_text = bool(flags & _TEXT)
                    break
                out.append((view[off + 5:end], bool(flags & _TEXT)))
                off = end
        return out

    # -- liveness --------------------------------------------------------------------------
    def _cut_idle(self, now: float) -> None:
        o = self.options
        if not self.messages_received and not self._count:
            self.fail(f"no message within handshake_timeout ({o.handshake_timeout:g} s)",
                      GoAwayCode.HELLO_TIMEOUT)
        else:
            self.fail(f"no message either way for idle_timeout ({o.idle_timeout:g} s)",
                      GoAwayCode.IDLE_TIMEOUT)

    def pong_received(self, rtt: float, now: float) -> None:
        """The carrier's pong answered our ping after ``rtt`` seconds."""
        self._ping_sent_at = None
        self.rtt_last = rtt
        self.last_receive = now
        self.events.append(PongReceived(rtt))

    def _idle_deadline(self) -> float:
        """When a silent peer is cut (``idle_limit``): first message, then idleness."""
        o = self.options
        if not self.messages_received and not self._count:
            return self.created + o.handshake_timeout
        return max(self.last_receive, self.last_send) + o.idle_timeout

    def next_deadline(self) -> float | None:
        if self.state is not SessionState.OPEN:
            return None
        if self.idle_limit:
            return self._idle_deadline()
        if not self.keepalive:
            return None
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self.options.pong_timeout
        return self._next_ping

    def handle_timer(self, now: float) -> None:
        """Ask for a ping when one is due; close when the last one went unanswered."""
        if self.state is not SessionState.OPEN:
            return
        if self.idle_limit:
            if now >= self._idle_deadline():
                self._cut_idle(now)
            return
        if not self.keepalive:
            return
        opts = self.options
        sent = self._ping_sent_at
        if sent is not None:
            if now >= sent + opts.pong_timeout:
                self.fail(f"no pong within {opts.pong_timeout:g} s", GoAwayCode.IDLE_TIMEOUT)
            return
        if now >= self._next_ping:
            self.ping_due = True
            self.pings_sent += 1
            self._ping_sent_at = now
            self._next_ping = now + opts.keepalive_interval
