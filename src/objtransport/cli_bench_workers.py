"""The two processes of an ``objtransport bench`` run, and the runner that spawns them.

The peers speak the protocol of the repository's ``benchmarks`` workers, so the baselines
of ``make bench`` (plain asyncio, pyzmq, websockets, grpc.aio) run through the same
:func:`throughput` / :func:`latency` functions:

* ``recv(pipe, size, count)`` sends its port, then ``(received, bytes, seconds, cpu s)``;
* ``send(port, size, count)`` returns the CPU seconds of its sending loop;
* ``echo(pipe)`` sends its port, serves until it receives ``"stop"``, sends its CPU s;
* ``ping(port, rounds, warmup)`` returns ``(round trips in µs, cpu s)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .cli_common import CliError, TransportArgs

__all__ = ["Run", "echo_ours", "latency", "ping_ours", "recv_ours", "send_ours", "throughput"]

CTX = mp.get_context("spawn")
DEADLINE = 120.0
START = 30.0
#: a lossy (UDP) receiver reports this long after the last datagram
IDLE = 1.0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Run:
    """One measurement: throughput (msg/s, MB/s) or round trips (samples in µs)."""

    transport: str
    impl: str
    size: int
    count: int
    msg_s: float = 0.0
    mb_s: float = 0.0
    loss_pct: float = 0.0
    sender_cpu_us: float = 0.0
    receiver_cpu_us: float = 0.0
    samples_us: list[float] = field(default_factory=list)
    #: why the run failed ("" when it did not)
    error: str = ""


# -- objtransport peers ------------------------------------------------------------------------

def recv_ours(pipe: Connection, size: int, count: int, targs: TransportArgs,
              lossy: bool = False) -> None:
    from . import Message, NetworkTransport

    async def main() -> None:
        got = nbytes = 0
        first = last = cpu0 = 0.0
        done = asyncio.Event()

        def on_message(msg: Message) -> None:
            nonlocal got, nbytes, first, last, cpu0
            last = time.perf_counter()
            if not got:
                first, cpu0 = last, cpu_seconds()
            got += 1
            nbytes += len(msg.data)
            if got >= count:
                done.set()

        async with NetworkTransport() as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_message,
                                        **targs.listen_kwargs())
            pipe.send(listener.port)
            end = time.monotonic() + DEADLINE
            while not done.is_set() and time.monotonic() < end:
                try:
                    await asyncio.wait_for(done.wait(), IDLE)
                except TimeoutError:
                    if lossy and got and time.perf_counter() - last > IDLE:
                        break
            pipe.send((got, nbytes, max(1e-9, last - first), cpu_seconds() - cpu0))

    asyncio.run(main())


def send_ours(port: int, size: int, count: int, targs: TransportArgs) -> float:
    from . import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port, **targs.connect_kwargs())
            payload = b"x" * size
            cpu0 = cpu_seconds()
            for _ in range(count):
                await net.send_data(conn, payload)
            await net.flush(conn, timeout=DEADLINE)
            return cpu_seconds() - cpu0

    return asyncio.run(main())


def echo_ours(pipe: Connection, targs: TransportArgs) -> None:
    from . import Message, NetworkTransport

    async def main() -> None:
        async with NetworkTransport() as net:
            async def echo(msg: Message) -> None:
                await net.send_data(msg.conn_id, msg.data)

            listener = await net.listen("127.0.0.1", 0, handler=echo, **targs.listen_kwargs())
            cpu0 = cpu_seconds()
            pipe.send(listener.port)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, pipe.recv)
            pipe.send(cpu_seconds() - cpu0)

    asyncio.run(main())


def ping_ours(port: int, rounds: int, warmup: int, targs: TransportArgs
              ) -> tuple[list[float], float]:
    from . import NetworkTransport

    async def main() -> tuple[list[float], float]:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port, **targs.connect_kwargs())
            payload = b"p" * 64
            samples: list[float] = []
            cpu0 = cpu_seconds()
            for i in range(rounds + warmup):
                t = time.perf_counter()
                await net.send_data(conn, payload)
                try:  # a lost UDP datagram loses its round, not the run
                    await net.receive(conn, timeout=1.0)
                except TimeoutError:
                    continue
                if i >= warmup:
                    samples.append((time.perf_counter() - t) * 1e6)
            return samples, cpu_seconds() - cpu0

    return asyncio.run(main())


# -- the runner ----------------------------------------------------------------------------

_Peer = tuple[str, BaseProcess, Connection]


def _child(target: Callable[..., Any], args: tuple[Any, ...], reply: Connection,
           send_result: bool) -> None:
    try:
        out = target(*args)
    except BaseException as exc:
        reply.send(f"{type(exc).__name__}: {exc}")
        raise
    if send_result:
        reply.send(out)


def _start(name: str, target: Callable[..., Any], args: tuple[Any, ...],
           send_result: bool = False) -> _Peer:
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=_child, args=(target, (child, *args) if not send_result
                                            else args, child, send_result), daemon=True)
    proc.start()
    return name, proc, parent


def _get(peer: _Peer, watch: Sequence[_Peer], timeout: float, what: str) -> Any:
    name, _, pipe = peer
    end = time.monotonic() + timeout
    while not pipe.poll(0.05):
        for other, proc, other_pipe in watch:
            if proc.exitcode not in (None, 0):
                why = other_pipe.recv() if other_pipe.poll() else "no message"
                raise CliError(f"bench: the {other} failed (exit {proc.exitcode}): {why}")
        if time.monotonic() > end:
            raise CliError(f"bench: timed out after {timeout:.0f} s waiting for {what}")
    msg = pipe.recv()
    if isinstance(msg, str):
        raise CliError(f"bench: the {name} failed: {msg}")
    return msg


def _reap(peers: Sequence[_Peer | None]) -> None:
    for peer in peers:
        if peer is not None:
            peer[1].join(10)
            if peer[1].is_alive():
                peer[1].kill()
                peer[1].join(5)


def throughput(recv: Callable[..., None], send: Callable[..., float], size: int, count: int,
               lossy: bool = False) -> tuple[float, float, float, float, float]:
    """(msg/s, MB/s, loss %, sender CPU µs/msg, receiver CPU µs/msg), receiver side."""
    rx = _start("receiver", recv, (size, count))
    tx: _Peer | None = None
    try:
        port = _get(rx, [rx], START, "the receiver's port")
        tx = _start("sender", send, (port, size, count), send_result=True)
        got, nbytes, seconds, rx_cpu = _get(rx, [rx, tx], DEADLINE, "the receiver's count")
        tx_cpu = _get(tx, [tx], START, "the sender")
    finally:
        _reap([tx, rx])
    if got < (2 if lossy else count):
        raise CliError(f"bench: received {got} of {count} messages")
    return (got / seconds, nbytes / seconds / 1e6, 100.0 * (count - got) / count,
            tx_cpu / count * 1e6, rx_cpu / max(1, got - 1) * 1e6)


def latency(echo: Callable[..., None], ping: Callable[..., tuple[list[float], float]],
            rounds: int, warmup: int) -> tuple[list[float], float, float]:
    """(sorted round trips in µs, pinger CPU µs/round, echo CPU µs/round)."""
    ec = _start("echo server", echo, ())
    pc: _Peer | None = None
    try:
        port = _get(ec, [ec], START, "the echo server's port")
        pc = _start("pinger", ping, (port, rounds, warmup), send_result=True)
        samples, ping_cpu = _get(pc, [pc, ec], DEADLINE, "the round trips")
        ec[2].send("stop")
        echo_cpu = _get(ec, [ec], START, "the echo server")
    finally:
        if ec[1].is_alive():
            try:
                ec[2].send("stop")
            except OSError:
                pass
        _reap([pc, ec])
    if not samples:
        raise CliError("bench: no round trip came back")
    total = rounds + warmup
    return sorted(samples), ping_cpu / total * 1e6, echo_cpu / total * 1e6
