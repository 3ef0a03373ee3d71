"""``objtransport bench``: throughput and ping-pong between two processes, a table, the
baselines of ``make bench`` next to it (``--compare``) and a plot (``--plot``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import cli_bench_workers as bw
from .cli_common import CliError, Parser, TransportArgs, parse_size, transport_choices

__all__ = ["add_parser", "bench", "plot"]

DESCRIPTION = """\
Measure objtransport between two processes on 127.0.0.1 and print a table.

  throughput  a sender sends --count messages of each --size as fast as it can; the
              receiver's rate (msg/s, MB/s) from its first message to its last, the loss
              for udp, and the CPU time per message of each process
  pingpong    --rounds round trips of 64-byte messages: p50 and p99 in µs

--transport and --size take comma-separated lists (every pair is measured). Larger
sizes send fewer messages: at most --max-bytes per run.

--compare runs the baselines of "make bench" beside objtransport, where installed:
plain asyncio and pyzmq for tcp, asyncio for udp, websockets for websocket, grpc.aio for
grpc (it needs the benchmarks/ directory of a source checkout).

--plot out.png draws msg/s and MB/s against message size for each transport and the
latency CDF (it adds the ping-pong runs; needs objtransport[plot], i.e. matplotlib).

examples:
  objtransport bench --size 64,1KiB,64KiB --count 20000
  objtransport bench --transport tcp,websocket --compare
  objtransport bench --transport tcp,udp --size 64,1KiB,16KiB --plot bench.png
"""


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in transport_choices()]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown transport {', '.join(bad) or text!r}: choose from "
            f"{', '.join(transport_choices())}")
    return names


def _sizes(text: str) -> list[int]:
    return [parse_size(s) for s in text.split(",") if s.strip()]


def add_parser(sub: argparse._SubParsersAction[Parser],
               formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("bench", help="throughput or ping-pong between two processes",
                       description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("--mode", choices=["throughput", "pingpong", "both"], default="throughput",
                   help="what to measure (--plot adds pingpong)")
    p.add_argument("--size", "-s", type=_sizes, default="1KiB", metavar="SIZES",
                   help="message sizes, comma-separated (64,1KiB,1MiB)")
    p.add_argument("--count", "-n", type=int, default=10_000,
                   help="messages per throughput run")
    p.add_argument("--max-bytes", type=parse_size, default="256MB", metavar="SIZE",
                   help="at most this many bytes per throughput run (fewer messages "
                        "for large sizes)")
    p.add_argument("--rounds", type=int, default=2_000, help="round trips per ping-pong run")
    p.add_argument("--compare", action="store_true",
                   help="add the baselines of make bench (asyncio, pyzmq, websockets, "
                        "grpc.aio) where installed")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="draw msg/s, MB/s against size and the latency CDF into this file")
    g = p.add_argument_group("transport")
    g.add_argument("--transport", "-t", type=_names, default="tcp", metavar="NAMES",
                   help=f"comma-separated: {', '.join(transport_choices())}")
    g.add_argument("--framing", choices=["native", "raw"], default="native",
                   help="native (objtransport frames) or raw ({packet, 4})")
    g.add_argument("--tls", action="store_true", help="TLS over websocket or grpc")
    g.add_argument("--cert", metavar="PEM", type=Path, default=None,
                   help="the listener's certificate chain (PEM), for TLS")
    g.add_argument("--key", metavar="PEM", type=Path, default=None,
                   help="private key (PEM) of --cert")
    g.add_argument("--ca", metavar="PEM", type=Path, default=None,
                   help="CA bundle (PEM) the client checks the certificate against")
    g.add_argument("--insecure", action="store_true",
                   help="TLS without checking the certificate (for testing only)")


# -- baselines -----------------------------------------------------------------------------

def _benchmarks() -> Any:
    """The repository's ``benchmarks`` package (importable, or beside the source tree)."""
    if importlib.util.find_spec("benchmarks") is None:
        root = Path(__file__).resolve().parents[2]
        if not (root / "benchmarks" / "workers.py").is_file():
            raise CliError("--compare needs the benchmarks/ directory of a source checkout "
                           "(the baselines of make bench): run it from the repository")
        sys.path.insert(0, str(root))  # spawned peers inherit sys.path
    try:
        return importlib.import_module("benchmarks.cases")
    except ImportError as exc:
        raise CliError(f"--compare: cannot load the baselines: {exc}") from None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


Pair = tuple[Callable[..., Any], Callable[..., Any]]


def baselines(transport: str, tls: bool) -> tuple[dict[str, Pair], dict[str, Pair]]:
    """({name: (recv, send)}, {name: (echo, ping)}) of the baselines for ``transport``
    that are installed; none for TLS (the baselines are plaintext)."""
    if tls:
        return {}, {}
    cases = _benchmarks()
    w, udp, ws, gr = cases.w, cases.udp_, cases.ws, cases.gr
    tp: dict[str, Pair] = {}
    pp: dict[str, Pair] = {}
    if transport == "tcp":
        tp["asyncio"] = (w.recv_asyncio, w.send_asyncio)
        pp["asyncio"] = (w.echo_asyncio, w.ping_asyncio)
        if _installed("zmq"):
            tp["pyzmq"] = (w.recv_pyzmq, w.send_pyzmq)
            pp["pyzmq"] = (w.echo_pyzmq, w.ping_pyzmq)
    elif transport == "udp":
        tp["asyncio"] = (udp.recv_asyncio, udp.send_asyncio)
    elif transport == "websocket" and _installed("websockets"):
        tp["websockets"] = (ws.recv_plain, ws.send_plain)
        pp["websockets"] = (ws.echo_plain, ws.ping_plain)
    elif transport == "grpc" and _installed("grpc") and _installed("grpc_tools"):
        tp["grpc.aio"] = (gr.recv_plain, gr.send_plain)
        pp["grpc.aio"] = (gr.echo_plain, gr.ping_plain)
    return tp, pp


# -- running ----------------------------------------------------------------------------------

def _targs(args: argparse.Namespace, name: str) -> TransportArgs:
    ns = argparse.Namespace(**{**vars(args), "transport": name})
    return TransportArgs.from_args(ns)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace) -> list[bw.Run]:
    """Every run the arguments ask for, in order; progress lines go to stderr."""
    runs: list[bw.Run] = []
    modes = {"throughput", "pingpong"} if args.mode == "both" or args.plot else {args.mode}
    for name in args.transport:
        targs = _targs(args, name)
        label = targs.label
        lossy = targs.transport == "udp"
        tp: dict[str, Pair] = {"objtransport": (partial(bw.recv_ours, targs=targs,
                                                        lossy=lossy),
                                                partial(bw.send_ours, targs=targs))}
        pp: dict[str, Pair] = {"objtransport": (partial(bw.echo_ours, targs=targs),
                                                partial(bw.ping_ours, targs=targs))}
        if args.compare:
            more_tp, more_pp = baselines(targs.transport, targs.tls)
            tp.update(more_tp)
            pp.update(more_pp)
        if "throughput" in modes:
            for size in args.size:
                count = max(100, min(args.count, args.max_bytes // max(1, size)))
                for impl, (recv, send) in tp.items():
                    _say(f"bench: {label} {impl} {size} B x {count} ...")
                    try:
                        r = bw.throughput(recv, send, size, count, lossy=lossy)
                    except CliError as exc:  # reported in the table; the others go on
                        _say(f"bench: {label} {impl} {size} B FAILED: {exc}")
                        runs.append(bw.Run(label, impl, size, count, error=str(exc)))
                        continue
                    runs.append(bw.Run(label, impl, size, count, *r))
        if "pingpong" in modes:
            for impl, (echo, ping) in pp.items():
                _say(f"bench: {label} {impl} ping-pong x {args.rounds} ...")
                try:
                    samples, pcpu, ecpu = bw.latency(echo, ping, args.rounds,
                                                     max(10, args.rounds // 10))
                except CliError as exc:
                    _say(f"bench: {label} {impl} ping-pong FAILED: {exc}")
                    runs.append(bw.Run(label, impl, 64, args.rounds, error=str(exc),
                                       samples_us=[]))
                    continue
                runs.append(bw.Run(label, impl, 64, args.rounds, sender_cpu_us=pcpu,
                                   receiver_cpu_us=ecpu, samples_us=samples))
    return runs


def _pct(samples: list[float], p: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * p / 100))]


def table(runs: list[bw.Run]) -> None:
    """Print the throughput and ping-pong tables (rich when installed, plain otherwise)."""
    tp = [r for r in runs if not r.samples_us and not r.error]
    pp = [r for r in runs if r.samples_us]
    failed = [r for r in runs if r.error]
    sections: list[tuple[str, list[str], list[list[str]]]] = []
    if tp:
        sections.append(("throughput (receiver side)",
                         ["transport", "impl", "size B", "count", "msg/s", "MB/s", "loss %",
                          "CPU µs tx", "CPU µs rx"],
                         [[r.transport, r.impl, str(r.size), str(r.count), f"{r.msg_s:,.0f}",
                           f"{r.mb_s:,.1f}", f"{r.loss_pct:.1f}", f"{r.sender_cpu_us:.1f}",
                           f"{r.receiver_cpu_us:.1f}"] for r in tp]))
    if pp:
        sections.append(("ping-pong, 64 B round trips",
                         ["transport", "impl", "rounds", "p50 µs", "p99 µs", "lost",
                          "CPU µs ping", "CPU µs echo"],
                         [[r.transport, r.impl, str(r.count), f"{_pct(r.samples_us, 50):.0f}",
                           f"{_pct(r.samples_us, 99):.0f}", str(r.count - len(r.samples_us)),
                           f"{r.sender_cpu_us:.1f}", f"{r.receiver_cpu_us:.1f}"]
                          for r in pp]))
    if failed:
        sections.append(("failed runs", ["transport", "impl", "size B", "error"],
                         [[r.transport, r.impl, str(r.size), r.error[:100]] for r in failed]))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for title, cols, rows in sections:
            widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
            print(title)
            for row in [cols, *rows]:
                print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        return
    console = Console() if sys.stdout.isatty() else Console(width=140)
    for title, cols, rows in sections:
        t = Table(title=title, header_style="bold")
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i < 2 else "right", no_wrap=True)
        for row in rows:
            t.add_row(*row)
        console.print(t)


def plot(runs: list[bw.Run], path: Path) -> None:
    """msg/s and MB/s against size per transport and implementation, and the latency CDF."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'objtransport[plot]'") from None
    fig, (ax_msg, ax_mb, ax_cdf) = plt.subplots(1, 3, figsize=(16, 4.8))
    series: dict[str, list[bw.Run]] = {}
    for r in runs:
        if not r.samples_us and not r.error:
            series.setdefault(f"{r.transport} {r.impl}", []).append(r)
    for name, rs in series.items():
        rs.sort(key=lambda r: r.size)
        sizes = [r.size for r in rs]
        style = "-" if rs[0].impl == "objtransport" else "--"
        ax_msg.plot(sizes, [r.msg_s for r in rs], style, marker="o", label=name)
        ax_mb.plot(sizes, [r.mb_s for r in rs], style, marker="o", label=name)
    for ax, unit in ((ax_msg, "messages/s"), (ax_mb, "MB/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(unit)
        ax.set_title(f"throughput, {unit}")
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize="small")
    for r in runs:
        if r.samples_us:
            n = len(r.samples_us)
            ax_cdf.plot(r.samples_us, [(i + 1) / n for i in range(n)],
                        "-" if r.impl == "objtransport" else "--",
                        label=f"{r.transport} {r.impl}")
    ax_cdf.set_xscale("log")
    ax_cdf.set_xlabel("round trip (µs)")
    ax_cdf.set_ylabel("fraction of round trips")
    ax_cdf.set_title("latency CDF, 64 B ping-pong")
    ax_cdf.grid(True, alpha=0.3)
    if any(r.samples_us for r in runs):
        ax_cdf.legend(fontsize="small")
    fig.suptitle("objtransport bench (127.0.0.1, two processes)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise CliError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def bench(args: argparse.Namespace) -> int:
    if args.count < 1 or args.rounds < 1 or not args.size or min(args.size) < 1:
        raise CliError("--count, --rounds and every --size must be at least 1")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise CliError("--plot needs matplotlib: pip install 'objtransport[plot]'")
    runs = run_all(args)
    table(runs)
    if args.plot is not None:
        plot(runs, args.plot)
        print(f"plot written to {args.plot}")
    ours = [r for r in runs if r.error and r.impl == "objtransport"]
    if ours:
        raise CliError(f"{len(ours)} objtransport run(s) failed (see the table)")
    return 0

