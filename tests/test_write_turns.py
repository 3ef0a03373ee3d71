"""When a TCP link writes (drivers/stream_turn.py), over real loopback sockets: a message on an
idle link goes to the socket at once, the rest of the loop turn's wait for its end, a read
starts a new turn, and what a read's messages answer leaves when its delivery ends."""

from __future__ import annotations

import asyncio

import pytest

from objtransport import Message, NetworkTransport
from objtransport.drivers import stream_turn
from objtransport.drivers.pacing import Pacer
from objtransport.drivers.stream import StreamLink
from objtransport.sansio.chunk_pool import WRITE_CHUNK


@pytest.fixture
def one_turn_is_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """No message of a test's turn is taken for a new turn's however loaded the machine."""
    monkeypatch.setattr(stream_turn, "NEW_TURN_AFTER", 60.0)


async def _idle_pair(net: NetworkTransport, handler: object = None) -> int:
    """A connection to a listener that echoes (or runs ``handler``), after one round trip:
    nothing is queued and the last thing the client did was a read (a new turn)."""
    if handler is None:
        def echo(msg: Message) -> None:
            net.send_nowait(msg.conn_id, msg.data)
        handler = echo
    listener = await net.listen("127.0.0.1", 0, handler=handler)  # type: ignore[arg-type]
    conn = await net.connect("127.0.0.1", listener.port)
    await net.send_data(conn, b"hi")
    assert (await net.receive(conn, timeout=5)).data.startswith(b"hi")
    assert net.connection_info(conn).pending_bytes == 0
    return conn


@pytest.mark.usefixtures("one_turn_is_long")
async def test_a_lone_message_is_written_at_once_the_turns_next_at_its_end() -> None:
    async with NetworkTransport() as net:
        conn = await _idle_pair(net)
        await net.send_data(conn, b"a")
        assert net.connection_info(conn).pending_bytes == 0  # in the socket already
        await net.send_data(conn, b"b")
        await net.send_data(conn, b"c")
        assert net.connection_info(conn).pending_bytes == 2 * 21  # held for the turn's end
        await asyncio.sleep(0)  # the turn's end ran first: one write for both
        assert net.connection_info(conn).pending_bytes == 0
        got = [(await net.receive(conn, timeout=5)).data for _ in range(3)]
        assert got == [b"a", b"b", b"c"]  # echoed


@pytest.mark.usefixtures("one_turn_is_long")
async def test_after_a_read_the_next_message_is_written_at_once_again() -> None:
    async with NetworkTransport() as net:
        conn = await _idle_pair(net)
        for i in range(20):  # a request/response: one message per turn, each written at once
            await net.send_data(conn, b"%d" % i)
            assert net.connection_info(conn).pending_bytes == 0
            assert (await net.receive(conn, timeout=5)).data == b"%d" % i


async def test_a_reads_answers_leave_together_when_its_delivery_ends() -> None:
    async with NetworkTransport() as net:
        held: list[int] = []

        def answer(msg: Message) -> None:
            for k in range(3):
                net.send_nowait(msg.conn_id, msg.data + b"-%d" % k)
            # queued, not written: the end of the read writes them (with the read's others)
            held.append(net.connection_info(msg.conn_id).pending_bytes)

        conn = await _idle_pair(net, answer)
        for _ in range(2):  # the rest of the first round trip's answers
            assert (await net.receive(conn, timeout=5)).data.startswith(b"hi-")
        held.clear()
        await net.send_many(conn, [b"x", b"y"])
        got = [(await net.receive(conn, timeout=5)).data for _ in range(6)]
        assert got == [b"x-0", b"x-1", b"x-2", b"y-0", b"y-1", b"y-2"]
        assert held and all(n > 0 for n in held)
        assert held[-1] >= 3 * 23


async def test_a_turn_of_megabytes_leaves_in_write_chunks_intact_and_acknowledged() -> None:
    """A sender that queues past ``WRITE_CHUNK`` without yielding has the chunk written
    at once (sansio/chunk_pool.py); with ACKs each large chunk is kept as a pool copy and
    its buffer reused after the ACK: every message arrives once, in order, and nothing is
    left unacknowledged."""
    n = 4 * WRITE_CHUNK // 1024
    got: list[bytes] = []
    done = asyncio.Event()

    def on_message(msg: Message) -> None:
        got.append(msg.data)
        if len(got) == 2 * n:
            done.set()

    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0, handler=on_message)
        conn = await net.connect("127.0.0.1", listener.port)
        for burst in range(2):  # the second reuses the first's pool buffers
            for i in range(burst * n, (burst + 1) * n):
                await net.send_data(conn, b"%08d" % i + bytes(1016))
            await net.flush(conn, timeout=10)  # returns once the peer acknowledged all
            assert net.connection_info(conn).unacked_messages == 0
        await asyncio.wait_for(done.wait(), 10)
        assert got == [b"%08d" % i + bytes(1016) for i in range(2 * n)]


async def test_a_burst_that_fills_the_socket_leaves_in_write_chunks_intact() -> None:
    """A sender that queues 16 MiB without yielding, its peer on the same loop (so it
    reads nothing meanwhile): the socket fills, later write chunks find the transport full
    and are sealed as they are (``StreamLink._chunk_full``), and leave once the peer reads:
    every message arrives once, in order, and is acknowledged."""
    n = 16 * WRITE_CHUNK // 1024
    got: list[bytes] = []
    done = asyncio.Event()

    def on_message(msg: Message) -> None:
        got.append(msg.data)
        if len(got) == n:
            done.set()

    async with NetworkTransport(max_pending_bytes=64 * WRITE_CHUNK,
                                max_unacked_bytes=64 * WRITE_CHUNK) as net:
        listener = await net.listen("127.0.0.1", 0, handler=on_message)
        conn = await net.connect("127.0.0.1", listener.port)
        for i in range(n):  # no wait: max_pending_bytes is above the burst
            await net.send_data(conn, b"%08d" % i + bytes(1016))
        assert net.connection_info(conn).pending_bytes > 2 * WRITE_CHUNK  # the socket is full
        await net.flush(conn, timeout=20)
        await asyncio.wait_for(done.wait(), 20)
        assert got == [b"%08d" % i + bytes(1016) for i in range(n)]
        assert net.connection_info(conn).unacked_messages == 0


async def test_the_inline_writes_flag_follows_what_sends_a_write_the_general_way() -> None:
    """``_wake`` writes a lone message itself only while ``slow_write`` is False: it is set
    by each thing that needs ``_flush``'s work (a drain or flush waiter, a read pause: the
    overload guard's among them, closing) and cleared by the ``_flush`` that finds none.
    The flag through the link's read-only property: both ways write the same bytes at the
    same moment, so only what ``_flush`` does besides (wake waiters) tells them apart, and
    a waiter always has a ``_flush`` coming for it on a real socket (see the next test)."""
    async with NetworkTransport() as net:
        conn = await _idle_pair(net)
        link = _link(net, conn)
        assert link.slow_write is False  # the round trip's flushes found nothing to do
        link.pause_reading("consumer")
        assert link.slow_write is True
        link.resume_reading("consumer")
        await net.send_data(conn, b"after a pause")  # _flush's way, which clears it
        assert link.slow_write is False
        assert (await net.receive(conn, timeout=5)).data == b"after a pause"
        link.pause_writing()  # as the transport does when the socket is full
        await net.send_data(conn, b"held")  # queued, and a flush waiter waits
        waiter = asyncio.ensure_future(link.wait_flushed(5.0))
        await asyncio.sleep(0)
        assert link.slow_write is True and link.pending_bytes > 0
        link.resume_writing()  # _flush writes it and wakes the waiter
        await asyncio.wait_for(waiter, 5)
        assert link.slow_write is False
        assert (await net.receive(conn, timeout=5)).data == b"held"
        link.close()
        assert link.slow_write is True


async def test_a_sender_that_starts_waiting_for_room_sends_writes_the_general_way() -> None:
    """``wait_writable`` sets the flag as its sender starts waiting (drivers/flow.py), not
    only the next ``_flush``'s end: from then on no write may be ``_wake``'s inline one,
    which wakes nobody, so the write that makes room is ``_flush``'s, which wakes the
    sender. A message above ``max_pending_bytes`` while writes are paused (as by the
    transport): the sender waits, and the flag is set before any ``_flush`` ran (the turn's
    end is only queued); once writes resume the sender is woken and its message arrives."""
    async with NetworkTransport(max_pending_bytes=4096) as net:
        conn = await _idle_pair(net)
        link = _link(net, conn)
        assert link.slow_write is False
        link.pause_writing()
        sender = asyncio.ensure_future(net.send_data(conn, b"w" * 8192, timeout=5))
        await asyncio.sleep(0)  # the sender's step: queued, waiting; the turn's end queued
        assert not sender.done() and link.pending_bytes > 4096
        assert link.slow_write is True
        link.resume_writing()
        await asyncio.wait_for(sender, 5)
        assert (await net.receive(conn, timeout=5)).data == b"w" * 8192


async def test_a_lone_message_after_a_pause_is_written_inline_and_still_sampled() -> None:
    """The pacer's rate sample, due on a link idle for more than ``SAMPLE_EVERY``, is
    taken by the inline write (no ``_flush``): the meter sees each lone message."""
    async with NetworkTransport() as net:
        conn = await _idle_pair(net)
        rates = []
        for _ in range(3):
            p = _pacer(net, conn)
            p.sample_at = 0.0  # as after a pause: the sample is due
            before = p.total
            await net.send_data(conn, b"z" * 1000)
            assert net.connection_info(conn).pending_bytes == 0  # written at once
            # header + payload, and the echo's delayed ACK (28 bytes) when it came due
            # meanwhile (a loaded machine: 4 ms between the read and this send) and rode along
            assert p.total - before in (1000 + 20, 1000 + 20 + 28)
            assert p.sample_at > 0.0  # the sample was taken
            assert (await net.receive(conn, timeout=5)).data == b"z" * 1000
            rates.append(net.connection_info(conn).send_rate)
        assert rates[-1] > 0  # two samples or more: a rate


def _link(net: NetworkTransport, conn: int) -> StreamLink:
    """The connection's live link (the service shows no link of its own accord)."""
    link = net.connection(conn).link  # the link, to drive and observe it
    assert isinstance(link, StreamLink)
    return link


def _pacer(net: NetworkTransport, conn: int) -> Pacer:
    return _link(net, conn).pacer
