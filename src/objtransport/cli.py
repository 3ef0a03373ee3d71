"""The ``objtransport`` command: ``demo``, ``serve``, ``send``, ``bench``, ``proxy``,
``stats`` (each subcommand lives in its own ``cli_*`` module; this one builds the parser,
runs the demo and turns every error into one line on stderr with a non-zero exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from . import __version__, cli_bench, cli_proxy, cli_send, cli_serve, cli_stats
from .cli_common import CliError, HelpFormatter, Parser, add_transport_options, stderr_line
from .config import TransportKind
from .exceptions import TransportError
from .sansio.events import Message
from .service import NetworkTransport
from .testing import eventually

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
One asyncio API to exchange messages over TCP, TLS, UDP, WebSocket, gRPC and QUIC.

Run "objtransport COMMAND --help" for the options of a command, with their defaults.

examples:
  objtransport demo
  objtransport serve --port 7000 --live
  objtransport send 127.0.0.1:7000 hello
  objtransport send 127.0.0.1:7000 --file big.bin
  objtransport bench --size 64,1KiB,64KiB --compare --plot bench.png
  objtransport proxy 127.0.0.1:7000 --port 7001 --latency 50ms --reset-every 1MB
  objtransport serve --metrics-port 9100 & objtransport stats 127.0.0.1:9100
"""


def _table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional
        print(f"\n{title}")
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
        return
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)


async def demo(count: int = 1000) -> int:
    """Run the demo; return the exit status."""
    started = time.perf_counter()
    async with NetworkTransport(keepalive_interval=0.2) as net:
        async def echo(msg: Message) -> None:
            await net.send_data(msg.conn_id, b"echo:" + msg.data)

        listener = await net.listen("127.0.0.1", 0, handler=echo)
        print(f"listening on {listener.host}:{listener.port} ({listener.transport})")
        conn = await net.connect("127.0.0.1", listener.port)
        print(f"connected: connection {conn}")
        for i in range(count):
            await net.send_data(conn, f"message {i}".encode())
        replies = [await net.receive(conn, timeout=10.0) for _ in range(count)]
        assert replies[0].data == b"echo:message 0", replies[0]
        assert replies[-1].data == f"echo:message {count - 1}".encode()
        print(f"sent {count} messages, received {len(replies)} echoes in order")
        used = {await net.send_to("127.0.0.1", listener.port, f"pooled {i}".encode())
                for i in range(50)}
        for _ in range(50):
            await net.receive(timeout=10.0)
        print(f"send_to: 50 messages through the pool over {len(used)} pooled connection(s)")
        big = bytes(range(256)) * 4096  # 1 MiB
        await net.send_data(conn, big)
        reply = await net.receive(conn, timeout=10.0)
        assert reply.data == b"echo:" + big
        print("1 MiB message: fragmented, reassembled and echoed intact")
        try:  # a few keepalive round trips for the latency figure
            await eventually(lambda: net.get_metrics().latency_samples >= 3, timeout=3.0)
        except TimeoutError:
            print("(fewer than 3 latency samples so far)")
        m = net.get_metrics()
        _table("objtransport metrics", [
            ("total_connections", m.total_connections),
            ("active_connections", m.active_connections),
            ("total_messages (sent)", m.total_messages),
            ("messages_received", m.messages_received),
            ("total_bytes_sent", m.total_bytes_sent),
            ("total_bytes_received", m.total_bytes_received),
            ("avg_latency_ms (PING/PONG)", f"{m.avg_latency_ms:.3f}"),
            ("p99_latency_ms", f"{m.p99_latency_ms:.3f}"),
            ("latency_samples", m.latency_samples),
            ("pooled_connections", m.pooled_connections),
            ("errors", m.errors),
        ])
        info = net.connection_info(conn)
        _table(f"connection {conn}", [
            ("state", info.state), ("peer", f"{info.host}:{info.port}"),
            ("bytes_sent", info.bytes_sent), ("bytes_received", info.bytes_received),
            ("message_count", info.message_count),
            ("circuit_breaker", info.circuit_breaker.state),
        ])
        await net.disconnect(conn)
        await _other_transports(net, echo)
    print(f"demo finished in {time.perf_counter() - started:.2f} s")
    return 0


def _demo_tls(transport: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """QUIC is always TLS: a throw-away certificate the demo client trusts explicitly."""
    if transport != "quic":
        return {}, {}
    from .drivers.quic_config import demo_certificate

    chain, key = demo_certificate("127.0.0.1")
    return {"certificate_chain": chain, "private_key": key}, {"root_certificates": chain}


async def _other_transports(net: NetworkTransport, echo: Any, count: int = 200) -> None:
    """The same exchange over every other transport installed: one row each."""
    rows: list[tuple[str, Any]] = []
    for transport in net.transports:
        if transport == "tcp":
            continue
        kind = TransportKind.parse(transport)
        server_tls, client_tls = _demo_tls(transport)
        listener = await net.listen("127.0.0.1", 0, handler=echo, transport=kind, **server_tls)
        conn = await net.connect("127.0.0.1", listener.port, transport=kind, **client_tls)
        t = time.perf_counter()
        for i in range(count):
            await net.send_data(conn, f"{transport} {i}".encode())
        best_effort = transport == "udp"  # datagrams may be lost: count, do not fail
        replies = []
        try:
            for _ in range(count):
                replies.append(await net.receive(conn, timeout=2.0 if best_effort else 10.0))
        except TimeoutError:
            if not best_effort:
                raise
        elapsed = time.perf_counter() - t
        got = [r.data for r in replies]
        want = [f"echo:{transport} {i}".encode() for i in range(count)]
        ok = got == want or (best_effort and set(got) <= set(want))
        info = net.connection_info(conn)
        rtt = f", RTT {info.rtt_ms:.2f} ms" if info.rtt_ms is not None else ""
        what = "in order" if got == want else f"of {count} (best effort)" if ok else "WRONG"
        rows.append((transport, f"{len(got)} echoes {what} in {elapsed * 1000:.0f} ms{rtt}"))
        await net.disconnect(conn)
        await listener.close()
        if not ok:
            raise SystemExit(f"{transport}: echoes out of order or missing")
    if rows:
        _table("other transports (port 0 on 127.0.0.1, native framing)", rows)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (``objtransport --help`` is plain text)."""
    parser = Parser(prog="objtransport", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log at INFO level (-vv: DEBUG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    d = sub.add_parser("demo", help="a listener and a client on 127.0.0.1, then metrics",
                       formatter_class=HelpFormatter,
                       description="A listener and a client on 127.0.0.1 exchange messages "
                                   "both ways, through a connection and through the pool; "
                                   "the metrics are printed; then the same exchange runs "
                                   "over every other transport installed.")
    d.add_argument("--count", type=int, default=1000, help="messages each way")
    server = Parser(add_help=False)
    add_transport_options(server, server=True, framing_default="auto")
    client = Parser(add_help=False)
    add_transport_options(client, server=False)
    cli_serve.add_parser(sub, [server], HelpFormatter)
    cli_send.add_parser(sub, [client], HelpFormatter)
    cli_bench.add_parser(sub, HelpFormatter)
    cli_proxy.add_parser(sub, [client], HelpFormatter)
    cli_stats.add_parser(sub, HelpFormatter)
    parser.commands = MappingProxyType(sub.choices)
    return parser


T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (``objtransport[speed]``), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _run_fast(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return asyncio.run(demo(args.count))
    if args.command == "serve":
        return _run_fast(cli_serve.serve(args))
    if args.command == "send":
        return asyncio.run(cli_send.send(args))
    if args.command == "proxy":
        return asyncio.run(cli_proxy.proxy(args))
    if args.command == "bench":
        return cli_bench.bench(args)
    return cli_stats.stats(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (0 ok, 1 error, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `send HOST:PORT --opt x hello`: argparse has already matched MESSAGE (nargs="*")
        # before the options, so the words after them come back unparsed
        if getattr(args, "command", None) == "send" and not any(e.startswith("-") for e in extra):
            args.messages = [*args.messages, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else \
        logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, TransportError, OSError, ValueError, TimeoutError) as exc:
        stderr_line(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback with -v
        if args.verbose:
            logging.getLogger("objtransport.cli").exception("unexpected error")
        stderr_line(f"{type(exc).__name__}: {exc} (run with -v for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
