"""``python -m benchmarks``: objtransport next to its baselines, measured in the same run.

Sender and receiver run in separate processes on 127.0.0.1. Reps are interleaved: rep 1 of
every case (every implementation of a case, one after the other, on every selected loop),
then rep 2, ...; the order of the implementations alternates from one rep to the next
(A B C, C B A, ...). Each figure is the median of the reps with min-max; ratios are per rep
(see :mod:`benchmarks.report`). Before anything runs, a missing baseline stops the suite;
a run that fails is reported and makes the exit status 1.

Results go to ``benchmarks/results/<UTC time>.json`` and ``benchmarks/results/last.json``
(rewritten after every rep, so an interrupted run keeps what it measured); the format is in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import machine, report
from .cases import CASES, Case, against
from .runner import LOOPS, BenchError

FORMAT = 2
RESULTS = Path(__file__).resolve().parent / "results"
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=0, help="interleaved repetitions (default 5, "
                    "--quick 1)")
    ap.add_argument("--quick", action="store_true", help="smaller counts (x0.2), 1 rep unless "
                    "--reps: to check the harness, not to measure")
    ap.add_argument("--scale", type=float, default=0.0, help="multiply message counts")
    ap.add_argument("--only", default="", help="cases whose name contains one of these "
                    "comma-separated strings (=NAME: exactly that case)")
    ap.add_argument("--loop", choices=(*LOOPS, "both"), default="default",
                    help="event loop of every peer (both: each case on each loop, interleaved)")
    ap.add_argument("--malloc", action="store_true", help="set " + " ".join(
        f"{k}={v}" for k, v in MALLOC_TUNED.items()) + " for every peer")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first failed run "
                    "(default: report it, go on, exit 1 at the end)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--against", default="", metavar="DIR", help="also run objtransport "
                    "from DIR (a checkout or its src/, e.g. `git archive` of another commit) "
                    "in every case, interleaved: an A/B of two commits in the same run")
    return ap.parse_args(argv)


def _select(only: str) -> list[Case]:
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    return [c for c in CASES if not wanted or any(
        c.name == w[1:] if w.startswith("=") else w in c.name for w in wanted)]


def _one(case: Case, impl: str, loop: str, rep: int, scale: float) -> dict[str, Any]:
    """Run one implementation of one case once; the run's record (``error`` None if ok)."""
    t0 = time.monotonic()
    run: dict[str, Any] = {"case": case.name, "loop": loop, "impl": impl, "rep": rep,
                           "value": None, "sender_cpu_us": None, "receiver_cpu_us": None,
                           "extra": {}, "error": None, "timed_s": None}
    try:
        res = case.impls[impl](scale, loop)
    except BenchError as exc:
        run["error"] = str(exc)
    except Exception as exc:  # a broken run is reported, the suite goes on
        run["error"] = f"{type(exc).__name__}: {exc}"
    else:
        run.update(value=res.value, sender_cpu_us=res.sender_cpu_us,
                   receiver_cpu_us=res.receiver_cpu_us, extra=res.extra, timed_s=res.timed_s)
    run["wall_s"] = time.monotonic() - t0
    run["loadavg_1m"] = os.getloadavg()[0]
    return run


def _write(doc: dict[str, Any], stamp: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    (RESULTS / f"{stamp}.json").write_text(text, encoding="utf-8")
    (RESULTS / "last.json").write_text(text, encoding="utf-8")


def _entries(cases: list[Case], loops: list[str], runs: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    return [report.summarize_case(case, loop, [r for r in runs if r["case"] == case.name
                                               and r["loop"] == loop])
            for case in cases for loop in loops]


def _print_report(entries: list[dict[str, Any]], reps: int) -> None:
    print(f"\nDetail: median (min-max) of {reps} rep(s); CPU µs/msg sender / receiver")
    for entry in entries:
        print("\n".join(report.detail_lines(entry)))
    print(f"\nSummary ({reps} interleaved reps). {report.RATIO_NOTE}")
    if reps < 5:
        print("Fewer than 5 reps: not figures for a closing note.")
    print()
    print("\n".join(report.summary_table(entries)))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cases = _select(args.only)
    if args.against:
        cases = [against(c, args.against) for c in cases]
    if args.list:
        for c in cases:
            print(f"{c.name:<30} {c.unit:<6} baseline {c.baseline:<12} {', '.join(c.impls)}")
        return 0
    if not cases:
        print(f"no case matches --only {args.only!r} (see --list)", file=sys.stderr)
        return 2
    loops = list(LOOPS) if args.loop == "both" else [args.loop]
    if args.malloc:
        os.environ.update(MALLOC_TUNED)  # inherited by every spawned peer
    missing = machine.missing(cases, loops)
    if missing:
        print("benchmarks cannot run: a baseline (or what it needs) is missing:\n  "
              + "\n  ".join(missing), file=sys.stderr)
        return 2
    reps = args.reps or (1 if args.quick else 5)
    scale = args.scale or (0.2 if args.quick else 1.0)
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    doc: dict[str, Any] = {
        "format": FORMAT, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "argv": sys.argv[1:] if argv is None else argv, "reps": reps, "scale": scale,
        "complete": False, "machine": machine.describe(loops),
    }
    m = doc["machine"]
    print(f"objtransport benchmarks: {len(cases)} case(s) x {len(loops)} loop(s) "
          f"({', '.join(loops)}), {reps} interleaved rep(s), scale {scale}; "
          f"{m['cores']} cores, python {m['python']}, malloc {m['malloc'] or 'default'}, "
          f"commit {(m['git_commit'] or '?')[:10]}{' (dirty)' if m['git_dirty'] else ''}, "
          f"load {m['loadavg_start'][0]:.2f}", flush=True)
    runs: list[dict[str, Any]] = []
    failed = False
    for rep in range(1, reps + 1):
        for case in cases:
            for loop in loops:
                order = list(case.impls) if rep % 2 else list(reversed(case.impls))
                for impl in order:
                    if failed:
                        break
                    runs.append(_one(case, impl, loop, rep, scale))
                    print(report.run_line(runs[-1], case.unit, reps), flush=True)
                    failed = args.fail_fast and runs[-1]["error"] is not None
        doc.update(duration_s=time.time() - started, reps_done=rep,
                   cases=_entries(cases, loops, runs))
        _write(doc, stamp)
        if failed:
            break
    entries = doc["cases"]
    errors = [f"{r['case']} [{r['loop']}] {r['impl']} rep {r['rep']}: {r['error']}"
              for r in runs if r["error"] is not None]
    m["loadavg_end"] = list(os.getloadavg())
    doc.update(complete=True, errors=errors, duration_s=time.time() - started)
    _write(doc, stamp)
    _print_report(entries, doc["reps_done"])
    per_rep = doc["duration_s"] / doc["reps_done"]
    print(f"\nfinished in {doc['duration_s']:.0f} s ({per_rep:.0f} s per rep); results in "
          f"benchmarks/results/{stamp}.json and last.json")
    if scale != 1.0:
        # a run is start-up (fixed) plus a timed section (proportional to the counts)
        full = sum(r["wall_s"] + (r["timed_s"] or 0.0) * (1 / scale - 1)
                   for r in runs) / doc["reps_done"]
        print(f"at scale 1 one rep of these cases would take about {full:.0f} s "
              f"({5 * full / 60:.0f} min for 5 reps)")
    if errors:
        print(f"\nFAILED: {len(errors)} run(s) failed; their figures are missing above:\n  "
              + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
