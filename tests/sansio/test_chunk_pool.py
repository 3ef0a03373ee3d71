"""Write chunks and the resend store's pool of chunk buffers, without sockets: queue() asks
for a write at each ``WRITE_CHUNK`` of queued bytes; a large written chunk is kept as a
copy in a pool buffer, which an ACK gives back for the next chunk; a resume never reuses a
buffer whose frames it queues again; an idle connection keeps no spare buffers."""

from __future__ import annotations

from objtransport.sansio.chunk_pool import (
    CHUNK_POOL_MIN,
    CHUNK_POOL_SIZE,
    WRITE_CHUNK,
    ChunkPool,
)
from objtransport.sansio.events import as_message
from objtransport.sansio.reliability import ResumeState
from objtransport.sansio.session import NativeSession

from .test_reliability import Server, client

KIB = b"k" * 1024


def chunks(s: NativeSession) -> list[bytes]:
    return [bytes(c) for c in s.data_to_send(0.0)]


def deliver(a: NativeSession, b: NativeSession, data: bytes | None = None) -> list[bytes]:
    raw = b"".join(chunks(a)) if data is None else data
    return [as_message(m, 0, "tcp", None).data for m in b.receive_data(raw, 0.0)]


def connect(rs: ResumeState, server: Server) -> tuple[NativeSession, NativeSession]:
    c, s = client(rs), server.session()
    deliver(c, s)
    deliver(s, c)
    assert c.is_open and s.is_open and c.acks and s.acks
    return c, s


def numbered(i: int) -> bytes:
    return b"%08d" % i + KIB[8:]


def fill_one_chunk(c: NativeSession, start: int = 0) -> int:
    """Queue numbered 1 KiB messages until queue() asks for a write; return the next number."""
    full: list[int] = []
    c.on_full = lambda: full.append(1)
    for i in range(start, start + 2 * WRITE_CHUNK // len(KIB)):
        c.queue(numbered(i))
        if full:
            return i + 1
    raise AssertionError("queue() never asked for a write")


def settle(c: NativeSession, s: NativeSession) -> list[bytes]:
    """Pump both ways, delayed ACKs included, until the sender has nothing queued (after a
    resume it writes a window at a time)."""
    got: list[bytes] = []
    now = 0.0
    for _ in range(1000):
        got += deliver(c, s)
        now += 0.01
        s.handle_timer(now)
        c.handle_timer(now)
        deliver(s, c)
        if not c.scheduler.pending_bytes:
            return got + deliver(c, s)
    raise AssertionError("the sender never drained")


def test_queue_asks_for_a_write_at_each_write_chunk() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    full: list[int] = []
    written: list[bytes] = []

    def write_now() -> None:  # what a stream link does: write what is queued, at once
        full.append(c.scheduler.pending_bytes)
        written.extend(chunks(c))

    c.on_full = write_now
    n = 3 * WRITE_CHUNK // len(KIB) + 10
    for i in range(n):
        c.queue(numbered(i))
    assert len(full) == 3
    assert all(WRITE_CHUNK < p <= WRITE_CHUNK + 1044 for p in full)
    written.extend(chunks(c))
    got = [as_message(m, 0, "tcp", None).data for m in s.receive_data(b"".join(written), 0.0)]
    assert got == [numbered(i) for i in range(n)]


def test_a_large_chunk_is_kept_as_a_copy_and_its_buffer_reused_after_the_ack() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    n = fill_one_chunk(c)
    out = c.data_to_send(0.0)  # (maybe an ACK of the handshake first)
    big = out[-1]
    assert isinstance(big, bytearray) and CHUNK_POOL_MIN <= len(big) <= CHUNK_POOL_SIZE
    sent = b"".join(bytes(x) for x in out)
    assert rs.pool is not None and len(rs.sent) == 1
    kept, buf = rs.sent[0][2], rs.sent[0][3]
    assert buf is not None and kept is not big
    big[:] = bytes(len(big))  # whoever holds the written chunk may reuse it: the copy stays
    kept_bytes = b"".join(bytes(x) for x in kept) if isinstance(kept, tuple) else bytes(kept)
    assert kept_bytes == sent
    assert [as_message(m, 0, "tcp", None).data for m in s.receive_data(sent, 0.0)] == [
        numbered(i) for i in range(n)]
    s.handle_timer(1.0)  # the delayed ACK ...
    deliver(s, c)  # ... frees the copy
    assert rs.unacked_bytes == 0 and not rs.sent and rs.pool.free == [buf]
    m = fill_one_chunk(c, n)
    second = bytes(c.data_to_send(0.0)[0])
    assert rs.sent[0][3] is buf and not rs.pool.free  # ... and its buffer takes the next
    assert [as_message(x, 0, "tcp", None).data for x in s.receive_data(second, 0.0)] == [
        numbered(i) for i in range(n, m)]


def test_a_resume_resends_kept_copies_and_never_reuses_their_buffers() -> None:
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    n = fill_one_chunk(c)
    c.data_to_send(0.0)  # written, lost with the socket
    assert rs.pool is not None
    old = rs.pool
    c2, s2 = client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)  # the resume: the lost chunk's frames are queued again
    assert rs.pool is None or rs.pool is not old
    got = settle(c2, s2)
    m = fill_one_chunk(c2, n)  # a large chunk again: a new pool's buffer, not the old one's
    got += settle(c2, s2)
    assert rs.pool is not None and rs.pool is not old
    assert got == [numbered(i) for i in range(m)]
    assert rs.resent == n


def test_an_idle_connection_keeps_no_spare_buffers() -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    fill_one_chunk(c)
    deliver(c, s)
    s.handle_timer(1.0)  # the delayed ACK
    deliver(s, c)
    assert rs.pool is not None and len(rs.pool.free) == 1 and rs.unacked_count == 0
    c.handle_timer(c.pinger.next_at)  # the keepalive PING's time: everything acknowledged
    assert rs.pool.free == []


def test_the_pool_keeps_at_most_its_spares() -> None:
    pool = ChunkPool(size=64, spares=2)
    copies = [pool.copy(bytearray(b"%d" % i * 8)) for i in range(3)]
    assert [bytes(c) for c, _ in copies] == [b"%d" % i * 8 for i in range(3)]
    for _, buf in copies:
        pool.give(buf)
    assert len(pool.free) == 2
    again, buf = pool.copy(bytearray(b"x" * 64))
    assert bytes(again) == b"x" * 64 and buf is copies[1][1] and len(pool.free) == 1
    pool.trim()
    assert pool.free == []


def test_a_session_that_ends_keeps_no_spare_buffers_only_its_unacked_copies() -> None:
    """A broken session waits (both sides keep it up to ``session_resume_timeout``, a
    listener up to ``max_kept_sessions`` of them) with no keepalive to trim its pool: its
    spare buffers go when it ends; the copies of what is unacknowledged stay for the
    resume, which then delivers everything once, in order."""
    rs = ResumeState(b"c" * 16)
    server = Server()
    c, s = connect(rs, server)
    n = fill_one_chunk(c)
    got = deliver(c, s)  # the first large chunk arrives ...
    m = fill_one_chunk(c, n)
    c.data_to_send(0.0)  # ... the second is written, lost with the socket
    s.handle_timer(1.0)  # the ACK of the first frees its copy: a spare buffer
    deliver(s, c)
    assert rs.pool is not None and len(rs.pool.free) == 1 and len(rs.sent) == 1
    c.connection_lost("reset by peer")
    assert rs.pool.free == [] and len(rs.sent) == 1  # the unacked copy is kept
    c2, s2 = client(rs), server.session()
    deliver(c2, s2)
    deliver(s2, c2)  # the resume
    got += settle(c2, s2)
    assert got == [numbered(i) for i in range(m)]


def test_a_chunk_the_transport_cannot_take_is_sealed_and_kept_in_the_pool() -> None:
    """``on_full`` of a link whose transport is full (it takes nothing): the link seals the
    chunk (what ``StreamLink`` does), so a sender that keeps queueing has its frames in
    chunks of about ``WRITE_CHUNK`` (each kept as a pool copy once written), not in one
    buffer growing to ``max_pending_bytes``; they leave in order, whole, and arrive once."""
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    sched = c.scheduler
    full: list[int] = []

    def transport_full() -> None:
        full.append(sched.pending_bytes)
        assert sched.pending_bytes > sched.full_at  # nothing taken since the last mark
        sched.seal_chunk()

    c.on_full = transport_full
    n = 3 * WRITE_CHUNK // len(KIB) + 100
    for i in range(n):
        c.queue(numbered(i))
    assert len(full) == 3  # once per write chunk, not once
    steps = [b - a for a, b in zip([0, *full[:-1]], full, strict=True)]  # since the last
    assert all(WRITE_CHUNK < x <= WRITE_CHUNK + 1044 for x in steps)
    assert sched.classes is not None and len(sched.classes[2].sealed) == 3
    written = []
    for _ in range(10):  # what the link writes once the transport has room, a flush each
        out = c.data_to_send(0.0, 256 * 1024)
        if not out:
            break
        written.append(b"".join(bytes(x) for x in out))
    assert sched.pending_bytes == 0 and sched.classes is None  # the sealed list is let go
    sizes = sorted(len(w) for w in written)
    assert len(sizes) == 4 and sizes[0] < CHUNK_POOL_MIN
    assert all(WRITE_CHUNK < x <= CHUNK_POOL_SIZE for x in sizes[1:])
    assert rs.pool is not None and sum(buf is not None for *_, buf in rs.sent) == 3
    got = [as_message(m, 0, "tcp", None).data for m in s.receive_data(b"".join(written), 0.0)]
    assert got == [numbered(i) for i in range(n)]


def test_a_write_moves_the_mark_of_the_next_write_chunk() -> None:
    rs = ResumeState(b"c" * 16)
    c, _ = connect(rs, Server())
    sched = c.scheduler
    assert sched.full_at == WRITE_CHUNK
    for i in range(10):
        c.queue(numbered(i))
    c.data_to_send(0.0)
    assert sched.pending_bytes == 0 and sched.full_at == WRITE_CHUNK
    sched.push_frame(2, b"x" * 100)
    sched.seal_chunk()  # a small buffer is not sealed; the mark moves all the same
    assert sched.classes is None and sched.full_at == 100 + WRITE_CHUNK
    sched.pop(1 << 20)
    assert sched.full_at == WRITE_CHUNK
