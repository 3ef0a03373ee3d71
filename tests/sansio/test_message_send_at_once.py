"""``MessageSession.send_at_once``: a message a driver writes itself (raw gRPC on an idle
call) leaves the same counts as one queued with ``send_message`` and taken at once with
``messages_to_send``, and is refused the same way."""

from __future__ import annotations

import pytest

from objtransport.config import Options
from objtransport.exceptions import ConnectionNotReady, MessageTooLarge
from objtransport.sansio.message import MessageSession

#: (size, priority) of each message, sent one at a time on an idle session
SENDS = [(64, 2), (0, 2), (300, 1), (5000, 3), (17, 0), (64, 2)]


def _session(idle_limit: bool = False) -> MessageSession:
    return MessageSession(Options(max_message_size=8192), 1, "grpc", None, 0.0,
                          idle_limit=idle_limit)


def _figures(s: MessageSession) -> tuple[object, ...]:
    return (s.messages_sent, s.bytes_queued, s.bytes_sent, s.last_send,
            list(s.scheduler.sent_bytes), s.messages_by_priority(),
            s.scheduler.pending_bytes, s.next_deadline())


@pytest.mark.parametrize("idle_limit", [False, True])
def test_counts_match_a_queued_message_taken_at_once(idle_limit: bool) -> None:
    queued, direct = _session(idle_limit), _session(idle_limit)
    for i, (size, prio) in enumerate(SENDS):
        now = 1.0 + i
        queued.send_message(b"x" * size, 0, prio)
        (payload, text), = queued.messages_to_send(now)
        assert (len(payload), text) == (size, False)
        direct.send_at_once(size, prio, now)
        assert direct.timer_changed == queued.timer_changed
        queued.timer_changed = direct.timer_changed = False
        assert _figures(direct) == _figures(queued)
    assert direct.messages_sent == len(SENDS)
    assert direct.bytes_sent == sum(size for size, _ in SENDS)


def test_refused_like_send_message_and_nothing_counted() -> None:
    s = _session()
    before = _figures(s)
    with pytest.raises(MessageTooLarge):
        s.send_at_once(8193, 2, 1.0)
    assert _figures(s) == before
    s.close()
    with pytest.raises(ConnectionNotReady):
        s.send_at_once(10, 2, 2.0)
    with pytest.raises(ConnectionNotReady):
        s.send_message(b"x" * 10)
    assert _figures(s)[:6] == before[:6]
