"""iperf3 (C, bytes only) as the bulk TCP baseline: what the kernel's loopback allows.

``iperf3 -s -1`` serves one test on 127.0.0.1; ``iperf3 -c ... -J -l SIZE -n SIZE*COUNT``
sends ``COUNT`` writes of ``SIZE`` bytes. The rate is the receiver's (``end.sum_received``
of the client's JSON report). CPU per message is user + sys of each iperf3 process over its
whole life (``os.wait4``), divided by ``COUNT``: start-up is included, a few ms in a run of
about a second. The event loop does not apply.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

from .runner import CASE_TIMEOUT, BenchError, Result

INSTALL_HINT = "apt-get install iperf3 (make bench does it when run as root)"


def version() -> str | None:
    """``iperf3 --version``'s first line, or None when iperf3 is not installed."""
    exe = shutil.which("iperf3")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Reap ``proc``: ``(exit code, user + sys CPU seconds)``; kill it after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if time.monotonic() > end:
            proc.kill()
            timeout = 5.0
            end = time.monotonic() + timeout
        time.sleep(0.02)


def _client(exe: str, port: int, size: int, count: int) -> tuple[dict[str, Any], float]:
    """Run the client; its JSON report and CPU seconds. Retries while the server starts."""
    cmd = [exe, "-c", "127.0.0.1", "-p", str(port), "-J", "-l", str(size),
           "-n", str(size * count)]
    report: dict[str, Any] = {}
    for _ in range(20):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        raw = proc.stdout.read()
        proc.stdout.close()
        code, cpu = _wait(proc, CASE_TIMEOUT)
        report = json.loads(raw or b"{}")
        if code == 0 and "error" not in report:
            return report, cpu
        if "connect" not in str(report.get("error", "")):
            break
        time.sleep(0.1)  # the server is not listening yet
    raise BenchError(f"iperf3 client failed: {report.get('error', 'no report')}")


def throughput(size: int, count: int, unit: str, loop: str) -> Result:
    """Receiver-side MB/s (or msg/s) of ``count`` writes of ``size`` bytes over loopback."""
    exe = shutil.which("iperf3")
    if exe is None:
        raise BenchError(f"iperf3 is not installed: {INSTALL_HINT}")
    port = _free_port()
    server = subprocess.Popen([exe, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report, tx_cpu = _client(exe, port, size, count)
    finally:
        _, rx_cpu = _wait(server, 10.0)
    received = report["end"]["sum_received"]
    nbytes, seconds = float(received["bytes"]), float(received["seconds"])
    # The server stops counting when the client ends the test: what is still in the socket
    # buffers (a few MB) is not in its total, nor in its seconds. The rate stays right.
    if nbytes <= 0 or seconds <= 0:
        raise BenchError(f"iperf3 received {nbytes:.0f} bytes in {seconds} s")
    value = nbytes / seconds / 1e6 if unit == "MB/s" else nbytes / size / seconds
    return Result(value, sender_cpu_us=tx_cpu / count * 1e6,
                  receiver_cpu_us=rx_cpu / count * 1e6, timed_s=seconds)
