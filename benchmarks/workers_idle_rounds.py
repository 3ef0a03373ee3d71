"""Keepalive rounds of ``n`` idle connections (TCP, UDP, WebSocket, gRPC): what each round
leaves for the listener's garbage collector, and its CPU.

The listener (``keepalive_interval`` :data:`KEEPALIVE` s, so that rounds come quickly) holds
the connections of :func:`.workers_idle.open_idle`'s client (TCP: plain asyncio sockets that
answer its PINGs) or of :func:`open_objtransport`'s (the other transports: objtransport
clients whose own keepalive is an hour away, so the listener's PINGs are all there is). Once
all are open it collects and freezes its objects (``gc.freeze``), waits :data:`ROUNDS`
keepalive intervals, collects again and counts the tracked objects made meanwhile that are
still alive, per connection: what one round leaves for the oldest generation (each round's
replace the last's; a loop timer re-armed per link per round left 3: ``TimerHandle``, its
context, the bound method). From it and the tracked objects per connection, how often the
keepalive alone would bring a full collection at the default 15 s interval (Python 3.11 runs
one when the objects moved to the oldest generation since the last exceed a quarter of those
in it). The listener's CPU over the rounds is reported per connection and round (a PING
sent, its PONG read, the timer).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

from .runner import CTX, BenchError, Result
from .workers_idle import (
    SETUP_TIMEOUT,
    _child,
    _held,
    _raise_nofile,
    _recv,
    _tracked,
    open_idle,
    stop_children,
)

KEEPALIVE = 1.0
ROUNDS = 3
DEFAULT_KEEPALIVE = 15.0


async def _rounds() -> tuple[int, float]:
    """Tracked objects made over ROUNDS keepalive rounds and alive after them; CPU s."""
    gc.collect()
    gc.freeze()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(ROUNDS * KEEPALIVE)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    gc.collect()
    made = len(gc.get_objects())
    gc.unfreeze()
    return made, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


async def _report_rounds(pipe: Connection, held: int, objs0: int) -> None:
    """Count the tracked objects now, let every link pass its first PING, measure the
    rounds, send (held, objects since ``objs0``, made, CPU s), then wait for "stop"."""
    objs, _ = _tracked()
    await asyncio.sleep(KEEPALIVE)  # every link past its first PING
    made, cpu = await _rounds()
    pipe.send((held, objs - objs0, made, cpu))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"


def serve_objtransport(pipe: Connection, n: int, transport: str = "tcp") -> None:
    from objtransport import NetworkTransport

    _raise_nofile(n)
    # the client's 10,000 connections end while the listener's keepalive still runs: not
    # a line each
    logging.getLogger("objtransport").setLevel(logging.ERROR)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with NetworkTransport(max_connections=n + 10, keepalive_interval=KEEPALIVE,
                                    pong_timeout=10.0) as net:
            listener = await net.listen("127.0.0.1", 0, transport=transport)
            objs0, _ = _tracked()
            pipe.send(listener.port)
            await loop.run_in_executor(None, pipe.recv)  # "measure": all are open
            held = await _held(lambda: len(listener.connections), n)
            await _report_rounds(pipe, held, objs0)

    asyncio.run(main())


def open_objtransport(pipe: Connection, port: int, n: int, transport: str) -> None:
    """Open ``n`` objtransport connections over ``transport``; report "open"; close them on
    "stop". Over TCP, WebSocket and gRPC their own keepalive is an hour away: they only
    answer the listener's PINGs. Over UDP the client is the pinger (a listener's peer only
    forgets a silent client): keepalive :data:`KEEPALIVE` s, and on "measure" this process
    counts its own rounds as the listener does and reports them."""
    from objtransport import NetworkTransport

    _raise_nofile(n)
    logging.getLogger("objtransport").setLevel(logging.ERROR)
    pinger = transport == "udp"
    ka, pong = (KEEPALIVE, 10.0) if pinger else (3600.0, 3600.0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with NetworkTransport(keepalive_interval=ka, pong_timeout=pong,
                                    timeout=30.0, pool_size=1) as net:
            sem = asyncio.Semaphore(64)
            objs0, _ = _tracked()

            async def connect() -> None:
                async with sem:
                    await net.connect("127.0.0.1", port, transport=transport)

            await asyncio.wait_for(asyncio.gather(*(connect() for _ in range(n))),
                                   SETUP_TIMEOUT)
            pipe.send("open")
            if await loop.run_in_executor(None, pipe.recv) == "measure":
                await _report_rounds(pipe, n, objs0)

    asyncio.run(main())


def serve_asyncio(pipe: Connection, n: int) -> None:
    """A plain asyncio echo server (no keepalive): the floor."""
    from .workers_idle import echo_server

    _raise_nofile(n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, conns = await echo_server(loop)
        objs0, _ = _tracked()
        pipe.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, pipe.recv)
        held = await _held(lambda: len(conns), n)
        await _report_rounds(pipe, held, objs0)
        server.close()

    asyncio.run(main())


def rounds(serve: Any, n: int, native: bool, loop: str, transport: str = "tcp") -> Result:
    """Tracked objects per connection and round left alive (value); the listener's CPU µs
    per connection and round (rx); ``extra``: tracked objects per connection, and every
    how many seconds the keepalive alone brings a full collection at the default 15 s.
    Over UDP the figures are the pinging client's (its CPU as rx too); the listener's
    objects per connection and round are in ``extra`` for every transport."""
    s_parent, s_child = CTX.Pipe()
    c_parent, c_child = CTX.Pipe()
    s_args: tuple[Any, ...] = (s_child, n) if transport == "tcp" else (s_child, n, transport)
    server = CTX.Process(target=_child, args=(loop, serve, s_args), daemon=True)
    server.start()
    client = None
    try:
        port = _recv(s_parent, 30, "the listener's port")
        if transport == "tcp":
            c_target: Any = open_idle
            c_args: tuple[Any, ...] = (c_child, port, n, native)
        else:
            c_target, c_args = open_objtransport, (c_child, port, n, transport)
        client = CTX.Process(target=_child, args=(loop, c_target, c_args), daemon=True)
        client.start()
        t0 = time.perf_counter()
        _recv(c_parent, SETUP_TIMEOUT, f"{n} connections to open")
        opened_s = time.perf_counter() - t0
        s_parent.send("measure")
        if transport == "udp":  # the client pings: its rounds are measured (both run)
            c_parent.send("measure")
        held, objs, made, cpu = _recv(s_parent, 60 + ROUNDS * KEEPALIVE, "the rounds")
        if held < n:
            raise BenchError(f"the listener holds {held} of {n} connections")
        listener_per_round = made / held
        if transport == "udp":
            held, objs, made, cpu = _recv(c_parent, 60 + ROUNDS * KEEPALIVE,
                                          "the client's rounds")
    finally:
        stop_children((s_parent, c_parent), (client, server))
    # made: one round's survivors (each round's replace the last's), per connection
    per_round = made / held
    tracked = objs / held
    every = tracked / 4 / per_round * DEFAULT_KEEPALIVE if per_round > 0 else float("inf")
    return Result(per_round, receiver_cpu_us=cpu / (held * ROUNDS) * 1e6,
                  extra={"gc objs/conn": tracked,
                         "full gc every s @15s": min(every, 1e9),
                         "listener objs/conn/round": listener_per_round},
                  timed_s=opened_s)
