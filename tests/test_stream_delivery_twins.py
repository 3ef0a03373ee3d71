"""A TCP link's read against the general delivery step (issue 17: copies drift apart).

``StreamLink.buffer_updated`` repeats, inline, ``FlowControl._delivered`` (what every other
link does once received bytes went to the session: hand over the messages, handle the
session's events, re-arm the timer, have its answers sent); only *when* the answers are
written differs (at the read's end, not at the loop turn's end). Two links on real loopback
sockets, with sessions in the same state, are fed the same frames in the same reads: one
through ``buffer_updated``, the other through the session's ``buffer_updated`` and
``_delivered``. After each step both must have delivered the same messages, handled the
same events, re-armed (or not) their timer, written the same bytes (ACKs, PONGs), paused
reading (an overloaded flow) or not, and left the session in the same state, whatever the
sizes, counts and read boundaries, with the transport paused or not.

The feed models what a transport does: while the link's reading is paused (the overload
guard: writing paused and the backlog mostly our answers), the bytes wait in the socket and
are read once reading resumes; the peer's GOAWAY comes on the same terms. And no deadline
falls due on the wall clock during a run: the two twins read at different moments (one
after the other, a step of many small reads takes long under load), so a timer (the guard's
``timeout``, keepalive, a frame's progress deadline) would fire on one twin and not yet on
the other. An earlier draft did neither and saw the twins end differently after a long
overloaded step: the first twin's guard had dropped the peer after ``timeout`` (5 s), sending
its final ACK and GOAWAY OVERLOADED; the second's had not yet (issue 17's follow-up).
"""

from __future__ import annotations

import asyncio
from time import monotonic

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.drivers.stream import StreamLink
from objtransport.sansio import handshake, native_receive
from objtransport.sansio.events import Event, Received, as_message
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.session import NativeSession

from .conftest import _loop_factories

#: no deadline within a run (see above): the guard's timeout, keepalive, a frame's progress
OPTS = Options(timeout=3600.0, keepalive_interval=3600.0, pong_timeout=3600.0,
               reassembly_timeout=3600.0)
#: ACKs sent at once every few messages (the answers a read queues); never on a timer
#: during a test (a delayed ACK would fire on one link and not yet on the other)
EVERY, DELAY = 3, 3600.0


class _Peer(asyncio.Protocol):
    """The socket's other end: keeps what the link wrote."""

    def __init__(self) -> None:
        self.got = bytearray()
        self.want = 0
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.got += data
        if len(self.got) >= self.want:
            self.arrived.set()

    async def received(self, n: int) -> None:
        """Wait until ``n`` bytes arrived in all."""
        if len(self.got) < n:
            self.want = n
            self.arrived.clear()
            await self.arrived.wait()


class _Twin:
    """A link whose session is open with a sans-I/O peer (``p``); ``fast``: reads go through
    ``StreamLink.buffer_updated``, else the session's and ``_delivered``."""

    def __init__(self, fast: bool, t0: float) -> None:
        self.fast = fast
        rs = ResumeState(b"c" * 16)
        kept: dict[bytes, ResumeState] = {}

        def lookup(sid: bytes) -> tuple[ResumeState, bool]:
            found = sid in kept
            kept.setdefault(sid, ResumeState(sid))
            return kept[sid], found

        self.c = NativeSession(OPTS, 1, "tcp", None, t0, rs.session_id, resume=rs,
                               role="client")
        self.p = NativeSession(OPTS, 2, "tcp", None, t0, b"s" * 16, role="server",
                               resume_lookup=lookup)
        self.p.receive_data(_wire(self.c, t0), t0)
        self.c.receive_data(_wire(self.p, t0), t0)
        _wire(self.p, t0)
        assert self.c.is_open and self.c.acks
        self.delivered: list[bytes] = []
        self.events: list[str] = []
        self.peer = _Peer()
        self.link: StreamLink
        #: what the peer sent that the link has not read yet (its reading was paused), and
        #: the size of the reads it comes in
        self.unread: list[tuple[bytes, int]] = []

    def protocol(self) -> _Peer:
        return self.peer

    async def connect(self, port: int, max_pending: int) -> None:
        def on_messages(msgs: list[Received], received: int = -1, /) -> None:
            self.delivered += [bytes(as_message(m, 0, "tcp", None).data) for m in msgs]
            # the byte count handed over (the inline read) is the session's own
            assert received in (-1, self.c.delivered_bytes)

        def on_event(link: StreamLink, ev: Event) -> None:
            self.events.append(type(ev).__name__)

        self.link = StreamLink(self.c, on_messages, on_event, max_pending)
        await asyncio.get_running_loop().create_connection(lambda: self.link, "127.0.0.1",
                                                           port)

    def read(self, data: bytes, size: int) -> None:
        """The peer sent ``data``: it is read in reads of at most ``size`` bytes (fewer when
        the session's buffer is smaller: a large message's body), while the link reads."""
        self.unread.append((data, size))
        self.pump()

    def pump(self) -> None:
        """Read what waits, as a transport does: only while reading is not paused."""
        link, c = self.link, self.c
        while self.unread and not link._read_pauses:
            data, size = self.unread.pop(0)
            while data and not link._read_pauses:
                buf = memoryview(link.get_buffer(min(size, len(data))))
                n = min(len(buf), len(data), size)
                buf[:n] = data[:n]
                data = data[n:]
                if self.fast:
                    link.buffer_updated(n)
                else:
                    link._delivered(c.buffer_updated(n, monotonic()))
            if data:
                self.unread.insert(0, (data, size))

    def state(self) -> tuple[object, ...]:
        c, link, rs = self.c, self.link, self.c.rs
        return (self.delivered, self.events, c.messages_received, c.bytes_received,
                rs.floor, rs.ack_sent, c.scheduler.pending_bytes, c.has_final, c.open,
                c._ack_due is None, c.timer_changed, link._timer_at == c.next_deadline(),
                link.pacer.total, link.write_paused, link._read_pauses,
                link._overload.paused, link.closed.done(), sum(len(d) for d, _ in self.unread))


def _wire(s: NativeSession, now: float) -> bytes:
    return b"".join(bytes(c) for c in s.data_to_send(now))


_SIZES = [0, 1, 100, 5000, 70_000, 300_000]  # 300 000: fragmented (256 KiB fragments)
_READS = [1, 7, 100, 4096, 65_536, 1 << 30]
#: at most this many reads per step: tiny reads of megabytes would take seconds
MAX_READS = 256

ops = st.lists(st.one_of(
    # the peer sends messages (size, count), read in pieces of at most a size
    st.tuples(st.just("data"), st.sampled_from(_SIZES), st.integers(1, 12),
              st.sampled_from(_READS)),
    # the peer pings (the answer is a PONG), in the same read as its next messages
    st.tuples(st.just("ping"), st.sampled_from([0, 64]), st.integers(0, 3),
              st.sampled_from(_READS)),
    # the transport says its buffer is full, or drained again
    st.tuples(st.just("pause"), st.none(), st.none(), st.none()),
    st.tuples(st.just("resume"), st.none(), st.none(), st.none()),
), min_size=1, max_size=14)


async def _settle(twins: list[_Twin]) -> None:
    """Let the loop run what the step armed (the general path's turn end) and the peers
    receive all that was written."""
    async with asyncio.timeout(10):
        for _ in range(3):
            await asyncio.sleep(0)
        for t in twins:
            await t.peer.received(t.link.pacer.total)


async def _run(seq: list[tuple[str, object, object, object]], max_pending: int,
               close: bool) -> None:
    loop = asyncio.get_running_loop()
    t0 = monotonic()
    twins = [_Twin(True, t0), _Twin(False, t0)]
    servers = [await loop.create_server(t.protocol, "127.0.0.1", 0) for t in twins]
    try:
        for t, server in zip(twins, servers, strict=True):
            await t.connect(server.sockets[0].getsockname()[1], max_pending)
        await _settle(twins)
        assert twins[0].state() == twins[1].state()
        now = t0
        for i, (op, a, b, r) in enumerate(seq):
            now += 0.001
            if op in ("data", "ping"):
                assert isinstance(a, int) and isinstance(b, int) and isinstance(r, int)
                frames = []
                for t in twins:
                    if op == "ping":
                        t.p._send_ping(now)
                    for k in range(b):
                        t.p.send_message(bytes([(i + k) % 251]) * (a + k))
                    frames.append(_wire(t.p, now))
                assert frames[0] == frames[1]
                size = max(r, -(-len(frames[0]) // MAX_READS))
                for t in twins:
                    t.read(frames[0], size)
            elif op == "pause":
                for t in twins:
                    t.link.pause_writing()
            else:
                for t in twins:
                    t.link.resume_writing()
                await _settle(twins)  # what the answers' write and the resumed read bring
                for t in twins:
                    t.pump()
            await _settle(twins)
            assert twins[0].state() == twins[1].state()
            assert twins[0].peer.got == twins[1].peer.got  # the same answers written
        # the peer goes: a few last messages and its GOAWAY in one read (once it reads what
        # we wrote: a paused link reads again); the link ends the same way
        if close:
            for t in twins:
                t.link.resume_writing()
            await _settle(twins)
            for t in twins:
                t.pump()
            await _settle(twins)
            assert twins[0].state() == twins[1].state()
            assert not twins[0].link._read_pauses  # all written: the guard let go
            frames = []
            for t in twins:
                for k in range(len(seq) % 3):
                    t.p.send_message(bytes([k]) * 100)
                t.p.close()
                frames.append(_wire(t.p, now))
            assert frames[0] == frames[1]
            for t in twins:
                t.read(frames[0], 1 << 30)
            await _settle(twins)
            assert twins[0].link.closed.done() and twins[1].link.closed.done()
            results = [t.link.closed.result() for t in twins]
            assert results[0].code == results[1].code and results[0].reason
            assert twins[0].state() == twins[1].state()
            assert twins[0].peer.got == twins[1].peer.got
    finally:
        for t in twins:
            if getattr(t, "link", None) is not None and t.link.transport is not None:
                t.link.transport.abort()
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
def answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (handshake, native_receive):
        monkeypatch.setattr(module, "ACK_EVERY", EVERY)
    monkeypatch.setattr(handshake, "ACK_DELAY", DELAY)


@pytest.mark.usefixtures("answers_at_once")
@pytest.mark.parametrize("loop_name", sorted(_loop_factories()))
@example(seq=[("pause", None, None, None), ("data", 300_000, 2, 65_536), ("data", 100, 10, 7),
               ("ping", 64, 2, 100), ("resume", None, None, None)], max_pending=40, close=True)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops, st.sampled_from([40, 1 << 20]), st.booleans())
def test_a_read_delivers_as_the_general_step(
        loop_name: str, seq: list[tuple[str, object, object, object]], max_pending: int,
        close: bool) -> None:
    with asyncio.Runner(loop_factory=_loop_factories()[loop_name]) as runner:
        runner.run(_run(seq, max_pending, close))
