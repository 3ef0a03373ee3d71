"""Logs under attack and in use (issue 12, items 14 and 15).

* every handler exception is logged with its traceback, at most LOG_BURST per connection and
  minute, then one summary line with the count;
* accepted sockets lost before their handshake (EOF before HELLO) log at DEBUG and are
  summed up per listener: 500 of them make a line or two at WARNING, not 500.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from objtransport import Message, NetworkTransport
from objtransport.dispatch import LOG_BURST
from objtransport.loglimit import LogBudget, LogTally
from objtransport.testing import eventually

pytestmark = pytest.mark.timeout(60)


def test_log_budget_writes_a_burst_then_counts() -> None:
    b = LogBudget(burst=3, interval=60.0)
    assert [b.take(0.0) for _ in range(3)] == [(True, 0)] * 3
    assert b.exhausted
    assert [b.take(1.0) for _ in range(5)] == [(False, 0)] * 5
    assert b.take(61.0) == (True, 5)  # a new minute: the summary of the last one comes
    assert b.flush() == 0


def test_log_tally_reports_counts_once_per_interval() -> None:
    t = LogTally(interval=10.0)
    assert t.add("eof", 0.0) is None and t.add("eof", 5.0) is None
    assert t.add("reset", 10.0) == {"eof": 2, "reset": 1}
    assert t.take() is None


@pytest.mark.parametrize("is_async", [False, True])
async def test_handler_exceptions_are_logged_up_to_the_burst_then_summarised(
        caplog: pytest.LogCaptureFixture, is_async: bool) -> None:
    seen: list[int] = []

    def fail(msg: Message) -> None:
        seen.append(1)
        raise ValueError(f"bad message {msg.data!r}")

    async def afail(msg: Message) -> None:
        fail(msg)

    caplog.set_level(logging.ERROR, logger="objtransport.handler")
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0, handler=afail if is_async else fail)
        conn = await net.connect("127.0.0.1", listener.port)
        for i in range(50):
            await net.send_data(conn, b"m%d" % i)
        await eventually(lambda: len(seen) == 50)
        assert net.get_metrics().handler_errors == 50
        each = [r for r in caplog.records if "raised ValueError" in r.getMessage()]
        assert len(each) == LOG_BURST and all(r.exc_info for r in each)
        assert "the next ones within 60 s are counted" in each[-1].getMessage()
        await net.disconnect(conn)
        await eventually(lambda: not listener.connections)
    summary = [r for r in caplog.records if "more exception(s)" in r.getMessage()]
    assert len(summary) == 1 and "raised 40 more exception(s)" in summary[0].getMessage()


async def test_500_connections_closing_at_eof_before_hello_are_not_a_log_flood(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="objtransport")
    async with NetworkTransport(timeout=5.0) as net:
        listener = await net.listen("127.0.0.1", 0)
        for _ in range(5):
            socks = []
            for _ in range(100):
                s = socket.socket()
                s.setblocking(False)
                await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", listener.port))
                socks.append(s)
            for s in socks:
                s.close()  # EOF before any byte
        await eventually(lambda: listener.early_ends == 500, timeout=20.0)
        await listener.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 3, [r.getMessage() for r in warnings]
    summary = [r.getMessage() for r in warnings if "lost before their handshake" in
               r.getMessage()]
    assert sum(int(m.split(": ", 1)[1].split(" ", 1)[0]) for m in summary) == 500
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG
             and "before its handshake" in r.getMessage()]
    assert len(debug) == 500
