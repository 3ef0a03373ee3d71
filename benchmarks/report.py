"""Folding runs into figures, and printing them: per-case detail and a summary to paste.

Every figure is the median of the reps, with min and max. A ratio is taken per rep (the
objtransport run and the baseline run of the same rep, which ran next to each other), and the
median and min-max of those per-rep ratios are reported; for latency (µs) the per-rep
difference of the p50s is reported as well.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

OURS = "objtransport"
FIGURES = ("value", "sender_cpu_us", "receiver_cpu_us")
RATIO_NOTE = ("ratio = median over reps of (objtransport / baseline) of the same rep, "
              "(range) = min-max of those per-rep ratios; µs cases (ping-pong p50) show the "
              "per-rep difference first. CPU = user+sys µs per message of the sender / "
              "receiver process (ping-pong: pinger / echo server, per round trip).")


def stats(values: Iterable[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def _by_rep(runs: list[dict[str, Any]], impl: str) -> dict[int, dict[str, Any]]:
    return {r["rep"]: r for r in runs if r["impl"] == impl and r["error"] is None}


def summarize_case(case: Any, loop: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON entry of one case on one loop, from its runs (all reps, all impls)."""
    impls: dict[str, Any] = {}
    for impl in case.impls:
        mine = [r for r in runs if r["impl"] == impl]
        ok = [r for r in mine if r["error"] is None]
        entry: dict[str, Any] = {f: stats(r[f] for r in ok) for f in FIGURES}
        for key in sorted({k for r in ok for k in r["extra"]}):
            entry[key] = stats(r["extra"].get(key) for r in ok)
        entry["errors"] = [f"rep {r['rep']}: {r['error']}" for r in mine if r["error"]]
        impls[impl] = entry
    ours = _by_rep(runs, OURS)
    ratios: dict[str, Any] = {}
    differences: dict[str, Any] = {}
    for impl in list(case.impls)[1:]:
        theirs = _by_rep(runs, impl)
        pairs = [(ours[k]["value"], theirs[k]["value"]) for k in sorted(ours) if k in theirs]
        ratios[impl] = stats(a / b for a, b in pairs if b)
        if case.unit == "µs":
            differences[impl] = stats(a - b for a, b in pairs)
    entry = {"case": case.name, "loop": loop, "unit": case.unit, "target": case.target,
             "baseline": case.baseline, "impls": impls, "ratios": ratios}
    if case.unit == "µs":
        entry["differences_us"] = differences
    return {**entry, "runs": runs}


# -- formatting ---------------------------------------------------------------------------


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "msg/s":
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"
    if unit == "µs":
        return f"{v:.0f}"
    if abs(v) < 10:  # a count per connection (objs/conn/round): its fraction matters
        return f"{v:.3f}"
    return f"{v:,.0f}"


def fmt_cpu(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_range(s: dict[str, float] | None, unit: str) -> str:
    if s is None:
        return "FAILED"
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}-{fmt(s['max'], unit)})"


def fmt_ratio(entry: dict[str, Any], impl: str) -> str:
    """``0.86x (0.70-1.16)``; for µs cases the difference first: ``+8 µs (+3..+12), 1.05x``."""
    s = entry["ratios"].get(impl)
    if s is None:
        return "-"
    text = f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"
    d = entry.get("differences_us", {}).get(impl)
    if d is None:
        return text
    return f"{d['median']:+.0f} µs ({d['min']:+.0f}..{d['max']:+.0f}), {s['median']:.2f}x"


def _cpu_pair(entry: dict[str, Any]) -> str:
    tx, rx = entry.get("sender_cpu_us"), entry.get("receiver_cpu_us")
    return (f"{fmt_cpu(tx['median'] if tx else None)} / "
            f"{fmt_cpu(rx['median'] if rx else None)}")


def run_line(run: dict[str, Any], unit: str, reps: int) -> str:
    """One line printed as soon as a run ends."""
    head = f"  rep {run['rep']}/{reps} {run['loop']:<7} {run['case']:<28} {run['impl']:<13}"
    if run["error"] is not None:
        return f"{head} FAILED: {run['error']}"
    text = (f"{head} {fmt(run['value'], unit):>7} {unit:<5} CPU µs/msg "
            f"{fmt_cpu(run['sender_cpu_us'])} / {fmt_cpu(run['receiver_cpu_us'])}")
    for key, val in run["extra"].items():
        text += f"  {key} {val:.2f}" if key.endswith("%") else f"  {key} {val:,.0f}"
    return f"{text}  [{run['wall_s']:.1f} s]"


def detail_lines(entry: dict[str, Any]) -> list[str]:
    """Every implementation of one case: median (range), CPU, comparison with objtransport."""
    unit = entry["unit"]
    lines = [f"{entry['case']} [{entry['loop']}] ({unit}), target: {entry['target']}"]
    for impl, d in entry["impls"].items():
        text = f"    {impl:<13} {fmt_range(d['value'], unit):<26} CPU {_cpu_pair(d)}"
        for key in ("p99", "loss %"):
            if d.get(key):
                text += f"  {key} {d[key]['median']:.1f}"
        if impl != OURS:
            text += f"  ours vs this: {fmt_ratio(entry, impl)}"
        if d["errors"]:
            text += f"  FAILED {len(d['errors'])}x: {d['errors'][0]}"
        lines.append(text)
    return lines


def summary_table(entries: list[dict[str, Any]]) -> list[str]:
    """A Markdown table: one row per case and loop, objtransport against its baseline."""
    lines = [
        "| case | loop | unit | objtransport median (range) | baseline | baseline median "
        "| ratio median (range) | CPU µs/msg tx / rx ours | CPU µs/msg tx / rx baseline "
        "| target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        unit, base = e["unit"], e["baseline"]
        ours, theirs = e["impls"][OURS], e["impls"][base]
        base_med = theirs["value"]["median"] if theirs["value"] else None
        lines.append(
            f"| {e['case']} | {e['loop']} | {unit} | {fmt_range(ours['value'], unit)} "
            f"| {base} | {fmt(base_med, unit) if base_med is not None else 'FAILED'} "
            f"| {fmt_ratio(e, base)} | {_cpu_pair(ours)} "
            f"| {_cpu_pair(theirs)} | {e['target']} |")
    return lines
