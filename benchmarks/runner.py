"""Running one measurement in separate processes, bounded in time."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CTX = mp.get_context("spawn")
CASE_TIMEOUT = 90.0


@dataclass
class Result:
    value: float | None = None  # msg/s, MB/s or µs
    error: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _with_env(env: dict[str, str]) -> Callable[[], None]:
    def apply() -> None:
        os.environ.update(env)
    return apply


def _run_target(target: Callable[..., Any], args: tuple[Any, ...]) -> mp.process.BaseProcess:
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def throughput(recv: Callable[..., None], send: Callable[..., None], size: int, count: int,
               unit: str) -> Result:
    """Receiver-side rate: msg/s (unit "msg/s") or MB/s (unit "MB/s")."""
    parent, child = CTX.Pipe()
    r = _run_target(recv, (child, size, count))
    s = None
    try:
        if not parent.poll(20):
            return Result(error="receiver did not start")
        port = parent.recv()
        s = _run_target(send, (port, size, count))
        if not parent.poll(CASE_TIMEOUT):
            return Result(error="timed out")
        got, nbytes, seconds = parent.recv()
        if got < count:
            return Result(error=f"received {got} of {count}")
        if unit == "msg/s":
            return Result(got / seconds)
        return Result(nbytes / seconds / 1e6)
    except Exception as exc:  # a broken case must not stop the suite
        return Result(error=f"{type(exc).__name__}: {exc}")
    finally:
        for p in (s, r):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()


def _ping_child(ping: Callable[..., list[float]], port: int, rounds: int, warmup: int,
                pipe: Any) -> None:
    pipe.send(ping(port, rounds, warmup))


def latency(echo: Callable[..., None], ping: Callable[..., list[float]], rounds: int,
            warmup: int) -> Result:
    """p50 (value) and p99 (extra) of 64 B round trips, in µs."""
    parent, child = CTX.Pipe()
    e = _run_target(echo, (child,))
    p = None
    try:
        if not parent.poll(20):
            return Result(error="echo server did not start")
        port = parent.recv()
        back, out = CTX.Pipe()
        p = _run_target(_ping_child, (ping, port, rounds, warmup, out))
        if not back.poll(CASE_TIMEOUT):
            return Result(error="timed out")
        samples = sorted(back.recv())
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return Result(p50, extra={"p99": p99})
    except Exception as exc:
        return Result(error=f"{type(exc).__name__}: {exc}")
    finally:
        parent.send("stop")
        for proc in (p, e):
            if proc is not None:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
