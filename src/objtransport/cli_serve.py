"""``objtransport serve``: an echo or sink listener, with an optional live view and a
Prometheus endpoint."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from .cli_common import CliError, Parser, TransportArgs, parse_port
from .cli_live import EventTail, ServeView, run_live
from .sansio.events import Message
from .service import NetworkTransport

#: what ``--workers N`` serves (every listener of these takes ``reuse_port=True``)
_WORKER_TRANSPORTS = ("tcp", "udp", "websocket", "grpc", "quic")

__all__ = ["add_parser", "serve"]

DESCRIPTION = """\
Run a listener until Ctrl-C (or SIGTERM).

  echo  sends every message back to its sender (the default)
  sink  counts and discards what it receives

It prints one line when it is listening: "<mode> listener on HOST:PORT (...)"; with
--port 0 read the port from there. --live shows a table refreshed every second
(connections, rates, RTT, breaker state, the last events) when stdout is a terminal,
one plain line per second otherwise. --metrics-port serves the figures for Prometheus
(http://HOST:PORT/metrics; needs objtransport[prometheus]).

examples:
  objtransport serve --port 7000 --live
  objtransport serve --transport tls --cert server.pem --key server.key
  objtransport serve --transport websocket --mode sink --metrics-port 9100
"""


def add_parser(sub: argparse._SubParsersAction[Parser],
               common: list[Parser],
               formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("serve", help="run an echo or sink listener", description=DESCRIPTION,
                       parents=common, formatter_class=formatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", "-p", type=parse_port, default=7000, help="port (0: any free port)")
    p.add_argument("--mode", choices=["echo", "sink"], default="echo",
                   help="echo: send each message back; sink: discard")
    p.add_argument("--live", action="store_true",
                   help="show connections, rates, RTT, breaker and events every second")
    p.add_argument("--metrics-port", type=parse_port, default=None, metavar="PORT",
                   help="serve Prometheus metrics on this port (0: any; off when unset)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address of the metrics endpoint")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="listener processes sharing the port (SO_REUSEPORT; TCP, TLS, UDP, "
                   "WebSocket, gRPC, QUIC); a dead one is restarted, SIGTERM stops all")


async def serve(args: argparse.Namespace) -> int:
    targs = TransportArgs.from_args(args)
    if args.workers != 1:
        return await _serve_workers(args, targs)
    listen_kwargs = targs.listen_kwargs()
    if args.live:
        _check_rich()
    if args.metrics_port is not None:  # checked before listening
        try:
            from .exporters.prometheus import serve_metrics
        except ImportError:
            raise CliError("--metrics-port needs prometheus-client: pip install "
                           "'objtransport[prometheus]'") from None
    stop = asyncio.Event()  # SIGTERM stops cleanly from here on (before the ready line)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with NetworkTransport() as net:
        async def echo(msg: Message) -> None:
            await net.send_data(msg.conn_id, msg.data)

        def sink(msg: Message) -> None:
            pass

        listener = await net.listen(args.host, args.port,
                                    handler=echo if args.mode == "echo" else sink,
                                    **listen_kwargs)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # asyncio, uvloop
        print(f"{args.mode} listener on {listener.host}:{listener.port} ({targs.label}, "
              f"framing={targs.framing}, {loop} loop); Ctrl-C stops", flush=True)
        if args.metrics_port is not None:
            server = await serve_metrics(net, args.metrics_port, args.metrics_host)
            print(f"metrics on http://{args.metrics_host}:{server.port}/metrics", flush=True)
        else:
            server = None
        try:
            await _run_until(stop, net, args, f"objtransport {args.mode} "
                                    f"{listener.host}:{listener.port} ({targs.label})")
        finally:
            if server is not None:
                await server.close()
    return 0


async def _serve_workers(args: argparse.Namespace, targs: TransportArgs) -> int:
    """``--workers N``: N processes on one port (:func:`objtransport.serve`)."""
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if targs.transport not in _WORKER_TRANSPORTS or args.live:
        raise CliError("--workers > 1 serves TCP, TLS, UDP, WebSocket, gRPC or QUIC, without "
                       "--live")
    tls: dict[str, Any] = {}
    if targs.tls:
        if targs.cert is None or targs.key is None:
            raise CliError("a TLS listener needs --cert and --key")
        if targs.transport == "grpc":  # PEM bytes (picklable), as grpc takes them
            tls = {k: v for k, v in targs.listen_kwargs().items()
                   if k not in ("transport", "framing")}
        else:  # paths: each worker loads them (its own SSLContext, or QUIC's PEM)
            tls = {"certfile": str(targs.cert), "keyfile": str(targs.key),
                   "cafile": str(targs.ca) if targs.ca is not None else None}
    from .workers import WorkerPool, echo, serve, sink

    def ready(pool: WorkerPool) -> None:
        print(f"{args.mode} listener on {args.host}:{pool.port} ({targs.label}, "
              f"framing={targs.framing}, {args.workers} workers: pids "
              f"{' '.join(map(str, pool.pids))}); Ctrl-C stops", flush=True)
        if pool.metrics_url is not None:
            print(f"metrics on {pool.metrics_url} (all workers; /ready, /healthz)", flush=True)

    await serve(echo if args.mode == "echo" else sink, args.host, args.port,
                workers=args.workers, transport=targs.transport, ready=ready,
                framing=targs.framing,
                metrics_port=args.metrics_port, metrics_host=args.metrics_host, **tls)
    return 0


def _check_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise CliError("--live needs rich: pip install 'objtransport[rich]'") from None


async def _run_until(stop: asyncio.Event, net: NetworkTransport, args: argparse.Namespace,
                     title: str) -> None:
    live: asyncio.Task[None] | None = None
    with EventTail(net) as tail:
        if args.live:
            view = ServeView(net, title, tail)
            live = asyncio.create_task(run_live(view.render, lambda: view.line(view.sample()),
                                                rich_view=sys.stdout.isatty()))
        try:
            await stop.wait()
        finally:
            if live is not None:
                live.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live
