"""The process's heap (drivers/heap.py): ``settle_heap`` raises glibc's malloc thresholds
once per process. Only a driver triggers it (a stream link's first full write chunk), the
service can refuse it (``settle_heap=False``), and the sans-I/O core never does: a
``ChunkPool`` alone leaves the heap alone. Each probe runs in a fresh Python process (no
other test settled its heap first), with the ``MALLOC_*`` settings of the environment
stripped."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from objtransport import NetworkTransport
from objtransport.drivers.heap import HEAP_SETTLE, heap_settled, settle_heap
from objtransport.sansio.chunk_pool import WRITE_CHUNK


def _probe(env: dict[str, str], code: str, *args: str) -> list[str]:
    """Run ``code`` in a fresh Python process; its output's words."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=60, check=True, env=env).stdout.split()


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without malloc settings (a developer may have set the
    ``MALLOC_*`` thresholds PERFORMANCE.md benchmarks with), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(extra)
    return env


_SETTLE_PROBE = """
import resource
from objtransport.drivers import heap
before = heap.heap_settled()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
first = heap.settle_heap()
f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(f1 - f0, before, first, heap.settle_heap(), heap.heap_settled())
"""


def test_settle_heap_runs_once_without_touching_pages() -> None:
    """``settle_heap`` frees one ``HEAP_SETTLE`` block (glibc's dynamic thresholds then
    keep the write chunks' pages), never written (``calloc`` of a fresh mapping: no page
    faults for its 1,024 pages); later calls do nothing; ``heap_settled`` tells."""
    faults, before, first, again, after = _probe(_clean_env(), _SETTLE_PROBE)
    assert (before, first, again, after) == ("False", "True", "False", "True")
    assert int(faults) < HEAP_SETTLE // 4096 // 8  # not 1,024 faults: no page touched
    settle_heap()
    assert settle_heap() is False and heap_settled()  # once in this process too


#: four ~1.1 MiB chunks built and freed together, ten rounds (after two to warm up): the
#: page faults of the ten rounds. Unsettled, glibc's thresholds follow the largest block it
#: unmapped (~1.1 MiB, trim at 2.2 MiB): the 4.4 MiB freed at the heap's top is given back
#: each round and faulted in again (~1,070 faults a round); settled (trim at 8 MiB, above
#: what a 2 MiB block would set), reused. ``pool``: a sans-I/O ChunkPool is made and used
#: first (a chunk copied into it, the buffer given back), as the resend store does.
_CHUNKS_PROBE = """
import resource, sys
from objtransport.drivers import heap
from objtransport.sansio.chunk_pool import CHUNK_POOL_MIN, ChunkPool
if sys.argv[1] == "settle":
    heap.settle_heap()
elif sys.argv[1] == "pool":
    pool = ChunkPool()
    copy, buf = pool.copy(bytearray(CHUNK_POOL_MIN))
    pool.give(buf)
    pool.trim()
def round_():
    chunks = [bytearray(1_100_000) for _ in range(4)]
    del chunks
round_(); round_()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0, heap.heap_settled())
"""

#: one round's pages: what a round faults in when the heap gives its chunks back
_ROUND_PAGES = 4 * 1_100_000 // 4096

_only_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                 reason="glibc's dynamic mmap/trim thresholds only")


def _chunk_faults(mode: str, env: dict[str, str]) -> tuple[int, bool]:
    faults, settled = _probe(env, _CHUNKS_PROBE, mode)
    return int(faults), settled == "True"


def test_a_chunk_pool_alone_does_not_settle_the_heap() -> None:
    """The sans-I/O core has no process-wide side effect: a ``ChunkPool`` made and used
    (a chunk of the pool's sizes copied in) leaves the heap as it was."""
    faults, settled = _chunk_faults("pool", _clean_env())
    assert not settled
    if platform.libc_ver()[0] == "glibc":  # and so does glibc: the pages go back each round
        assert faults > 5 * _ROUND_PAGES, faults


@_only_glibc
def test_a_settled_heap_keeps_the_pages_of_freed_chunks() -> None:
    """What ``settle_heap`` is for, on glibc: chunks of the write path's size, freed
    together, keep their pages (no page faults in ten rounds) where the same process
    unsettled faults them in again each round. Page faults, not time: the same on a
    loaded machine."""
    env = _clean_env()
    settled, _ = _chunk_faults("settle", env)
    unsettled, _ = _chunk_faults("no", env)
    assert settled < _ROUND_PAGES // 4, settled
    assert unsettled > 5 * _ROUND_PAGES, unsettled  # the probe shows what it is meant to


@_only_glibc
def test_the_apps_own_malloc_thresholds_win_over_settle_heap() -> None:
    """An application that sets glibc's thresholds itself (``MALLOC_TRIM_THRESHOLD_`` in
    the environment, like ``mallopt``) turns the dynamic thresholds off: ``settle_heap``
    then changes nothing, the app's setting holds (here: trim above 128 KiB, so the
    chunks' pages are given back each round, as unsettled)."""
    env = _clean_env(MALLOC_TRIM_THRESHOLD_="131072")
    assert _chunk_faults("settle", env)[0] > 5 * _ROUND_PAGES


#: a TCP sender queues ``count`` x 1 KiB without yielding (``reliable``: with ACKs, so the
#: resend store makes its chunk pool too) on a service made with ``settle_heap``; prints
#: whether the heap was settled once the peer has them all
_SENDER_PROBE = """
import asyncio, sys
from objtransport import NetworkTransport
from objtransport.drivers import heap

async def main(count, reliable, settle):
    async with NetworkTransport(timeout=10, reliable=reliable, settle_heap=settle) as net:
        got = asyncio.Event()
        n = 0
        def received(msg):
            nonlocal n
            n += 1
            if n == count:
                got.set()
        listener = await net.listen("127.0.0.1", 0, handler=received)
        conn = await net.connect("127.0.0.1", listener.port)
        for _ in range(count):  # queued without yielding
            net.send_nowait(conn, b"k" * 1024)
        await asyncio.wait_for(got.wait(), 10)
        await net.flush(conn, timeout=10)
        print(heap.heap_settled())

asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "acks", sys.argv[3] == "on"))
"""


@pytest.mark.parametrize(("count", "acks", "option", "settled"), [
    (10, "noacks", "on", False),
    (1500, "noacks", "on", True),
    (1500, "acks", "on", True),
    (1500, "noacks", "off", False),
    (1500, "acks", "off", False),
])
def test_a_stream_senders_first_full_chunk_settles_the_heap_unless_the_service_refuses(
        count: int, acks: str, option: str, settled: bool) -> None:
    """The stream link's first full write chunk (1,500 x 1 KiB queued without yielding:
    more than ``WRITE_CHUNK``) settles the heap, with or without ACKs (with them the
    resend store's pool is made from that chunk); ten messages do not; a service made with
    ``settle_heap=False`` never does, pool or not. Real loopback sockets, a fresh process
    each."""
    assert 10 * 1024 < WRITE_CHUNK < 1500 * 1024
    out = _probe(_clean_env(), _SENDER_PROBE, str(count), acks, option)
    assert out == [str(settled)]


async def test_settle_heap_is_an_option_of_the_whole_service() -> None:
    """The thresholds are the process's: the option is ``NetworkTransport``'s (on by
    default), not one connection's or listener's."""
    assert NetworkTransport().options.settle_heap is True
    async with NetworkTransport(settle_heap=False) as net:
        assert net.options.settle_heap is False
        with pytest.raises(TypeError, match="settle_heap is service-wide"):
            await net.listen("127.0.0.1", 0, settle_heap=True)  # type: ignore[call-arg]
