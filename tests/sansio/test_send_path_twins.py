"""The send path's inline copies against the general methods (issue 17: copies drift apart).

``NativeSession.data_to_send`` repeats, inline, ``SessionCore.data_to_send`` (and
``Scheduler.pop``'s common case) when no GOAWAY is to be added, and the small-batch case of
``ResumeState.wrote`` (a written batch is kept until acknowledged). Two sessions in the same
state, one asked through the fast method and the other through the general ones it stands
for, must give the same chunks (bytes, boundaries, types) and end in the same state: the
same bytes queued and counted as sent, the same batches kept for a resend (the same copies
in pool buffers), the same unacknowledged figures after the peer's ACKs, the same resend
after a break. Sizes and counts go around ``WRITE_CHUNK`` and ``CHUNK_POOL_MIN`` (where a
written batch is copied into a pool buffer), with budgets strict or not, other priorities
and fragmented messages (the scheduler's general pop), the peer's data (a delayed ACK that
rides with the write) and the peer's ACKs in between.
"""

from __future__ import annotations

from zlib import crc32

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.chunk_pool import CHUNK_POOL_MIN, WRITE_CHUNK
from objtransport.sansio.core import SessionCore
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.scheduler import Chunk
from objtransport.sansio.session import ACK_PIGGYBACK, NativeSession

from .test_reliability import Server, client, deliver, wire


def _pair() -> tuple[NativeSession, NativeSession]:
    c, s = client(ResumeState(b"c" * 16)), Server().session()
    deliver(c, s)
    deliver(s, c)
    assert c.acks and s.acks
    wire(s)
    return c, s


def _general(s: NativeSession, now: float, budget: int, strict: bool) -> list[Chunk]:
    """What ``NativeSession.data_to_send`` stands for, the general way: the delayed ACK that
    rides with the write (the step both share), ``SessionCore.data_to_send``, then
    ``ResumeState.wrote`` for what was written."""
    due = s._ack_due
    if due is not None and now >= due - ACK_PIGGYBACK:
        s._send_ack()
    out = SessionCore.data_to_send(s, now, budget, strict)
    if out and s.acks:
        s.rs.wrote(out[0] if len(out) == 1 else tuple(out))
    return out


def _chunks(out: list[Chunk]) -> list[tuple[str, bytes]]:
    return [(type(c).__name__, bytes(c)) for c in out]


def _kept(rs: ResumeState, contents: bool = True) -> list[tuple[object, ...]]:
    """The batches kept for a resend: up to which message, the bytes numbered then, their
    bytes (chunk by chunk: length and CRC-32, read in place: ``_state`` runs after each
    write and the store holds megabytes; copying them out each time took the test past its
    timeout under a loaded ``make test``) and whether a pool buffer holds a copy."""
    out: list[tuple[object, ...]] = []
    for tag, queued, batch, buf in rs.sent:
        chunks = batch if type(batch) is tuple else (batch,)
        out.append((tag, queued, tuple((len(c), crc32(c) if contents else 0) for c in chunks),
                    buf is None))
    return out


def _state(s: NativeSession, contents: bool = True) -> tuple[object, ...]:
    """The sessions' figures and what is kept for a resend (``contents``: with each kept
    chunk's CRC, else its length only: for the check after every chunk of a write)."""
    rs, sched = s.rs, s.scheduler
    pool = rs.pool
    return (s.last_send, s.bytes_sent, s.bytes_queued, sched.pending_bytes,
            tuple(sched.sent_bytes), s.has_final, s.next_deadline(), s.timer_changed,
            rs.next_seq, rs.acked, rs.queued, rs.freed, rs.unacked_bytes, rs.unacked_count,
            _kept(rs, contents), None if pool is None else len(pool.free))


_SIZES = [0, 1, 64, 1000, 60_000, 200_000, 300_000,  # 300 000: over a fragment (general pop)
          CHUNK_POOL_MIN - 20, CHUNK_POOL_MIN + 1, WRITE_CHUNK - 20, WRITE_CHUNK + 1]
_BUDGETS = [1 << 62, 100, 5_000, 256 * 1024, CHUNK_POOL_MIN, WRITE_CHUNK]

ops = st.lists(st.one_of(
    # messages queued: a size, how many, a priority (other than 2: the scheduler's general
    # pop), through send_message or queue / queue_many
    st.tuples(st.just("send"), st.sampled_from(_SIZES), st.integers(1, 40),
              st.sampled_from([2, 2, 2, 0, 1, 3]), st.sampled_from(["one", "queue", "many"])),
    # a write: time passes, a budget, strict (throttled) or not
    st.tuples(st.just("write"), st.sampled_from([0.0, 0.0005, 0.002, 0.0045, 0.01]),
              st.sampled_from(_BUDGETS), st.booleans(), st.none()),
    # the peer reads what was written and acknowledges it (its delayed ACK due or not yet)
    st.tuples(st.just("ack"), st.sampled_from([0.0, 0.001, 0.006]), st.none(),
              st.none(), st.none()),
    # the peer sends a message: our ACK for it becomes due, and may ride with a write
    st.tuples(st.just("peer"), st.sampled_from([1, 100, 5000]), st.none(), st.none(),
              st.none()),
), min_size=1, max_size=25)


class _Side:
    """One client session and its peer; ``write`` asks the client one way or the other."""

    def __init__(self, fast: bool) -> None:
        self.c, self.s = _pair()
        self.fast = fast
        self.written = bytearray()  # appended per write (a bytes += was quadratic in MBs)

    def write(self, now: float, budget: int, strict: bool) -> list[tuple[str, bytes]]:
        c = self.c
        assert not c._window and not c._final  # the inline copy's case (no resume, no close)
        out = (c.data_to_send(now, budget, strict) if self.fast
               else _general(c, now, budget, strict))
        got = _chunks(out)
        for _, b in got:
            self.written += b
        return got

    def send(self, size: int, count: int, priority: int, how: str, i: int) -> None:
        datas = [bytes([(i + k) % 251]) * size for k in range(count)]
        c = self.c
        if how == "many" and priority == 2:
            c.queue_many(datas)
        else:
            for d in datas:
                if how == "one":
                    c.send_message(d, 0, priority)
                else:
                    c.queue(d, 0, priority)

    def ack(self, now: float) -> bytes:
        """The peer takes all written; returns its answer (fed to the client)."""
        deliver(self.c, self.s, bytes(self.written), now)
        self.written = bytearray()
        self.s.handle_timer(now)
        answer = wire(self.s, now)
        self.c.receive_data(answer, now)
        return answer


@settings(max_examples=80, deadline=None)
@given(ops)
def test_data_to_send_leaves_what_the_general_path_leaves(
        seq: list[tuple[str, object, object, object, object]]) -> None:
    fast, general = _Side(True), _Side(False)
    now = 0.0
    for i, (op, a, b, c, d) in enumerate(seq):
        if op == "send":
            assert isinstance(a, int) and isinstance(b, int) and isinstance(c, int)
            for side in (fast, general):
                side.send(a, b, c, str(d), i)
        elif op == "write":
            assert isinstance(a, float) and isinstance(b, int) and isinstance(c, bool)
            now += a
            # a writer loop: chunks until nothing is left (or the budget's first chunk)
            for _ in range(200):
                got = fast.write(now, b, c)
                assert got == general.write(now, b, c)
                # the kept chunks' contents: after the op (below); here their lengths
                assert _state(fast.c, False) == _state(general.c, False)
                if not got:
                    break
        elif op == "ack":
            assert isinstance(a, float)
            now += a
            assert fast.ack(now) == general.ack(now)
        else:
            assert isinstance(a, int)
            for side in (fast, general):
                side.s.send_message(bytes(a))
                side.c.receive_data(wire(side.s, now), now)
        assert _state(fast.c) == _state(general.c)
    # the end: all written, acknowledged by the peer; then a break: the same resend
    now += 1.0
    for side in (fast, general):
        while side.write(now, 1 << 62, False):
            pass
    assert _state(fast.c) == _state(general.c)
    assert fast.ack(now) == general.ack(now)
    assert _state(fast.c) == _state(general.c)
    peer = [side.s.rs.floor for side in (fast, general)]
    assert peer[0] == peer[1] == fast.c.rs.next_seq  # every message reached the peer


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_SIZES[:8]), st.integers(1, 30)), min_size=1,
                max_size=8))
def test_what_is_kept_for_a_resend_is_the_same(batches: list[tuple[int, int]]) -> None:
    """Written, never acknowledged: the messages a new connection would resend are the same
    (a batch kept as written, or as a copy in a pool buffer)."""
    sides = [_Side(True), _Side(False)]
    for i, (size, count) in enumerate(batches):
        for side in sides:
            side.send(size, count, 2, "queue", i)
            assert side.write(0.0, 1 << 62, False)
        assert _state(sides[0].c) == _state(sides[1].c)
    resend = [[(m[0], bytes(m[1])) for m in side.c.rs.unacked()] for side in sides]
    assert resend[0] == resend[1]
    assert len(resend[0]) == sum(n for _, n in batches)
