"""``objtransport bench``: two processes, a table, the baselines and the plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from objtransport.cli import build_parser

from .cli_helpers import one_error_line, run


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_compare_and_plot(tmp_path: Path) -> None:
    """The command end to end: both modes, every baseline, the table and the plot. The
    smallest run that covers them (one size, 100 messages per run, 20 round trips: each
    run is two spawned processes); several sizes are a list of the same runs (below), and
    speed is measured by make bench, not here."""
    png = tmp_path / "bench.png"
    proc = run("bench", "--transport", "tcp,udp", "--size", "4KiB", "--count", "100",
               "--rounds", "20", "--compare", "--plot", str(png), cwd=tmp_path, timeout=220)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "throughput (receiver side)" in out and "ping-pong, 64 B round trips" in out
    rows = [line for line in out.splitlines() if "│" in line]
    # objtransport and its baselines, for each transport: throughput and ping-pong
    for transport, impl in [("tcp", "objtransport"), ("tcp", "asyncio"), ("tcp", "pyzmq"),
                            ("udp", "objtransport"), ("udp", "asyncio")]:
        found = [r for r in rows if f"│ {transport} " in r and f" {impl} " in r]
        assert any(" 4096 " in r for r in found), (transport, impl, out)
        assert len(found) == (1 if (transport, impl) == ("udp", "asyncio") else 2), found
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # three panels drawn, not an empty canvas
    assert f"plot written to {png}" in out


def test_bench_sizes_are_a_comma_separated_list() -> None:
    """Each size is measured in turn, in the order given (the run loop of the test above)."""
    args = build_parser().parse_args(["bench", "--size", "64,4KiB, 1MiB"])
    assert args.size == [64, 4096, 1024 * 1024]


@pytest.mark.timeout(120)
def test_bench_pingpong_websocket_without_compare() -> None:
    proc = run("bench", "--mode", "pingpong", "--transport", "websocket", "--rounds", "20",
               timeout=100)
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in proc.stdout.splitlines() if "│ websocket" in r)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[1] == "objtransport" and cells[2] == "20"
    assert 0 < float(cells[3]) < float(cells[4]) * 1.0001 + 1  # p50 <= p99


def test_bench_rejects_bad_values_in_one_line() -> None:
    assert "--count" in one_error_line(run("bench", "--count", "0"))
    assert "size" in one_error_line(run("bench", "--size", "lots"))
