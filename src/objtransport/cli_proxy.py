"""``objtransport proxy``: :class:`objtransport.testing.FaultProxy` on the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from .cli_common import CliError, Parser, parse_duration, parse_endpoint, parse_port, parse_size
from .cli_live import run_live
from .testing import FaultProxy

__all__ = ["add_parser", "proxy"]

DESCRIPTION = """\
Forward TCP connections from --port to UPSTREAM (HOST:PORT), misbehaving on demand, to
test any client and server (objtransport's or not) against a bad network. Every stream
transport goes through it unchanged: tcp, tls, websocket, grpc.

It prints one line when ready: "proxy on HOST:PORT -> UPSTREAM", then a live count of
what it did (connections, bytes forwarded, resets, black hole), as a table every second
on a terminal or as a plain line when a count changes.

Sizes take 1MB (10^6), 1MiB (2^20), 64KiB, 512; durations 50ms, 1.5s, 2m.

examples:
  objtransport proxy 127.0.0.1:7000 --port 7001 --latency 50ms --jitter 10ms
  objtransport proxy 127.0.0.1:7000 --bandwidth 1MB --reset-every 1MB
  objtransport proxy 127.0.0.1:7000 --blackhole-after 10s
"""


def add_parser(sub: argparse._SubParsersAction[Parser],
               common: list[Parser],
               formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("proxy", help="a fault-injecting TCP proxy (latency, bandwidth, "
                       "resets, black hole)", description=DESCRIPTION, parents=common,
                       formatter_class=formatter)
    p.add_argument("upstream", metavar="UPSTREAM", type=parse_endpoint,
                   help="where to forward to, HOST:PORT")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", "-p", type=parse_port, default=0, help="port to listen on (0: any)")
    p.add_argument("--latency", type=parse_duration, default="0ms", metavar="DURATION",
                   help="delay added to every chunk, both ways")
    p.add_argument("--jitter", type=parse_duration, default="0ms", metavar="DURATION",
                   help="random extra delay per chunk, up to this (order is kept)")
    p.add_argument("--bandwidth", type=parse_size, default=None, metavar="SIZE",
                   help="bytes per second, per direction and connection (default: no limit)")
    p.add_argument("--chunk-size", type=parse_size, default=None, metavar="SIZE",
                   help="forward in pieces of at most this size (default: as read)")
    p.add_argument("--reset-every", type=parse_size, default=None, metavar="SIZE",
                   help="reset (RST) a connection after it carried this many bytes "
                        "client -> server (default: never)")
    p.add_argument("--blackhole-after", type=parse_duration, default=None,
                   metavar="DURATION",
                   help="after this long, forward nothing and close nothing (default: never)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the jitter's draws (default: random)")


def _counts(proxy: FaultProxy, blackholed: bool) -> tuple[Any, ...]:
    return (proxy.connections, proxy.bytes_forwarded, proxy.resets, blackholed)


def _line(counts: tuple[Any, ...]) -> str:
    conns, nbytes, resets, hole = counts
    return (f"connections {conns}  forwarded {nbytes} B  resets {resets}"
            f"{'  BLACK HOLE' if hole else ''}")


async def proxy(args: argparse.Namespace) -> int:
    if args.transport in ("udp", "quic"):
        raise CliError("proxy forwards stream transports (tcp, tls, websocket, grpc), "
                       f"not {args.transport}")
    import random

    stop = asyncio.Event()  # SIGTERM stops cleanly from here on (before the ready line)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    host, port = args.upstream
    fp = FaultProxy(host, port, args.host, args.port, latency=args.latency,
                    jitter=args.jitter, bandwidth=args.bandwidth or None,
                    chunk_size=args.chunk_size, reset_every=args.reset_every,
                    rng=random.Random(args.seed))
    try:
        await fp.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: "
                       f"{exc.strerror or exc}") from None
    print(f"proxy on {fp.host}:{fp.port} -> {host}:{port}", flush=True)
    hole = loop.call_later(args.blackhole_after, fp.blackhole, True) \
        if args.blackhole_after is not None else None
    def blackholed() -> bool:
        return hole is not None and hole.when() <= loop.time()

    try:
        if sys.stdout.isatty():
            view = asyncio.create_task(_rich_view(fp, blackholed))
        else:
            view = asyncio.create_task(_plain_view(fp, blackholed))
        try:
            await stop.wait()
        finally:
            view.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await view
    finally:
        if hole is not None:
            hole.cancel()
        await fp.close()
    return 0


async def _plain_view(fp: FaultProxy, blackholed: Any) -> None:
    last: tuple[Any, ...] = ()
    while True:
        await asyncio.sleep(1.0)
        now = _counts(fp, blackholed())
        if now != last:
            print(_line(now), flush=True)
            last = now


async def _rich_view(fp: FaultProxy, blackholed: Any) -> None:
    from rich.table import Table

    def render() -> Table:
        conns, nbytes, resets, hole = _counts(fp, blackholed())
        t = Table(title=f"proxy {fp.host}:{fp.port} -> {fp.upstream[0]}:{fp.upstream[1]}",
                  header_style="bold")
        for col in ("connections", "bytes forwarded", "resets", "black hole"):
            t.add_column(col, justify="right")
        t.add_row(str(conns), str(nbytes), str(resets), "yes" if hole else "no")
        return t

    await run_live(render, lambda: _line(_counts(fp, blackholed())), rich_view=True)
