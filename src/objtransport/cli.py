"""The ``objtransport`` command.

* ``objtransport demo``: a listener and a client on 127.0.0.1 exchange messages both ways,
  through a connection and through the pool, then the metrics are printed; then the same
  exchange over every other transport installed (UDP, WebSocket, gRPC).
* ``objtransport serve --port P [--framing raw|native|auto]``: an echo listener.
* ``objtransport send HOST PORT MESSAGE... [--raw]``: send messages, print the replies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Framing, TransportKind
from .sansio.events import Message
from .service import NetworkTransport
from .testing import eventually

__all__ = ["main"]


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


async def _other_transports(net: NetworkTransport, echo: Any, count: int = 200) -> None:
    """The same exchange over every other transport installed: one row each."""
    rows: list[tuple[str, Any]] = []
    for transport in net.transports:
        if transport == "tcp":
            continue
        kind = TransportKind.parse(transport)
        listener = await net.listen("127.0.0.1", 0, handler=echo, transport=kind)
        conn = await net.connect("127.0.0.1", listener.port, transport=kind)
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


async def serve(host: str, port: int, framing: str) -> int:
    async with NetworkTransport() as net:
        async def echo(msg: Message) -> None:
            await net.send_data(msg.conn_id, msg.data)

        listener = await net.listen(host, port, handler=echo, framing=Framing.parse(framing))
        print(f"echo listener on {listener.host}:{listener.port} (framing={framing}); "
              "Ctrl-C stops", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
    return 0


async def send(host: str, port: int, messages: list[str], raw: bool, timeout: float) -> int:
    async with NetworkTransport() as net:
        conn = await net.connect(host, port, framing="raw" if raw else "native",
                                 timeout=timeout)
        for text in messages:
            await net.send_data(conn, text.encode())
        for _ in messages:
            msg = await net.receive(conn, timeout=timeout)
            print(msg.data.decode("utf-8", "replace"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="objtransport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="listener and client on 127.0.0.1, then metrics")
    d.add_argument("--count", type=int, default=1000)
    s = sub.add_parser("serve", help="run an echo listener")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7000)
    s.add_argument("--framing", choices=["native", "raw", "auto"], default="auto")
    c = sub.add_parser("send", help="send messages and print the replies")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("messages", nargs="+")
    c.add_argument("--raw", action="store_true", help="{packet, 4} framing")
    c.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            return asyncio.run(demo(args.count))
        if args.command == "serve":
            return asyncio.run(serve(args.host, args.port, args.framing))
        return asyncio.run(send(args.host, args.port, args.messages, args.raw, args.timeout))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one readable line for the command line
        print(f"objtransport: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
