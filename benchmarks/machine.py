"""What the results were measured on, and the check that every baseline is there."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import workers_iperf
from .cases import REQUIRES, REQUIRES_OURS, Case

ROOT = Path(__file__).resolve().parent.parent
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX",
               "PYTHONMALLOC")
HINTS = {
    "zmq": "pip install pyzmq (make install: the bench extra)",
    "websockets": "pip install websockets (make install: the dev extra)",
    "grpc": "pip install grpcio (make install: the dev extra)",
    "grpc_tools": "pip install grpcio-tools (make install: the dev extra)",
    "uvloop": "pip install uvloop (make install: the bench extra)",
    "bin:iperf3": workers_iperf.INSTALL_HINT,
}


def _have(requirement: str) -> bool:
    if requirement.startswith("bin:"):
        return shutil.which(requirement[4:]) is not None
    return importlib.util.find_spec(requirement) is not None


def missing(cases: list[Case], loops: list[str]) -> list[str]:
    """One line per missing requirement of the selected cases and loops (empty: all there)."""
    lines = []
    if "uvloop" in loops and not _have("uvloop"):
        lines.append(f"uvloop (for --loop uvloop): {HINTS['uvloop']}")
    for case in cases:
        needs: dict[str, tuple[str, ...]] = {impl: REQUIRES.get(impl, ()) for impl in case.impls}
        for prefix, reqs in REQUIRES_OURS.items():
            if case.name.startswith(prefix):
                needs["objtransport"] = reqs
        for impl, reqs in needs.items():
            for req in reqs:
                if not _have(req):
                    lines.append(f"{req} (for {impl!r} in case {case.name!r}): {HINTS[req]}")
    return sorted(set(lines))


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _libzmq() -> str | None:
    try:
        zmq = importlib.import_module("zmq")
    except ImportError:
        return None
    return str(zmq.zmq_version())


def describe(loops: list[str]) -> dict[str, Any]:
    """The machine, the interpreter, the loops, the malloc setting and the code measured."""
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mib": _memory_mib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "loops": loops,
        "malloc": {k: os.environ[k] for k in MALLOC_VARS if k in os.environ},
        "git_commit": _run(["git", "rev-parse", "HEAD"]) or None,
        "git_branch": _run(["git", "rev-parse", "--abbrev-ref", "HEAD"]) or None,
        "git_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!benchmarks/results"])),
        "loadavg_start": list(os.getloadavg()),
        "versions": {
            "objtransport": _version("objtransport"),
            "uvloop": _version("uvloop"),
            "pyzmq": _version("pyzmq"),
            "libzmq": _libzmq(),
            "websockets": _version("websockets"),
            "grpcio": _version("grpcio"),
            "iperf3": workers_iperf.version(),
        },
    }
