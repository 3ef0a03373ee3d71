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


class _Conn:
    transport_name = "tcp"
    peer_address = ("127.0.0.1", 1)
    identity = None


def test_the_inbox_gives_many_in_turn_and_resumes_reading_at_half() -> None:
    from objtransport.inbox import Inbox

    flow: list[bool] = []
    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    inbox.register(1, flow.append, _Conn())
    inbox.register(2, None, _Conn())
    inbox.put_many(1, [b"a1", b"a2", b"a3", b"a4", b"a5"], 10)  # over 4: pause
    inbox.put_many(2, [b"b1", Message(b"b2", 2, "tcp", None, stream=3)], 4)
    assert flow == [True]
    first = inbox.get_many_nowait(None, 3)  # connection 1 first, at most 3
    assert [(m.conn_id, m.data) for m in first] == [(1, b"a1"), (1, b"a2"), (1, b"a3")]
    assert flow == [True, False]  # 2 left of 5: at most half of 4
    rest = inbox.get_many_nowait(None, 10)  # then connection 2, then 1 again
    assert [(m.conn_id, m.data) for m in rest] == [(2, b"b1"), (2, b"b2"), (1, b"a4"),
                                                  (1, b"a5")]
    assert rest[1].stream == 3 and rest[0].transport == "tcp" and inbox.size == 0
    assert inbox.get_many_nowait(None, 10) == [] and inbox.get_many_nowait(2, 10) == []


def test_a_message_queued_after_its_connection_left_is_still_taken() -> None:
    """What still comes once a connection is detached goes to ``put_many`` (a queue with no
    connection behind it): ``get_nowait`` takes it, as ``get_many_nowait`` does, instead
    of failing on the missing connection."""
    from objtransport.inbox import Inbox

    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    inbox.register(7, None, _Conn())
    inbox.unregister(7)  # gone, its queue empty: forgotten
    inbox.put_many(7, [b"late", b"later"], 9)
    first = inbox.get_nowait(7)
    assert first is not None and (first.conn_id, first.data, first.transport) == (7, b"late",
                                                                                 "")
    second = inbox.get_nowait()
    assert second is not None and (second.conn_id, second.data) == (7, b"later")
    assert inbox.size == 0 and inbox.get_nowait() is None


def test_what_register_returns_queues_while_registered_even_without_flow_control() -> None:
    """``register`` returns the queue's ``put`` (a connection's ``deliver``): the queue
    must stay while the connection is registered, also when it has no flow control and
    was emptied, or later messages would go to a queue nobody reads."""
    from objtransport.inbox import Inbox

    inbox = Inbox(max_messages=4, max_bytes=1 << 20)
    put = inbox.register(3, None, _Conn())
    for data in (b"one", b"two"):
        put([data], len(data))
        msg = inbox.get_nowait(3)
        assert msg is not None and msg.data == data
    put([b"three"], 5)
    assert [m.data for m in inbox.get_many_nowait(None, 10)] == [b"three"]
