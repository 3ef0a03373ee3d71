"""What a QUIC link receives on its streams (:class:`QuicInbound`, a base of
:class:`~.quic_link.QuicLink`).

The session is fed whole frames only, so frames of different QUIC streams never interleave
inside its decoder: each peer stream's bytes wait in an :class:`Inbound` until a frame is
complete. Data-stream frames that arrive before the HELLO wait too, and a GOAWAY on the
control stream is held until every data stream of the peer is complete. Raw peers use
stream 0 only. Reading pauses drop this connection's datagrams (QUIC sends them again).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from time import monotonic

from ..sansio.events import Received
from ..sansio.framing import FrameType
from ..sansio.throttle import TokenBucket
from .quic_end import QuicEnding

__all__ = ["Inbound", "QuicInbound"]

_LEN = struct.Struct("!I").unpack_from
_GOAWAY = int(FrameType.GOAWAY)


class Inbound:
    """A peer stream's bytes not yet fed to the session (less than one frame, or held)."""

    __slots__ = ("buf", "fin", "skip")

    def __init__(self, skip: int = 0) -> None:
        self.buf = bytearray()
        self.fin = False
        self.skip = skip  # leading bytes fed as they come (the control stream's magic)


def _whole(data: bytes | bytearray, off: int, n: int, stop_goaway: bool,
           max_frame: int) -> tuple[int, bool]:
    """End of the last complete frame from ``off`` (stopping before a GOAWAY when asked),
    and whether it stopped at a GOAWAY. A frame longer than ``max_frame`` counts as whole
    (its header goes to the session, which refuses it before its body is buffered)."""
    while off + 4 <= n:
        (length,) = _LEN(data, off)
        if length > max_frame:
            return n, False
        if stop_goaway and off + 5 < n and data[off + 5] == _GOAWAY:
            return off, True
        end = off + 4 + length
        if end > n:
            break
        off = end
    return off, False


class QuicInbound(QuicEnding):
    """Stream data in -> whole frames to the session; reading pauses and throttling."""

    loop: asyncio.AbstractEventLoop
    receive_bucket: TokenBucket | None
    _in: dict[int, Inbound]
    _peer_uni: int
    _early: list[bytes | bytearray]
    _control_open: bool
    _read_pauses: set[str]
    _answer: Callable[[], None]
    _rearm: Callable[[], None]

    def _on_stream(self, sid: int, data: bytes, fin: bool) -> None:
        session = self.session
        if sid == self.control:
            self._control_open = True
        if session.closed and not self.native:
            if fin and sid == self.control:
                self._peer_final_seen()
            return
        now = monotonic()
        if self.receive_bucket is not None:
            self._throttle(len(data), now)
        if not self.native:
            if sid != self.control:
                return  # raw peers use stream 0 only; anything else is ignored
            msgs = session.receive_data(data, now) if data else []
            self._delivered(msgs)
            if fin:
                self._peer_final_seen()
                if not session.closed:
                    # a raw peer ends its side between two messages: an orderly end
                    session.connection_lost("peer closed its stream")
                    self._process_events()
            return
        st = self._in.get(sid)
        if st is None:
            if sid % 4 != self._peer_uni:
                return  # not a stream of ours to read: ignored
            st = self._in[sid] = Inbound()
        msgs = self._feed(sid, st, data, now)
        if fin:
            st.fin = True
            if sid == self.control:
                self._peer_final_seen()
            elif self._held_goaway and self._peer_data_done():
                msgs += self._feed(self.control, self._in[self.control], b"", now)
        self._delivered(msgs)

    def _feed(self, sid: int, st: Inbound, data: bytes, now: float) -> list[Received]:
        """Feed the session the whole frames of ``st`` plus ``data``; keep the rest."""
        session = self.session
        out: list[Received] = []
        if st.skip:
            head = data[:st.skip]
            st.skip -= len(head)
            data = data[len(head):]
            out += session.receive_data(head, now)
        control = sid == self.control
        stop = control and len(self._in) > 1 and not self._peer_data_done()
        max_frame = session.options.max_frame_size + 8
        if st.buf:
            st.buf += data
            buf: bytes | bytearray = st.buf
        else:
            buf = data
        n = len(buf)
        end, held = _whole(buf, 0, n, stop, max_frame)
        if control:
            self._held_goaway = held
        if end:
            chunk = buf[:end] if end < n or buf is st.buf else buf
            if not control and not session.is_open:
                self._early.append(bytes(chunk))
            else:
                out += session.receive_data(chunk, now)
                if self._early and session.is_open:
                    early, self._early = self._early, []
                    for piece in early:
                        out += session.receive_data(piece, now)
        if buf is st.buf:
            del st.buf[:end]
        elif end < n:
            st.buf += buf[end:]
        return out

    def _peer_data_done(self) -> bool:
        """Every data stream the peer opened so far has ended (FIN) and been fed, with no
        stream id skipped (ids are used in order: a gap is a stream still to come)."""
        ids = [sid for sid in self._in if sid != self.control]
        if not ids:
            return True
        if (max(ids) - self._peer_uni) // 4 + 1 != len(ids):
            return False
        return all(self._in[sid].fin and not self._in[sid].buf for sid in ids)

    def _throttle(self, nbytes: int, now: float) -> None:
        bucket = self.receive_bucket
        assert bucket is not None
        bucket.consume(nbytes, now)
        if bucket.tokens(now) < 0 and "throttle" not in self._read_pauses:
            self.pause_reading("throttle")
            self.loop.call_later(bucket.time_until(0, now), self.resume_reading, "throttle")

    def pause_reading(self, reason: str = "consumer") -> None:
        """Stop reading: datagrams of this connection are dropped (QUIC sends them again
        later, and its congestion control slows the peer down)."""
        if not self._read_pauses:
            self.session.reading_paused(monotonic())  # not the peer's time
        self._read_pauses.add(reason)
        self.pump.paused = True

    def resume_reading(self, reason: str = "consumer") -> None:
        self._read_pauses.discard(reason)
        if not self._read_pauses:
            self.pump.paused = False
            self.session.reading_resumed(monotonic())
