"""The inbox's three ways to take a message agree (issue 17: copies drift apart).

``get_nowait(conn_id)`` (``receive(conn)``), ``get_nowait()`` (any connection's, in turn)
and ``get_many_nowait(conn_id, 1)`` (the batch path, ``_take``) are separate code: from
the same queue they must give the same messages (payload, connection, transport, peer,
identity) and leave the same state (messages and bytes queued, reading paused or not),
whatever was queued (plain payloads and whole messages, of any size) and whenever the
connection goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.inbox import Inbox
from objtransport.sansio.events import Message, Received, as_message


@dataclass
class _Conn:
    transport_name: str = "tcp"
    peer_address: tuple[str, int] = ("127.0.0.1", 4000)
    identity: str | None = "CN=peer"


def _fields(m: Message | None) -> tuple[object, ...] | None:
    if m is None:
        return None
    return (bytes(m.data), m.conn_id, m.transport, m.peer, m.identity, m.stream,
            m.priority)


class _Twin:
    def __init__(self) -> None:
        self.inbox = Inbox(max_messages=6, max_bytes=3000)
        self.flow: list[bool] = []
        self.put = self.inbox.register(5, self.flow.append, _Conn())
        self.gone = False
        self.rest: list[tuple[object, ...] | None] = []

    def state(self) -> tuple[object, ...]:
        q = self.put.__self__  # the connection's queue (register returns its put)
        return (self.inbox.size, tuple(self.flow), q.nbytes, q.paused, len(q.items),
                tuple(self.inbox.ready_deque))


ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.lists(st.tuples(st.integers(0, 900), st.booleans()),
                                       min_size=1, max_size=8)),
    st.tuples(st.just("take"), st.integers(1, 5)),
    st.tuples(st.just("gone"), st.none())), max_size=30)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_every_way_to_take_a_message_gives_the_same(seq: list[tuple[str, object]]) -> None:
    twins = [_Twin(), _Twin(), _Twin()]
    takes = [lambda ib: ib.get_nowait(5), lambda ib: ib.get_nowait(),
             lambda ib: next(iter(ib.get_many_nowait(5, 1)), None)]
    for i, (op, arg) in enumerate(seq):
        if op == "put":
            assert isinstance(arg, list)
            for t in twins:  # each its own Message objects (taking one sets its identity)
                msgs: list[Received] = [
                    as_message(bytes([i % 256]) * n, 5, "tcp", None) if whole
                    else bytes([i % 256]) * n for n, whole in arg]
                if t.gone:  # what a connection that left still had (no conn: no peer)
                    t.inbox.put_many(5, msgs, sum(n for n, _ in arg))
                else:
                    t.put(msgs, sum(n for n, _ in arg))
        elif op == "gone":
            for t in twins:
                t.inbox.unregister(5)
                t.gone = True
        else:
            assert isinstance(arg, int)
            for _ in range(arg):
                got = [_fields(take(t.inbox)) for take, t in zip(takes, twins, strict=True)]
                assert got[0] == got[1] == got[2]
        assert twins[0].state() == twins[1].state() == twins[2].state()
    for t in twins:  # what is left comes out the same way too
        while (m := t.inbox.get_nowait()) is not None:
            t.rest.append(_fields(m))
        assert t.inbox.size == 0
    assert twins[0].rest == twins[1].rest == twins[2].rest
