"""``python -m benchmarks``: objtransport next to its baselines, measured in the same run.

Sender and receiver run in separate processes on 127.0.0.1. Each figure is the median of
interleaved repetitions (rep 1 of every case, then rep 2, ...), with min-max. Results also go
to benchmarks/results/last.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from .cases import CASES, Case
from .runner import Result


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "error"
    if unit == "msg/s":
        return f"{v / 1e3:,.0f}k" if v < 1e6 else f"{v / 1e6:,.2f}M"
    return f"{v:,.0f}" if unit == "MB/s" else f"{v:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="run cases whose name contains this")
    ap.add_argument("--malloc", action="store_true",
                    help="MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=268435456")
    args = ap.parse_args(argv)
    if args.malloc:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "1048576"
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "268435456"
    reps = 1 if args.quick else args.reps
    scale = 0.2 if args.quick else 1.0
    cases = [c for c in CASES if args.only in c.name]
    results: dict[str, dict[str, list[Result]]] = {c.name: {} for c in cases}
    started = time.time()
    print(f"objtransport benchmarks: {reps} rep(s), malloc tuning "
          f"{'on' if args.malloc else 'off'}, python {sys.version.split()[0]}", flush=True)
    for rep in range(reps):
        for case in cases:
            for impl, run in case.impls.items():
                res = run(scale)
                results[case.name].setdefault(impl, []).append(res)
                shown = _fmt(res.value, case.unit) if res.value is not None else res.error
                print(f"  rep {rep + 1} {case.name:<22} {impl:<14} {shown}", flush=True)
    table = summarize(cases, results)
    render(cases, table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "last.json").write_text(json.dumps(
        {"when": started, "reps": reps, "malloc": args.malloc, "cases": table}, indent=2))
    print(f"finished in {time.time() - started:.0f} s; results in benchmarks/results/last.json")
    return 0


def summarize(cases: list[Case], results: dict[str, dict[str, list[Result]]]
              ) -> dict[str, dict[str, dict[str, float | str | None]]]:
    table: dict[str, dict[str, dict[str, float | str | None]]] = {}
    for case in cases:
        row: dict[str, dict[str, float | str | None]] = {}
        for impl, rs in results[case.name].items():
            vals = [r.value for r in rs if r.value is not None]
            if not vals:
                row[impl] = {"median": None, "error": rs[0].error}
                continue
            p99 = [r.extra["p99"] for r in rs if "p99" in r.extra]
            row[impl] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                         "p99": statistics.median(p99) if p99 else None}
        table[case.name] = row
    return table


def render(cases: list[Case], table: dict[str, dict[str, dict[str, float | str | None]]]
           ) -> None:
    lines = []
    for case in cases:
        row = table[case.name]
        ours = row.get("objtransport", {}).get("median")
        cells = []
        for impl in case.impls:
            d = row.get(impl, {})
            med = d.get("median")
            if not isinstance(med, float | int):
                cells.append(f"{impl}: error ({d.get('error', '')})")
                continue
            text = f"{impl}: {_fmt(med, case.unit)} [{_fmt(d['min'], case.unit)}-" \
                   f"{_fmt(d['max'], case.unit)}]"  # type: ignore[arg-type]
            if d.get("p99") is not None:
                text += f" p99 {d['p99']:,.0f}"
            if impl != "objtransport" and isinstance(ours, float | int) and med:
                if case.unit == "µs":
                    text += f" (ours {ours - med:+,.0f} µs)"
                else:
                    text += f" (ours {ours / med:.2f}x)"
            cells.append(text)
        lines.append((case, cells))
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        for case, cells in lines:
            print(f"{case.name} ({case.unit}), target: {case.target}")
            for c in cells:
                print(f"    {c}")
        return
    t = Table(title="objtransport vs baselines (median of reps, min-max)")
    t.add_column("case")
    t.add_column("unit")
    t.add_column("results (ratio = objtransport / baseline)")
    t.add_column("target")
    for case, cells in lines:
        t.add_row(case.name, case.unit, escape("\n".join(cells)), escape(case.target))
    Console(width=160).print(t)


if __name__ == "__main__":
    sys.exit(main())
