"""Fast paths against the general ones they stand for (issue 17: copies drift apart).

A session reads one whole plain frame without the decoder's walk (the lone path of
``NativeReceiver.buffer_updated``); any other read, and ``receive_data``, goes the general
way. Two sessions in the same state, fed the same frames at the same times, one through
each, must end in the same state: the same messages, the same ACK schedule (when due, what
was acknowledged), the same bytes to send, the same timer requests.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.events import as_message
from objtransport.sansio.framing import encode_data
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.session import NativeSession

from .test_reliability import Server, client, deliver, wire


def _pair() -> tuple[NativeSession, NativeSession]:
    c, s = client(ResumeState(b"c" * 16)), Server().session()
    deliver(c, s)
    deliver(s, c)
    assert c.acks and s.acks
    wire(s)  # nothing left over from the handshake on either receiver
    return c, s


def _through_buffer(s: NativeSession, frame: bytes, now: float) -> list[bytes]:
    """``frame`` in as many reads as the session's buffers ask (one, for a frame that fits:
    the lone path)."""
    out: list[bytes] = []
    while frame:
        buf = s.get_buffer(len(frame))
        n = min(len(buf), len(frame))
        buf[:n] = frame[:n]
        frame = frame[n:]
        out += [bytes(as_message(m, 0, "tcp", None).data) for m in s.buffer_updated(n, now)]
    return out


def _state(s: NativeSession) -> tuple[object, ...]:
    rs = s.rs
    state = (s.messages_received, rs.floor, rs.ack_sent, s.next_deadline(),
             s.timer_changed, s.scheduler.pending_bytes)
    s.timer_changed = False
    return state


steps = st.lists(st.tuples(st.sampled_from([1, 64, 1000, 60_000, 200_000]),
                           st.sampled_from([0.0, 0.0005, 0.002, 0.004, 0.006, 0.02]),
                           st.booleans()), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_a_lone_read_schedules_acks_as_the_general_path(seq: list[tuple[int, float, bool]]
                                                        ) -> None:
    _, lone = _pair()
    _, general = _pair()
    decoder = type(lone.decoder)
    read_lone = decoder.read_lone
    taken: list[bool] = []

    def spy(self: object, nbytes: int) -> object:  # which way each read of `lone` went
        out = read_lone(self, nbytes)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    now = 0.0
    for i, (size, dt, timer) in enumerate(seq, 1):
        now += dt
        frame = encode_data(bytes([i % 251]) * size, i, 0, 2)
        del taken[:]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(decoder, "read_lone", spy)
            got = _through_buffer(lone, frame, now)
        if size <= 1000:  # a small frame in one read: the lone path, not the general one
            assert taken == [True]
        ref = [bytes(as_message(m, 0, "tcp", None).data)
               for m in general.receive_data(frame, now)]
        assert got == ref == [frame[-size:]]
        assert _state(lone) == _state(general)
        if timer:  # the delayed ACK's timer fires (or not yet) on both
            lone.handle_timer(now)
            general.handle_timer(now)
            assert _state(lone) == _state(general)
        assert wire(lone, now) == wire(general, now)  # the same ACKs, at the same reads
