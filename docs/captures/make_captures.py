"""Regenerate the captures of docs/cli.md: run from the repository root with the dev venv,

    .venv/bin/python docs/captures/make_captures.py

It runs ``objtransport serve --live`` and ``objtransport send --file`` in a pseudo-terminal
(120 x 30), keeps the frames they drew (ANSI sequences removed), and runs
``objtransport bench --plot docs/captures/bench.png``.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
CMD = [sys.executable, "-m", "objtransport"]
ENV = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
ERASE_UP = re.compile(r"(?:\x1b\[2K)?(?:\x1b\[1A\x1b\[2K)+")


def pty_run(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen([*CMD, *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=ENV)
    os.close(slave)
    return proc, master


def read(master: int, until: float, stop: re.Pattern[str] | None = None) -> str:
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if stop is not None and stop.search(out.decode("utf-8", "replace")):
                break
    return out.decode("utf-8", "replace")


def frames(raw: str) -> list[str]:
    """The frames a rich Live drew, each as plain text."""
    parts = ERASE_UP.split(raw.replace("\r\n", "\n"))
    return [CSI.sub("", p).replace("\r", "").rstrip() for p in parts if CSI.sub("", p).strip()]


def _slow_clients(port: str, data: Path) -> list[subprocess.Popen[bytes]]:
    """Two clients sending ``data`` through a 1 MB/s proxy, one direct: a few seconds of
    traffic to look at."""
    proxy = subprocess.Popen([*CMD, "proxy", f"127.0.0.1:{port}", "--bandwidth", "1MB"],
                             stdout=subprocess.PIPE, env=ENV)
    assert proxy.stdout is not None
    pport = re.search(rb"proxy on 127\.0\.0\.1:(\d+)", proxy.stdout.readline()
                      ).group(1).decode()  # type: ignore[union-attr]
    procs = [proxy]
    for target in (pport, pport, port):
        procs.append(subprocess.Popen([*CMD, "send", f"127.0.0.1:{target}", "--file", str(data),
                                       "--chunk-size", "8KiB", "--timeout", "30"],
                                      stdout=subprocess.DEVNULL, env=ENV))
    return procs


def serve_live() -> None:
    data = HERE / "blob.bin"
    data.write_bytes(os.urandom(5_000_000))
    srv, master = pty_run(["serve", "--port", "0", "--live", "--framing", "native"])
    text = read(master, time.monotonic() + 10, re.compile(r"listener on 127\.0\.0\.1:\d+"))
    port = re.search(r"listener on 127\.0\.0\.1:(\d+)", text).group(1)  # type: ignore[union-attr]
    procs = _slow_clients(port, data)
    raw = text + read(master, time.monotonic() + 4)
    drain = threading.Thread(target=read, args=(master, time.monotonic() + 90), daemon=True)
    drain.start()  # the terminal keeps reading: a full pty would block the server
    for p in procs[1:]:
        p.wait(60)
    for p in (procs[0], srv):
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    drain.join()
    os.close(master)
    data.unlink()
    busy = [f for f in frames(raw) if "msg/s in" in f and re.search(r"│ +[1-9]/", f)]
    shot = busy[-1] if busy else frames(raw)[-1]
    (HERE / "serve-live.txt").write_text(
        "$ objtransport serve --port 7000 --live --framing native\n"
        "  (two clients send 5 MB through `objtransport proxy --bandwidth 1MB`, one directly)\n"
        f"{shot}\n")


def send_file() -> None:
    data = HERE / "blob.bin"
    data.write_bytes(os.urandom(6_000_000))
    srv = subprocess.Popen([*CMD, "serve", "--port", "0", "--framing", "native"],
                           stdout=subprocess.PIPE, env=ENV)
    assert srv.stdout is not None
    port = re.search(rb":(\d+)", srv.stdout.readline()).group(1).decode()  # type: ignore[union-attr]
    proxy = subprocess.Popen([*CMD, "proxy", f"127.0.0.1:{port}", "--bandwidth", "2MB"],
                             stdout=subprocess.PIPE, env=ENV)
    assert proxy.stdout is not None
    pport = re.search(rb"proxy on 127\.0\.0\.1:(\d+)", proxy.stdout.readline()
                      ).group(1).decode()  # type: ignore[union-attr]
    client, master = pty_run(["send", f"127.0.0.1:{pport}", "--file", str(data),
                              "--chunk-size", "64KiB", "--timeout", "20"])
    raw = read(master, time.monotonic() + 60, re.compile(r"verified: sha256 [0-9a-f]{64}"))
    client.wait(10)
    os.close(master)
    for p in (proxy, srv):
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    data.unlink()
    lines = [CSI.sub("", x).strip() for x in raw.replace("\r\n", "\n").split("\r")]
    bars = [x for x in lines if "verified" in x and "ETA" in x and "/6.0 MB" in x]
    middle = bars[len(bars) // 2] if bars else ""
    final = [x for x in CSI.sub("", raw).replace("\r", "\n").splitlines() if x.strip()]
    (HERE / "send-file.txt").write_text(
        "$ objtransport send 127.0.0.1:7001 --file blob.bin --chunk-size 64KiB\n"
        "  (through `objtransport proxy 127.0.0.1:7000 --port 7001 --bandwidth 2MB`)\n\n"
        f"during the transfer:\n{middle}\n\nat the end:\n" + "\n".join(final[-2:]) + "\n")


def bench_plot() -> None:
    subprocess.run([*CMD, "bench", "--transport", "tcp,udp,websocket", "--size",
                    "64,1KiB,8KiB,32KiB", "--count", "20000", "--rounds", "2000",
                    "--compare", "--plot", str(HERE / "bench.png")], check=True, env=ENV)


if __name__ == "__main__":
    serve_live()
    send_file()
    if "--no-bench" not in sys.argv:
        bench_plot()
