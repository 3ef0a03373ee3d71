"""``objtransport stats HOST:PORT``: read a ``serve --metrics-port`` endpoint and show it."""

from __future__ import annotations

import argparse
import re
import time
import urllib.error
import urllib.request

from .cli_common import CliError, Parser, parse_endpoint

__all__ = ["add_parser", "fetch", "parse", "stats"]

DESCRIPTION = """\
Read the Prometheus endpoint of a running "objtransport serve --metrics-port PORT" (or of
any process that called net.serve_metrics()) and show its objtransport figures: one row
per sample, name, labels and value. --watch N reads it again every N seconds.

examples:
  objtransport stats 127.0.0.1:9100
  objtransport stats 127.0.0.1:9100 --all --watch 2
"""

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def add_parser(sub: argparse._SubParsersAction[Parser],
               formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("stats", help="show a running serve --metrics-port endpoint",
                       description=DESCRIPTION, formatter_class=formatter)
    p.add_argument("endpoint", metavar="HOST:PORT", type=parse_endpoint,
                   help="the metrics endpoint, e.g. 127.0.0.1:9100")
    p.add_argument("--path", default="/metrics", help="HTTP path of the endpoint")
    p.add_argument("--all", action="store_true",
                   help="show every family, not only objtransport_*")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="read again every SECONDS until Ctrl-C (default: once)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="HTTP timeout")


def fetch(host: str, port: int, path: str = "/metrics", timeout: float = 5.0) -> str:
    """The text of the endpoint; raise CliError (one line) when it cannot be read."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http only)
            body: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        raise CliError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot read {url}: {getattr(reason, 'strerror', None) or reason}"
                       ) from None
    return body.decode("utf-8", "replace")


def parse(text: str) -> list[tuple[str, str, float]]:
    """(sample name, labels as written, value) for every sample of the exposition text,
    with ``prometheus_client.parser`` when it is installed."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        rows = []
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and not line.startswith("#"):
                rows.append((m.group(1), (m.group(2) or "").strip("{}"), float(m.group(3))))
        return rows
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out.append((s.name, labels, float(s.value)))
    return out


def _num(value: float) -> str:
    return f"{int(value)}" if value.is_integer() else f"{value:.6g}"


def _show(rows: list[tuple[str, str, float]], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        width = max((len(n) + len(la) + 2 for n, la, _ in rows), default=10)
        for name, labels, value in rows:
            key = f"{name}{{{labels}}}" if labels else name
            print(f"  {key:<{width}}  {_num(value)}")
        return
    table = Table(title=title, header_style="bold")
    table.add_column("metric", overflow="fold")
    table.add_column("labels", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    for name, labels, value in rows:
        table.add_row(name, labels, _num(value))
    Console().print(table)


def stats(args: argparse.Namespace) -> int:
    host, port = args.endpoint
    while True:
        rows = parse(fetch(host, port, args.path, args.timeout))
        if not args.all:
            rows = [r for r in rows if r[0].startswith("objtransport_")]
        if not rows:
            raise CliError(f"no objtransport_* metrics at {host}:{port}{args.path} "
                           "(--all shows everything)")
        _show(rows, f"{host}:{port}{args.path} at {time.strftime('%H:%M:%S')}")
        if args.watch is None:
            return 0
        time.sleep(args.watch)
