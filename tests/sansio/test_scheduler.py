"""The priority scheduler: strict classes, weighted sharing, fragment interleaving, order."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from objtransport.sansio.fragmentation import FragmentJob
from objtransport.sansio.scheduler import PriorityScheduler


def drain(s: PriorityScheduler, budget: int = 1 << 30) -> bytes:
    return b"".join(bytes(c) for c in s.pop(budget))


def test_strict_order_of_classes() -> None:
    s = PriorityScheduler()
    s.push_frame(3, b"low")
    s.push_frame(2, b"normal")
    s.push_frame(1, b"high")
    s.push_frame(0, b"ctl")
    assert drain(s) == b"ctlhighnormallow"
    assert s.pending_bytes == 0 and not s


def test_fast_path_returns_one_buffer_for_normal_frames() -> None:
    s = PriorityScheduler()
    for i in range(100):
        s.push_frame(2, b"%03d" % i)
    out = s.pop(10)
    assert len(out) == 1 and bytes(out[0]) == b"".join(b"%03d" % i for i in range(100))
    assert s.only_small


def test_push_seals_small_buffer_so_order_holds() -> None:
    s = PriorityScheduler()
    s.push_frame(2, b"a")
    s.push(2, b"B")
    s.push_frame(2, b"c")
    assert not s.only_small
    assert drain(s) == b"aBc"


def test_fragments_interleave_with_higher_priority() -> None:
    s = PriorityScheduler()
    job = FragmentJob(b"x" * 1000, seq=1, stream=0, priority=3, flags=0, piece=100)
    s.push(3, job)
    first = s.pop(1)
    assert len(first) == 2  # header + piece of one fragment
    s.push_frame(1, b"URGENT")
    nxt = s.pop(1)
    assert bytes(nxt[0]) == b"URGENT"
    rest = s.pop(1 << 30)
    assert sum(len(c) for c in rest[1::2]) == 900 and s.pending_bytes == 0


def test_groups_leave_together() -> None:
    s = PriorityScheduler()
    s.push(2, (b"head", memoryview(b"body")))
    s.push_frame(0, b"c")
    out = s.pop(1 << 20)
    assert [bytes(c) for c in out] == [b"c", b"head", b"body"]


def test_weights_share_normal_and_low() -> None:
    s = PriorityScheduler(weights=(4, 1), quantum=1000)
    s.push(2, FragmentJob(b"n" * 200_000, 1, 0, 2, 0, 100))
    s.push(3, FragmentJob(b"l" * 200_000, 2, 0, 3, 0, 100))
    sent = {2: 0, 3: 0}
    while sent[2] < 100_000 and sent[3] < 100_000:
        out = s.pop(100)
        piece = bytes(out[1])
        sent[2 if piece[:1] == b"n" else 3] += len(piece)
    ratio = sent[2] / sent[3]
    assert 3.6 <= ratio <= 4.4, sent


def test_clear_drops_everything() -> None:
    s = PriorityScheduler()
    s.push_frame(2, b"x")
    s.push(3, FragmentJob(b"y" * 10, 1, 0, 3, 0, 4))
    assert len(s.clear()) == 2
    assert s.pending_bytes == 0 and s.pop(100) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=50),
                          st.booleans()), max_size=60))
def test_per_class_order_and_accounting(items: list[tuple[int, bytes, bool]]) -> None:
    s = PriorityScheduler()
    for prio, data, as_item in items:
        if as_item:
            s.push(prio, data)
        else:
            s.push_frame(prio, data)
    assert s.pending_bytes == sum(len(d) for _, d, _ in items)
    assert s.queued_by_priority() == [sum(len(d) for p, d, _ in items if p == c)
                                      for c in range(4)]
    out = b""
    while s:
        out += drain(s, 7)
    # strict classes first; each class keeps its own order
    ctl_high = b"".join(d for p, d, _ in items if p == 0) + b"".join(
        d for p, d, _ in items if p == 1)
    assert out.startswith(ctl_high)
    assert len(out) == sum(len(d) for _, d, _ in items)


def _frame(tag: bytes) -> bytes:
    return len(tag).to_bytes(4, "big") + tag


def test_large_message_on_one_stream_does_not_hold_back_another() -> None:
    s = PriorityScheduler()
    s.push(2, FragmentJob(b"B" * 1000, seq=1, stream=1, priority=2, flags=0, piece=100), 1)
    s.push_frame(2, _frame(b"s2-a"), stream=2)
    first = s.pop(1)  # one turn: the small buffer of other streams or one fragment
    second = s.pop(1)
    tags = [bytes(c) for c in first + second]
    assert _frame(b"s2-a") in tags  # stream 2 did not wait for the 1000-byte message


def test_same_stream_keeps_order_behind_its_large_message() -> None:
    s = PriorityScheduler()
    s.push_frame(2, _frame(b"before"), stream=1)
    s.push(2, FragmentJob(b"B" * 300, seq=2, stream=1, priority=2, flags=0, piece=100), 1)
    s.push_frame(2, _frame(b"after"), stream=1)
    out = [bytes(c) for c in s.pop(1 << 30)]
    assert out[0] == _frame(b"before") and out[-1] == _frame(b"after")
    assert not s.blocked and s.pending_bytes == 0


def test_strict_budget_cuts_small_buffers_at_frame_boundaries() -> None:
    s = PriorityScheduler()
    frames = [_frame(b"%02d" % i) for i in range(10)]  # 6 bytes each
    for f in frames:
        s.push_frame(2, f)
    got = []
    while s:
        chunk = s.pop(13, strict=True)
        assert sum(len(c) for c in chunk) <= 13
        got.extend(bytes(c) for c in chunk)
    assert b"".join(got) == b"".join(frames)
    assert s.sent_bytes[2] == 60


def test_a_large_paced_grant_is_still_shared_by_weights() -> None:
    """A paced (strict) pop with a grant of many frames, as a writer woken late gets, splits
    it between normal and low by their weights (4:1), not all to the class whose turn it is."""
    s = PriorityScheduler()
    frame = struct.pack(">I", 16 * 1024 - 4) + b"w" * (16 * 1024 - 4)
    for _ in range(200):
        s.push_frame(2, frame)
        s.push_frame(3, frame.replace(b"w", b"l"))
    got = {b"w": 0, b"l": 0}
    for _ in range(4):  # 4 grants of 800 KiB: 3.2 MiB, 200 frames
        for chunk in s.pop(800 * 1024, strict=True):
            data = bytes(chunk)
            for i in range(0, len(data), 16 * 1024):
                got[data[i + 4:i + 5]] += 1
    assert got[b"w"] + got[b"l"] == 200
    assert got[b"w"] == 4 * got[b"l"]  # whole rounds of 16 normal frames and 4 low ones


def _pieces(s: PriorityScheduler, strict: bool = False) -> list[int]:
    sizes = []
    while s:
        out = s.pop(1, strict)
        sizes += [len(c) for c in out[1::2]]
    return sizes


def test_a_message_alone_goes_in_even_solo_pieces() -> None:
    s = PriorityScheduler()
    s.solo_piece = 400
    s.push(2, FragmentJob(b"x" * 1000, seq=1, stream=0, priority=2, flags=0, piece=100))
    # a second message behind it on the same stream and class leaves after it anyway
    s.push(2, FragmentJob(b"w" * 500, seq=2, stream=0, priority=2, flags=0, piece=100))
    assert _pieces(s) == [334, 333, 333, 250, 250]  # not 10 + 5 pieces of 100


def test_solo_pieces_only_while_nothing_else_waits_and_not_throttled() -> None:
    s = PriorityScheduler()
    s.solo_piece = 400
    s.push(3, FragmentJob(b"x" * 1000, seq=1, stream=0, priority=3, flags=0, piece=100))
    s.push(3, FragmentJob(b"z" * 1000, seq=3, stream=1, priority=3, flags=0, piece=100), 1)
    first = s.pop(1)  # another stream of the class waits: the job's own size
    assert [len(c) for c in first[1::2]] == [100]
    s.push_frame(0, b"ACK")  # as does anything in another class
    assert [len(c) for c in s.pop(1)[1::2]] == []  # (the ACK first)
    assert [len(c) for c in s.pop(1)[1::2]] == [100]
    s2 = PriorityScheduler()
    s2.solo_piece = 400
    s2.push(2, FragmentJob(b"y" * 1000, seq=2, stream=0, priority=2, flags=0, piece=100))
    assert _pieces(s2, strict=True) == [100] * 10  # a paced link keeps the job's size
