"""64 B TCP ping-pong with both peers pinned to vCPUs: ``python -m benchmarks.pinned``.

The suite's "tcp ping-pong 64 B" lands in one of two states, whichever vCPUs the scheduler
puts the peers on: both on one vCPU (the plain uvloop pair at ~19 µs) or on two (~45-65
µs: each wake-up crosses vCPUs, and every bytecode costs 1.5-2x; docs/design.md,
"Ping-pong, round 6"). Here each peer is pinned (``os.sched_setaffinity``), so each state
is measured on purpose: objtransport and the plain asyncio ``Protocol`` pair, interleaved,
on one vCPU and on two, with the suite's workers and its :func:`~.runner.latency`.

    .venv/bin/python -m benchmarks.pinned --reps 5 --loop uvloop
    .venv/bin/python -m benchmarks.pinned --reps 3 --loop default --rounds 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

from . import workers as w
from .runner import latency

IMPLS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "objtransport": (w.echo_objtransport, w.ping_objtransport),
    "asyncio": (w.echo_asyncio, w.ping_asyncio),
}


def _pinned(cpu: int, target: Callable[..., Any], *args: Any) -> Any:
    """``target(*args)`` in this process, held to vCPU ``cpu``."""
    os.sched_setaffinity(0, {cpu})
    return target(*args)


def _placements() -> list[tuple[str, int, int]]:
    cpus = sorted(os.sched_getaffinity(0))
    out = [("one vCPU", cpus[0], cpus[0])]
    if len(cpus) > 1:
        out.append(("two vCPUs", cpus[0], cpus[1]))
    return out


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--loop", default="uvloop", choices=("default", "uvloop"))
    a = ap.parse_args()
    got: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for rep in range(a.reps):
        for place, ping_cpu, echo_cpu in _placements():
            for name, (echo, ping) in IMPLS.items():
                r = latency(partial(_pinned, echo_cpu, echo), partial(_pinned, ping_cpu, ping),
                            a.rounds, a.warmup, a.loop)
                cpu = (r.sender_cpu_us or 0.0, r.receiver_cpu_us or 0.0)
                got.setdefault((place, name), []).append((r.value, *cpu))
                print(f"rep {rep + 1}/{a.reps} {a.loop} {place:9s} {name:12s} p50 "
                      f"{r.value:6.1f} µs  CPU µs pinger / echo {cpu[0]:.1f} / {cpu[1]:.1f}",
                      flush=True)
    print(f"\nmedian (min-max) of {a.reps} rep(s), {a.loop}, {a.rounds} round trips each")
    for (place, name), rows in got.items():
        p50s, tx, rx = (list(c) for c in zip(*rows, strict=True))
        print(f"  {place:9s} {name:12s} p50 {_fmt(p50s)} µs  CPU {_fmt(tx)} / {_fmt(rx)}")


if __name__ == "__main__":
    main()
