"""The reliable half of a native session: the HELLO exchange, resuming, acknowledgements.

:class:`NativeHandshake` settles what the two sides agree on (limits, ACKs, resume) when the
peer's HELLO arrives, resends what a resumed session had not confirmed, and schedules ACKs.
:class:`~.session.NativeSession` derives from it and adds the frames in and out and the
timers (docs/protocol.md sections 1.3, 1.6, 1.7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Options, Priority
from ..exceptions import ProtocolError
from .core import SessionState
from .events import AuthenticationRequested, HandshakeComplete, SessionLost
from .framing import (
    ACK_FORMAT,
    FEATURE_ACKS,
    FEATURE_META,
    FEATURE_RESUME,
    FEATURE_RESUMED,
    FEATURE_SKIP,
    FEATURE_ZLIB,
    FEATURE_ZSTD,
    MAGIC,
    SKIP_FORMAT,
    FrameType,
    GoAwayCode,
    Hello,
    encode_frame,
    encode_hello,
)
from .native_decoder import NativeDecoder
from .reliability import ResumeState
from .stream_core import StreamCore

try:
    import zstandard  # noqa: F401
    zstd = True
except ImportError:  # the objtransport[zstd] extra is not installed
    zstd = False

__all__ = ["ACK_BYTES", "ACK_BYTES_MAX", "ACK_DELAY", "ACK_EVERY", "ACK_PIGGYBACK",
           "NativeHandshake", "ResumeLookup", "ack_step"]

#: acknowledge at least every this many messages (each ACK costs a write on this side and
#: a wake-up on the other: every 256 took 18 % of 1 KiB throughput) ...
ACK_EVERY = 4096
#: ... or every this many payload bytes (large messages: the sender's window of
#: ``max_unacked_bytes`` must not wait for the delay below) ...
ACK_BYTES = 1024 * 1024
#: ... or, when the peer's HELLO announced its window (``FEATURE_WINDOW``), every quarter
#: of that window, from ``ACK_BYTES`` up to this: each ACK wakes the sender, and at one per
#: 1 MiB message that wake-up cost the receiver ~80 µs per MiB with both peers on one vCPU
#: (docs/design.md, "1 MiB on the default loop")
ACK_BYTES_MAX = 4 * 1024 * 1024
#: ... or this long after the first unacknowledged one
ACK_DELAY = 0.005
#: a write this close to a delayed ACK's time (s) takes the ACK along (one write, not two)
ACK_PIGGYBACK = 0.001
#: (TCP, TLS) a fragment cut while only its stream of its class waits (and the link is not
#: throttled) may carry this much (within the peer's max_frame_size): a 1 MiB message then
#: goes in 2 frames of 512 KiB, not 4 of 256 KiB (each a read and a loop turn on the receiver)
SOLO_PIECE = 1024 * 1024
#: a listener's way to find a kept session by the id in the client's HELLO:
#: ``(state, resumed)``
ResumeLookup = Callable[[bytes], tuple[ResumeState, bool]]

_CONTROL = int(Priority.CONTROL)
_BOTH = FEATURE_ACKS | FEATURE_RESUME
#: frames resent up to this size are copied into the small-frame buffer; larger ones are
#: queued as views of what was written
_RESEND_COPY = 16 * 1024
#: after a resume, at most this many bytes go out before the peer acknowledges more; the
#: window doubles with each acknowledgement and is off once it reaches max_unacked_bytes.
#: A link that breaks again soon (a middlebox that resets every N bytes) then loses at most
#: about a window of written data, not everything the socket buffers would have taken.
RESUME_WINDOW = 64 * 1024
#: a full window opens (doubles) anyway after this long without an ACK that moves the
#: floor: the message the floor waits for may be behind the window (priorities interleave)
WINDOW_WAIT = 0.02


def ack_step(window: int) -> int:
    """Payload bytes between ACKs for a peer whose HELLO announced ``window`` (0: none, an
    older peer): a quarter of it, from ``ACK_BYTES`` to ``ACK_BYTES_MAX``. A sender whose
    window is below 4 MiB is acknowledged every MiB as before (it never waits for
    ``ACK_DELAY`` more than it did)."""
    if window <= 0:
        return ACK_BYTES
    return min(ACK_BYTES_MAX, max(ACK_BYTES, window // 4))


class NativeHandshake(StreamCore[NativeDecoder]):
    """HELLO, resume and ACK state of a native session (the frames are the subclass's)."""

    __slots__ = ("_ack_bytes", "_ack_step", "_ack_due", "_acks", "_fragment", "_in_window",
                 "_preface_sent", "_qos", "_reliable", "_unacked_high", "_window", "_window_wait",
                 "extensions",
                 "peer_features", "peer_session_id", "resume_lookup", "role", "rs", "session_id",
                 "_seq0", "_queued0", "_authenticate", "_held_hello", "token")

    _send_ping: Callable[[float], None]

    def __init__(self, options: Options, conn_id: int, transport: str, peer: Any,
                 now: float, session_id: bytes, resume: ResumeState | None, role: str,
                 resume_lookup: ResumeLookup | None) -> None:
        super().__init__(options, conn_id, transport, peer, now)
        self.session_id = session_id
        self.role = role
        self.resume_lookup = resume_lookup
        #: sequence numbers, unacknowledged messages, duplicate filter (outlives sessions)
        self.rs = resume if resume is not None else ResumeState(session_id)
        self._reliable = options.reliable and (resume is not None
                                               or resume_lookup is not None)
        self._acks = False  # both sides agreed on ACKs (set by the handshake)
        #: unacknowledged bytes above which queue() answers "wait" (only with ACKs)
        self._unacked_high = 1 << 62
        self._ack_due: float | None = None
        self._ack_bytes = 0  # payload bytes received when the last ACK went
        #: payload bytes between ACKs (``ack_step`` of the peer's announced window)
        self._ack_step = ACK_BYTES
        self._seq0 = self.rs.next_seq
        self._queued0 = self.rs.queued
        self.peer_session_id = b""
        self._fragment = options.max_fragment_size
        self._qos = options.qos
        self._preface_sent = False
        #: what we understand beyond ACKs and resume: meta blocks, compressed payloads,
        #: SKIP frames
        self.extensions = (FEATURE_META | FEATURE_ZLIB | FEATURE_SKIP
                           | (FEATURE_ZSTD if zstd else 0))
        #: the features bits of the peer's HELLO (0 until it arrived)
        self.peer_features = 0
        #: after a resume: bytes that may be written before the peer acknowledges more
        #: (0: no window) and the bytes written since the last acknowledgement
        self._window = 0
        self._in_window = 0
        self._window_wait: float | None = None  # when a full window opens anyway
        #: (client) the token its HELLO carries (``connect(..., token=...)``)
        self.token: str | None = None
        #: (listener) the client's HELLO must be authenticated before the session opens
        self._authenticate = False
        #: (listener) the client's HELLO while ``authenticate`` decides
        self._held_hello: Hello | None = None

    # -- figures ---------------------------------------------------------------------------
    @property
    def unacked_bytes(self) -> int:
        """Bytes sent and not yet acknowledged (0 without ACKs)."""
        return self.rs.unacked_bytes if self._acks else 0

    @property
    def acks(self) -> bool:
        return self._acks

    @property
    def messages_sent(self) -> int:
        return self.rs.next_seq - self._seq0

    @property
    def bytes_queued(self) -> int:
        """Payload bytes of the messages queued on this session: derived from the resume
        state's count, as ``messages_sent`` is, so queueing moves one counter, not two."""
        return self.rs.queued - self._queued0

    @bytes_queued.setter
    def bytes_queued(self, value: int) -> None:
        """``SessionCore.__init__`` sets 0 before ``rs`` exists; the count starts at
        ``_queued0``, set once ``rs`` does."""

    def _ended(self, code: int, reason: str, *, by_peer: bool, error: bool) -> None:
        """Also free the spare buffers of the resend store's pool: a session kept for a
        resume has no keepalive to trim them (chunk_pool.py), and writes nothing until then."""
        super()._ended(code, reason, by_peer=by_peer, error=error)
        self.rs.trim_pool(idle_only=False)

    # -- HELLO -----------------------------------------------------------------------------
    def _send_hello(self, features: int | None = None, resume_seq: int | None = None,
                    session_id: bytes | None = None) -> None:
        o = self.options
        rs = self.rs
        if resume_seq is None:
            resume_seq = rs.floor if rs.established else 0
        if features is None:
            features = _BOTH if self._reliable else 0
        features |= self.extensions
        hello = Hello(session_id or rs.session_id, features, o.max_frame_size,
                      o.max_message_size, resume_seq,
                      self.token if self.role == "client" else None,
                      o.max_unacked_bytes if features & FEATURE_ACKS else 0)
        self.scheduler.push_frame(_CONTROL, MAGIC + encode_hello(hello))
        self._preface_sent = True

    # -- authentication (listener) ------------------------------------------------------------
    def require_authentication(self) -> None:
        """(listener, before any byte) Hold the client's HELLO until the driver answers
        :class:`~.events.AuthenticationRequested` with :meth:`authenticated`."""
        self._authenticate = self.role == "server"

    @property
    def authenticating(self) -> bool:
        """The client's HELLO waits for the driver's :meth:`authenticated`."""
        return self._held_hello is not None

    def _hold_hello(self, hello: Hello) -> bool:
        """A listener that authenticates keeps the HELLO (no resume lookup, no session
        state) and asks the driver; True if it did. Until the answer, any frame but GOAWAY
        is a protocol error (DATA is refused by the decoder before it is buffered)."""
        if self._held_hello is not None:
            raise ProtocolError("second HELLO", GoAwayCode.PROTOCOL_ERROR)
        if not self._authenticate:
            return False
        self._held_hello = hello
        self.decoder.accept_data = False
        self.events.append(AuthenticationRequested(hello.token))
        return True

    def authenticated(self, identity: str | None, now: float) -> None:
        """The driver's answer to :class:`~.events.AuthenticationRequested`: ``identity``
        (then the session opens as if the HELLO had just come) or None (refused: GOAWAY
        ``UNAUTHENTICATED``). The driver then handles the events and writes."""
        hello = self._held_hello
        if hello is None or self.state is not SessionState.HANDSHAKE:
            return
        if identity is None:
            self.fail("authentication refused", GoAwayCode.UNAUTHENTICATED)
            return
        if self.decoder.buffered:
            self.fail("data sent before authentication", GoAwayCode.PROTOCOL_ERROR)
            return
        self._held_hello = None
        self.decoder.accept_data = True
        try:
            self._on_hello(hello)
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._send_ping(now)

    def _on_hello(self, hello: Hello) -> None:
        """Settle the handshake: limits, ACKs, and resuming (or not) the session. The
        caller starts the keepalive."""
        self.decoder.max_frame_size = self.options.max_frame_size  # capped until now
        self.peer_session_id = hello.session_id
        self.peer_features = hello.features
        self.peer_max_message = hello.max_message_size
        self._ack_step = ack_step(hello.window)
        self._fragment = min(self.options.max_fragment_size, hello.max_frame_size - 28)
        if self.transport_name == "tcp":  # (and TLS) a large message alone on the
            # connection goes in fragments of up to 1 MiB: the peer reads them in place.
            # Not over WebSocket: 512 KiB pieces doubled its receiver's CPU per MiB
            self.scheduler.solo_piece = min(SOLO_PIECE, hello.max_frame_size - 28)
        agreed = self._reliable and hello.features & _BOTH == _BOTH
        resent: int | None = None  # messages sent again if the session was resumed
        if self.role == "server":
            resent = self._answer_hello(hello, agreed)
        elif agreed:
            resent = self._client_resume(hello)
        rs = self.rs
        if agreed:
            self.decoder.rx = rs
            self._acks = True
            self._unacked_high = self.options.max_unacked_bytes
            rs.attach(self.scheduler)
            rs.can_skip = bool(hello.features & FEATURE_SKIP)
        else:
            if rs.unacked_count:  # a session that had ACKs, continued without: in doubt
                self.events.append(SessionLost(rs.take_unconfirmed()))
            rs.detach()
        rs.peer_session_id = hello.session_id
        self._set_state(SessionState.OPEN)
        self.events.append(HandshakeComplete(hello.session_id, hello.max_frame_size,
                                             hello.max_message_size, resent is not None,
                                             resent or 0))

    def _answer_hello(self, hello: Hello, agreed: bool) -> int | None:
        """Listener: find the session to resume (if any) and send our HELLO. Returns how
        many messages were sent again if the session was resumed, else None."""
        rs = self.rs
        resumed = False
        if agreed and self.resume_lookup is not None:
            rs, resumed = self.resume_lookup(hello.session_id)
            self.rs = rs
            self._seq0 = rs.next_seq
            self._queued0 = rs.queued
        if resumed:
            self._send_hello(_BOTH | FEATURE_RESUMED, rs.floor, hello.session_id)
            return self._resend(hello.resume_seq)
        rs.reset_receive()
        self._send_hello(_BOTH if agreed else 0, 0, hello.session_id)
        return None

    def _client_resume(self, hello: Hello) -> int | None:
        """Client: the listener resumed our session (resend) or started a new one (what
        was unconfirmed is lost: reported). Returns how many messages were sent again if
        the session was resumed, else None."""
        rs = self.rs
        resent: int | None = None
        if hello.features & FEATURE_RESUMED:
            resent = self._resend(hello.resume_seq)
        else:
            if rs.established:
                lost = rs.take_unconfirmed()
                if lost:
                    self.events.append(SessionLost(lost))
                rs.restart_numbering()
                self._seq0 = 0
            rs.reset_receive()
        rs.established = True
        return resent

    def _resend(self, peer_floor: int) -> int:
        """After a resume: drop what the peer has, queue the rest again (the frames as they
        were written, same numbers; a large message not fully sent as its fragment job).
        Returns how many messages are sent again."""
        sched = self.scheduler
        qos = self._qos
        rs = self.rs
        before = rs.resent
        for f in rs.take_resend(peer_floor):
            queue = f.priority if qos else 2
            if f.job is not None:
                sched.push(queue, f.job, f.stream)
            elif f.frame is not None and len(f.frame) < _RESEND_COPY:
                sched.push_frame(queue, bytes(f.frame), f.stream)
            elif f.frame is not None:
                sched.push(queue, (f.frame,), f.stream)  # a large fragment: no copy
        for seq in sorted(rs.skipped):  # given up (ttl): the peer counts them as done
            self._send_skip(seq)
        if sched.pending_bytes:
            self._window = RESUME_WINDOW
            self._in_window = 0
        return rs.resent - before

    def _window_acked(self) -> None:
        """The peer acknowledged more after a resume: the window doubles (and is off once
        it reaches ``max_unacked_bytes``)."""
        self._in_window = 0
        self._window_wait = None
        self._window *= 2
        if self._window >= self.options.max_unacked_bytes:
            self._window = 0

    # -- ACKs ------------------------------------------------------------------------------
    def _schedule_ack(self, now: float) -> None:
        rs = self.rs
        if (rs.floor - rs.ack_sent >= ACK_EVERY
                or self.decoder.bytes_received - self._ack_bytes >= self._ack_step):
            self._send_ack()
        elif self._ack_due is None:
            self._ack_due = now + ACK_DELAY
            self.timer_changed = True

    def _send_skip(self, seq: int) -> None:
        self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.SKIP,
                                                         SKIP_FORMAT.pack(seq)))

    def _send_ack(self) -> None:
        rs = self.rs
        rs.ack_sent = rs.floor
        self._ack_bytes = self.decoder.bytes_received
        self._ack_due = None
        self.scheduler.push_frame(_CONTROL, encode_frame(FrameType.ACK,
                                                         ACK_FORMAT.pack(rs.floor)))
