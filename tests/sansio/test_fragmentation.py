"""Reassembly bounds are checked before allocating."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objtransport.exceptions import ProtocolError
from objtransport.sansio.fragmentation import FragmentJob, Reassembler
from objtransport.sansio.framing import GoAwayCode


def test_split_and_join() -> None:
    data = bytes(range(256)) * 10
    job = FragmentJob(data, seq=5, stream=1, priority=2, flags=0, piece=1000)
    r = Reassembler(10_000, 4, 100_000)
    done = None
    for header, piece in job.fragments():
        assert header[20:24] == (job.offset - len(piece)).to_bytes(4, "big")
        done = r.add(5, int.from_bytes(header[20:24], "big"), len(data), piece, 1, 2, 0)
    assert done is not None and done.data == data and len(r) == 0 and r.allocated == 0


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 700))
def test_any_piece_size(data: bytes, piece: int) -> None:
    r = Reassembler(10_000, 4, 100_000)
    out = [r.add(1, len(data) - job_rest, len(data), p, 0, 2, 0)
           for job_rest, p in _pieces(data, piece)]
    assert out[-1] is not None and out[-1].data == data
    assert all(o is None for o in out[:-1])


def _pieces(data: bytes, piece: int) -> list[tuple[int, memoryview]]:
    job = FragmentJob(data, 1, 0, 2, 0, piece)
    res = []
    while not job.done:
        rest = job.remaining
        res.append((rest, job.next_chunks()[1]))
    return res


@pytest.mark.parametrize("kwargs, call, code", [
    ({"max_message_size": 100}, (1, 0, 10, 101), GoAwayCode.MESSAGE_TOO_LARGE),
    ({"max_message_size": 100}, (1, 5, 10, 50), GoAwayCode.PROTOCOL_ERROR),  # not from 0
    ({"max_message_size": 100}, (1, 0, 60, 50), GoAwayCode.PROTOCOL_ERROR),  # overruns
])
def test_bad_first_fragments(kwargs: dict[str, int], call: tuple[int, int, int, int],
                             code: int) -> None:
    r = Reassembler(kwargs["max_message_size"], 4, 1000)
    seq, offset, n, total = call
    with pytest.raises(ProtocolError) as info:
        r.begin(seq, offset, n, total, 0, 2, 0)
    assert info.value.code == code
    assert r.allocated == 0


def test_bounds_on_count_and_memory() -> None:
    r = Reassembler(1000, 2, 1500)
    r.begin(1, 0, 10, 1000, 0, 2, 0)
    with pytest.raises(ProtocolError, match="memory"):
        r.begin(2, 0, 10, 600, 0, 2, 0)
    r.begin(3, 0, 10, 400, 0, 2, 0)
    with pytest.raises(ProtocolError, match="partial"):
        r.begin(4, 0, 10, 10, 0, 2, 0)


def test_inconsistent_total_and_gap() -> None:
    r = Reassembler(1000, 2, 5000)
    r.add(1, 0, 100, b"x" * 10, 0, 2, 0)
    with pytest.raises(ProtocolError, match="total"):
        r.begin(1, 10, 10, 200, 0, 2, 0)
    with pytest.raises(ProtocolError, match="offset"):
        r.begin(1, 30, 10, 100, 0, 2, 0)
