"""The spares of the chunk pools of all the sessions of a service are bounded together
(``SpareBudget``, ``max_spare_chunk_bytes``): past the bound a buffer given back is freed,
not kept; what a pool lets go (trimmed, or dropped with its state) leaves the budget."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.chunk_pool import CHUNK_POOL_SIZE, ChunkPool, SpareBudget
from objtransport.sansio.handshake import ACK_DELAY
from objtransport.sansio.reliability import ResumeState

from .test_chunk_pool import chunks, connect, deliver, fill_one_chunk
from .test_reliability import Server

SIZE = 64  # small buffers: the accounting is the same at any size

ops = st.lists(st.tuples(st.sampled_from(["copy", "give", "trim", "drop"]),
                         st.integers(0, 7)), max_size=80)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 6), ops)
def test_the_spares_of_all_pools_stay_within_the_budget(buffers: int,
                                                         seq: list[tuple[str, int]]) -> None:
    budget = SpareBudget(buffers * SIZE)
    pools = [ChunkPool(SIZE, spares=4, budget=budget) for _ in range(8)]
    held: list[list[memoryview]] = [[] for _ in pools]  # buffers in use, per pool
    for op, i in seq:
        if op == "copy":
            copy, buf = pools[i].copy(bytearray(b"x" * (1 + i)))
            assert bytes(copy) == b"x" * (1 + i)
            held[i].append(buf)
        elif op == "give" and held[i]:
            pools[i].give(held[i].pop())
        elif op == "trim":
            pools[i].trim()
        elif op == "drop":  # a state lets its pool go (a resume, a session gone)
            pools[i] = ChunkPool(SIZE, spares=4, budget=budget)
            held[i] = []
        spares = sum(len(p.free) for p in pools) * SIZE
        assert budget.held == spares <= budget.limit
        assert all(len(p.free) <= p.spares for p in pools)
    pools.clear()  # let go (no cycle holds a pool: they go at once, no gc.collect needed)
    assert budget.held == 0


def test_busy_sessions_keep_no_more_spares_than_the_budget() -> None:
    """Six sessions write large chunks with ACKs (each kept as a copy in a pool buffer);
    once acknowledged, each pool would keep all of its buffers as spares: together they
    keep no more than the budget allows (two buffers), and nothing once they are gone."""
    budget = SpareBudget(2 * CHUNK_POOL_SIZE)
    server = Server()
    pairs = [connect(ResumeState(bytes([n]) * 16, budget), server) for n in range(6)]
    for c, s in pairs:
        nxt = 0
        written = b""
        for _ in range(3):  # three chunks unacknowledged at once: three buffers in use
            nxt = fill_one_chunk(c, nxt)
            written += b"".join(chunks(c))
        assert c.rs.pool is not None and not c.rs.pool.free
        assert len(deliver(c, s, written)) == nxt
        s.handle_timer(ACK_DELAY)  # 3 MiB, below the step (a quarter of 16 MiB): delayed
        deliver(s, c)  # the ACK gives the buffers back
        assert not c.rs.unacked_count
    pools = [c.rs.pool for c, _ in pairs]
    spares = sum(len(p.free) for p in pools if p is not None) * CHUNK_POOL_SIZE
    assert 0 < spares == budget.held <= budget.limit
    for c, _ in pairs:
        c.rs.detach()  # the pools go with what held them
    del pools
    gc.collect()
    assert budget.held == 0


def test_without_a_budget_a_pool_keeps_its_own_spares() -> None:
    pool = ChunkPool(SIZE, spares=3)
    bufs = [pool.copy(bytearray(b"y"))[1] for _ in range(5)]
    for b in bufs:
        pool.give(b)
    assert len(pool.free) == 3
