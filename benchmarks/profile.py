"""Profile one throughput case's peers with cProfile: ``python -m benchmarks.profile``.

The receiver and the sender run in separate spawned processes, as in the suite, each under
:mod:`cProfile`; the top entries by own time (``tottime``) of each are printed. Profiling
slows Python code 1.5-2x, so read the shares, not the rates.

    .venv/bin/python -m benchmarks.profile --size 64 --count 300000 --top 15
    .venv/bin/python -m benchmarks.profile --sender send_many
    .venv/bin/python -m benchmarks.profile --batch          # the receiver takes Batches
    .venv/bin/python -m benchmarks.profile --transport websocket --count 500000
    .venv/bin/python -m benchmarks.profile --transport grpc --framing raw --count 20000
    .venv/bin/python -m benchmarks.profile --transport udp --count 400000
    .venv/bin/python -m benchmarks.profile --transport grpc --framing raw --pingpong 3000

``--pingpong N`` profiles the pinger and the echo server of N 64 B round trips instead;
``--calls`` with it counts Python calls per round trip (C calls included): two runs, of N
and N/6 round trips, subtracted, so that set-up and tear-down drop out (docs/design.md,
"The one-frame path").

    .venv/bin/python -m benchmarks.profile --pingpong 12000 --calls --loop uvloop
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from . import workers as w
from . import workers_udp as wu
from .runner import CTX, use_loop

SENDERS: dict[str, Callable[..., float]] = {
    "send_data": w.send_objtransport,
    "send_many": w.send_many_objtransport,
}


def _run_profiled(target: Callable[..., Any], args: tuple[Any, ...], loop: str
                  ) -> cProfile.Profile:
    use_loop(loop)
    prof = cProfile.Profile()
    prof.enable()
    target(*args)
    prof.disable()
    return prof


def _profiled(target: Callable[..., Any], args: tuple[Any, ...], top: int, loop: str,
              out: Connection) -> None:
    s = io.StringIO()
    pstats.Stats(_run_profiled(target, args, loop), stream=s).sort_stats("tottime"
                                                                          ).print_stats(top)
    out.send(s.getvalue())


def _recv(pipe: Connection, size: int, count: int, transport: str = "tcp",
          batch: bool = False) -> None:
    if batch:
        w.recv_objtransport_batch(pipe, size, count)
    elif transport == "udp":
        wu.recv_objtransport(pipe, size, count)
    else:
        w.recv_objtransport(pipe, size, count, transport)


def _sender(name: str, transport: str, framing: str) -> Callable[..., float]:
    if transport == "udp":
        return wu.send_objtransport
    if name == "send_many":
        return SENDERS[name]
    return partial(w.send_objtransport, transport=transport, framing=framing)


def _counted(target: Callable[..., Any], args: tuple[Any, ...], loop: str,
             out: Connection) -> None:
    """Run ``target`` under cProfile; send its total calls and each function's."""
    st = pstats.Stats(_run_profiled(target, args, loop))
    rows = {f"{f.rsplit('/', 1)[-1]}:{line}({name})": v[1]
            for (f, line, name), v in st.stats.items()}  # type: ignore[attr-defined]
    out.send((st.total_calls, rows))  # type: ignore[attr-defined]


def _pingpong_counts(a: argparse.Namespace, rounds: int) -> list[tuple[int, dict[str, int]]]:
    """(total calls, calls per function) of the pinger and of the echo server."""
    er, ec = CTX.Pipe()
    rr, rc = CTX.Pipe()
    echo = CTX.Process(target=_counted,
                       args=(partial(w.echo_objtransport, transport=a.transport), (ec,),
                             a.loop, rc), daemon=True)
    echo.start()
    port = er.recv()
    sr, sc = CTX.Pipe()
    ping = CTX.Process(target=_counted,
                       args=(partial(w.ping_objtransport, port, rounds, 100,
                                     transport=a.transport, framing=a.framing), (),
                             a.loop, sc), daemon=True)
    ping.start()
    got = [sr.recv()]
    er.send("stop")
    er.recv()
    got.append(rr.recv())
    ping.join(30)
    echo.join(30)
    return got


def _calls(a: argparse.Namespace) -> None:
    short = max(a.pingpong // 6, 1)
    few, many = _pingpong_counts(a, short), _pingpong_counts(a, a.pingpong)
    n = a.pingpong - short
    for side, (t0, r0), (t1, r1) in zip(("pinger", "echo server"), few, many, strict=True):
        print(f"== {side}: {(t1 - t0) / n:.2f} calls per round trip")
        per = sorted(((v - r0.get(k, 0)) / n, k) for k, v in r1.items())
        for count, name in reversed(per[-a.top:]):
            print(f"  {count:7.2f}  {name}")


def _pingpong(a: argparse.Namespace) -> None:
    er, ec = CTX.Pipe()
    rr, rc = CTX.Pipe()
    echo = CTX.Process(target=_profiled,
                       args=(partial(w.echo_objtransport, transport=a.transport), (ec,),
                             a.top, a.loop, rc), daemon=True)
    echo.start()
    port = er.recv()
    sr, sc = CTX.Pipe()
    ping = CTX.Process(target=_profiled,
                       args=(partial(w.ping_objtransport, port, a.pingpong, 100,
                                     transport=a.transport, framing=a.framing), (), a.top,
                             a.loop, sc), daemon=True)
    ping.start()
    print("== pinger ==")
    print(sr.recv())
    er.send("stop")
    er.recv()
    print("== echo server ==")
    print(rr.recv())
    ping.join(30)
    echo.join(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--loop", default="default")
    ap.add_argument("--sender", default="send_data", choices=sorted(SENDERS))
    ap.add_argument("--transport", default="tcp", choices=("tcp", "websocket", "grpc", "udp"))
    ap.add_argument("--framing", default="native", choices=("native", "raw"))
    ap.add_argument("--batch", action="store_true",
                    help="the receiver's handler takes one Batch per read (TCP)")
    ap.add_argument("--pingpong", type=int, default=0, metavar="N",
                    help="profile N round trips of 64 B instead")
    ap.add_argument("--calls", action="store_true",
                    help="with --pingpong: Python calls per round trip, per function")
    a = ap.parse_args()
    if a.pingpong:
        if a.calls:
            _calls(a)
        else:
            _pingpong(a)
        return
    pr, pc = CTX.Pipe()
    rr, rc = CTX.Pipe()
    recv = CTX.Process(target=_profiled,
                       args=(_recv, (pc, a.size, a.count, a.transport, a.batch), a.top,
                             a.loop, rc),
                       daemon=True)
    recv.start()
    port = pr.recv()
    sr, sc = CTX.Pipe()
    send = CTX.Process(target=_profiled,
                       args=(partial(_sender(a.sender, a.transport, a.framing), port, a.size,
                                     a.count), (), a.top,
                             a.loop, sc), daemon=True)
    send.start()
    got = pr.recv()
    print(f"received {got[0]} of {a.count} in {got[2]:.2f} s "
          f"({got[3] / max(got[0], 1) * 1e6:.2f} CPU µs/msg profiled)")
    print("== sender ==")
    print(sr.recv())
    print("== receiver ==")
    print(rr.recv())
    send.join(30)
    recv.join(30)


if __name__ == "__main__":
    main()
