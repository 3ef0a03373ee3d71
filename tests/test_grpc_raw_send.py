"""Raw gRPC's send path for a message that finds the call idle: counted as sent and written
at once (from the sender's step, or by the reader right after the delivery when a handler
answers), the rest queued as usual. Order, text flags, counts and errors stay those of the
queue."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("grpc")

from objtransport import Message, MessageTooLarge, NetworkTransport  # noqa: E402

G = {"transport": "grpc"}


async def test_handler_answers_keep_order_kind_and_counts(
        net: NetworkTransport, server_net: NetworkTransport) -> None:
    """Each request gets two answers: the first (a high one every third time, a text one
    every fifth) is handed to the reader as an Envelope when the call is idle, the second
    is queued behind it. Everything arrives, in order per priority, with its text flag;
    the listener's counts are those of the messages it sent."""
    n = 120
    conns: list[int] = []

    def answer(msg: Message) -> None:
        i = int(msg.data[1:])
        conns.append(msg.conn_id)
        server_net.send_nowait(msg.conn_id, b"a%d" % i, text=i % 5 == 0,
                               priority="high" if i % 3 == 0 else "normal")
        server_net.send_nowait(msg.conn_id, b"b%d" % i)

    listener = await server_net.listen("127.0.0.1", 0, handler=answer, **G)
    conn = await net.connect("127.0.0.1", listener.port, framing="raw", **G)
    got: list[Message] = []
    for i in range(n):
        await net.send_data(conn, b"q%d" % i)
        if i % 4 == 0:  # a lone request on an idle call, then some back to back
            got.append(await net.receive(conn, timeout=5.0))
            got.append(await net.receive(conn, timeout=5.0))
    while len(got) < 2 * n:
        got.append(await net.receive(conn, timeout=5.0))
    want = [d for i in range(n) for d in (b"a%d" % i, b"b%d" % i)]
    data = [m.data for m in got]
    assert sorted(data) == sorted(want)
    # queued answers go by priority (a high one overtakes queued normal ones); each
    # priority keeps its order, and each request's first answer comes before its second
    high = [b"a%d" % i for i in range(n) if i % 3 == 0]
    assert [d for d in data if d in high] == high
    assert [d for d in data if d not in high] == [d for d in want if d not in high]
    assert all(data.index(b"a%d" % i) < data.index(b"b%d" % i) for i in range(n))
    assert all(m.text == (m.data.startswith(b"a") and int(m.data[1:]) % 5 == 0)
               for m in got)
    info = server_net.connection_info(conns[0])
    assert info.messages_sent == 2 * n
    assert info.bytes_sent == info.bytes_queued == sum(map(len, want))
    assert info.sent_messages_by_priority["high"] == len(high)
    assert info.sent_messages_by_priority["normal"] == 2 * n - len(high)
    assert info.pending_bytes == 0


async def test_lone_sends_count_and_refuse_like_queued_ones(net: NetworkTransport) -> None:
    """A lone message on an idle raw call: counted once sent; too large is refused before
    anything is counted or written, and the call goes on."""
    def echo(msg: Message) -> None:
        net.send_nowait(msg.conn_id, msg.data)

    listener = await net.listen("127.0.0.1", 0, handler=echo, max_message_size=4096, **G)
    conn = await net.connect("127.0.0.1", listener.port, framing="raw",
                             max_message_size=4096, **G)
    with pytest.raises(MessageTooLarge):
        await net.send_data(conn, b"x" * 4097)
    assert net.connection_info(conn).messages_sent == 0
    for i in range(20):
        await net.send_data(conn, b"m%d" % i)
        assert (await net.receive(conn, timeout=5.0)).data == b"m%d" % i
    info = net.connection_info(conn)
    assert (info.messages_sent, info.bytes_sent) == (20, sum(len(b"m%d" % i)
                                                            for i in range(20)))
    await asyncio.wait_for(net.flush(conn), 5.0)
