"""Fragmented messages sent again (a stale resend) are dropped as duplicates, whole or cut
anywhere, and counted once per message; small and large messages mixed stay in order."""

from __future__ import annotations

import pytest

from objtransport.sansio.reliability import ResumeState

from .test_reliability import Server, connect, deliver, wire

BIG = 300 * 1024  # more than one 256 KiB fragment


@pytest.mark.parametrize("cut", [None, 1, 20, 27, 28, 4096, 70_000, 262_144 + 30])
def test_fragmented_duplicates_are_dropped_and_counted_once(cut: int | None) -> None:
    rs = ResumeState(b"c" * 16)
    c, s = connect(rs, Server())
    sent = [b"a" * BIG, b"small", b"b" * (2 * BIG)]
    for m in sent:
        c.send_message(m)
    data = wire(c)
    assert deliver(c, s, data) == sent
    if cut is None:
        assert deliver(c, s, data) == []
    else:  # the same bytes again, in two reads cut anywhere
        assert deliver(c, s, data[:cut]) + deliver(c, s, data[cut:]) == []
    assert s.rs.duplicates == 3 and s.decoder.duplicates == 3
    c.send_message(b"after")
    assert deliver(c, s) == [b"after"]
