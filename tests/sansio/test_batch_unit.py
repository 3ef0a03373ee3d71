"""The :class:`~objtransport.Batch` object on its own (no socket: pure)."""

from __future__ import annotations

from objtransport import Batch, Message


def test_a_plain_batch_builds_messages_only_when_asked() -> None:
    b = Batch(3, "tcp", ("127.0.0.1", 9), "alice", [b"a", b"bc"], 3)
    assert b.plain and len(b) == 2 and list(b) == [b"a", b"bc"] and b.requests == []
    msgs = b.messages
    assert msgs is b.messages  # built once
    assert [(m.data, m.conn_id, m.transport, m.peer, m.identity) for m in msgs] == [
        (b"a", 3, "tcp", ("127.0.0.1", 9), "alice"), (b"bc", 3, "tcp", ("127.0.0.1", 9),
                                                      "alice")]
    assert msgs[0] == Message(b"a", 3, "tcp", ("127.0.0.1", 9))
    assert "messages=2" in repr(b) and "plain=True" in repr(b)


def test_a_mixed_batch_keeps_full_messages_in_their_place() -> None:
    req = Message(b"q", 3, "tcp", None, request_id=7)
    text = Message(b"t", 3, "tcp", None, text=True, flags=2)
    b = Batch(3, "tcp", None, None, [b"a", b"q", b"t"], 3, [b"a", req, text])
    assert not b.plain
    assert b.messages[1] is req and b.messages[2] is text and b.messages[0].data == b"a"
    assert b.requests == [req]
