"""Running one measurement in separate processes, bounded in time.

Every peer runs in its own spawned process, on the event loop chosen for the run
(:func:`use_loop`). A peer that raises reports the error through its pipe (and exits non-zero);
the runner turns that, a crash or a timeout into :class:`BenchError`, which the suite reports
loudly instead of printing a figure.

CPU time is measured inside each peer around its timed section (``resource.getrusage``,
user + sys of the whole process, all threads: pyzmq's and grpc's I/O threads count) and
reported per message in µs.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

CTX = mp.get_context("spawn")
#: set in the parent around a run: the peers import objtransport from this directory
SRC_VAR = "BENCH_OBJTRANSPORT_SRC"
CASE_TIMEOUT = 90.0
START_TIMEOUT = 30.0
LOOPS = ("default", "uvloop")


class BenchError(Exception):
    """One run failed: a peer raised, crashed, timed out or came up short."""


@dataclass
class Result:
    """One run of one implementation of a case."""

    value: float  # msg/s, MB/s or µs (p50)
    #: CPU µs per message of the sending process (per round trip of the pinger)
    sender_cpu_us: float | None = None
    #: CPU µs per message of the receiving process (per round trip of the echo server)
    receiver_cpu_us: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    #: length of the timed section, s (the rest of a run is start-up and tear-down)
    timed_s: float = 0.0


def use_loop(loop: str) -> None:
    """Make ``asyncio.run`` in this process use ``loop`` ("default" or "uvloop")."""
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif loop != "default":
        raise ValueError(f"unknown event loop {loop!r}")


def _child(loop: str, target: Callable[..., Any], args: tuple[Any, ...], reply: Connection,
           send_result: bool) -> None:
    """Body of every peer process: an error goes to the parent as a string, then re-raises."""
    try:
        use_loop(loop)
        import_from(os.environ.get(SRC_VAR, ""))
        out = target(*args)
    except BaseException as exc:
        func = getattr(target, "func", target)  # a functools.partial names its function
        reply.send(f"{getattr(func, '__name__', func)}: {type(exc).__name__}: {exc}")
        raise
    if send_result:
        reply.send(out)


def import_from(src: str) -> None:
    """Import objtransport from ``src`` (``--against``), not the installed package. A spawned
    child gets its parent's ``sys.path``, so PYTHONPATH alone would not do it."""
    if not src:
        return
    sys.path.insert(0, src)
    import objtransport

    if not objtransport.__file__ or not objtransport.__file__.startswith(src):
        raise RuntimeError(f"objtransport came from {objtransport.__file__}, not {src}")


_Peer = tuple[str, BaseProcess, Connection]  # name, process, the parent's end of its pipe


def _start(name: str, loop: str, target: Callable[..., Any], args: tuple[Any, ...],
           parent: Connection, child: Connection, send_result: bool) -> _Peer:
    proc = CTX.Process(target=_child, args=(loop, target, args, child, send_result),
                       daemon=True)
    proc.start()
    return name, proc, parent


def _get(peer: _Peer, watch: Sequence[_Peer], timeout: float, what: str) -> Any:
    """The next message from ``peer``; raise BenchError if a watched peer died or reported
    an error, or nothing came within ``timeout`` s."""
    name, _, pipe = peer
    end = time.monotonic() + timeout
    while not pipe.poll(0.05):
        for other, proc, other_pipe in watch:
            if proc.exitcode not in (None, 0):
                why = other_pipe.recv() if other_pipe.poll() else "no message"
                raise BenchError(f"{other} failed (exit code {proc.exitcode}): {why}")
        if time.monotonic() > end:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
    msg = pipe.recv()
    if isinstance(msg, str):
        raise BenchError(f"{name} failed: {msg}")
    return msg


def _reap(peers: Sequence[_Peer | None]) -> None:
    for peer in peers:
        if peer is None:
            continue
        proc = peer[1]
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def throughput(recv: Callable[..., None], send: Callable[..., float], size: int, count: int,
               unit: str, loop: str, lossy: bool = False) -> Result:
    """Receiver-side rate: msg/s (unit "msg/s") or MB/s (unit "MB/s").

    ``recv(pipe, size, count)`` sends its port, then ``(received, bytes, seconds, cpu s)``
    (seconds and CPU from its first message to its last); ``send(port, size, count)`` returns
    the CPU seconds of its sending loop. Unless ``lossy`` (UDP: the loss goes to
    ``extra["loss %"]``), fewer than ``count`` received is an error.
    """
    rx_parent, rx_child = CTX.Pipe()
    tx_parent, tx_child = CTX.Pipe()
    rx = _start("receiver", loop, recv, (rx_child, size, count), rx_parent, rx_child, False)
    tx: _Peer | None = None
    try:
        port = _get(rx, [rx], START_TIMEOUT, "the receiver's port")
        tx = _start("sender", loop, send, (port, size, count), tx_parent, tx_child, True)
        got, nbytes, seconds, rx_cpu = _get(rx, [rx, tx], CASE_TIMEOUT, "the receiver's count")
        tx_cpu = _get(tx, [tx], START_TIMEOUT, "the sender's CPU time")
    finally:
        _reap([tx, rx])
    extra: dict[str, float] = {}
    if lossy:
        if got < 2 or seconds <= 0:
            raise BenchError(f"received {got} of {count}")
        extra["loss %"] = 100.0 * (count - got) / count
    elif got < count:
        raise BenchError(f"received {got} of {count}")
    value = got / seconds if unit == "msg/s" else nbytes / seconds / 1e6
    return Result(value, sender_cpu_us=tx_cpu / count * 1e6,
                  receiver_cpu_us=rx_cpu / max(1, got - 1) * 1e6, extra=extra,
                  timed_s=seconds)


def latency(echo: Callable[..., None], ping: Callable[..., tuple[list[float], float]],
            rounds: int, warmup: int, loop: str) -> Result:
    """p50 (value) and p99 (``extra``) of 64 B round trips, in µs.

    ``echo(pipe)`` sends its port, serves until it receives "stop", then sends its CPU
    seconds since it sent the port; ``ping(port, rounds, warmup)`` returns its samples and
    the CPU seconds of its loop. CPU is reported per round trip (warm-up included).
    """
    e_parent, e_child = CTX.Pipe()
    p_parent, p_child = CTX.Pipe()
    ec = _start("echo server", loop, echo, (e_child,), e_parent, e_child, False)
    pc: _Peer | None = None
    stopped = False
    try:
        port = _get(ec, [ec], START_TIMEOUT, "the echo server's port")
        pc = _start("pinger", loop, ping, (port, rounds, warmup), p_parent, p_child, True)
        samples, ping_cpu = _get(pc, [pc, ec], CASE_TIMEOUT, "the round trips")
        e_parent.send("stop")
        stopped = True
        echo_cpu = _get(ec, [ec], START_TIMEOUT, "the echo server's CPU time")
    finally:
        if not stopped:
            try:
                e_parent.send("stop")
            except OSError:
                pass
        _reap([pc, ec])
    samples = sorted(samples)
    total = rounds + warmup
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Result(statistics.median(samples), sender_cpu_us=ping_cpu / total * 1e6,
                  receiver_cpu_us=echo_cpu / total * 1e6, extra={"p99": p99},
                  timed_s=sum(samples) / 1e6 * total / len(samples))
