"""Which mode a throughput run was in: ``python -m benchmarks.modes``.

Runs the suite's TCP worker pair (``recv_objtransport`` / ``send_objtransport``) and prints,
per run, next to the CPU per message the suite reports, what docs/design.md "1 MiB on the
default loop" compares between a fast and a slow run of ``tcp 1 MiB``:

* ``same``: the share of samples (every 5 ms, from ``/proc/PID/stat``) in which both peers
  were on the same vCPU;
* ``outq`` / ``inq``: the median bytes in the sender's socket not yet acknowledged by TCP
  (``SIOCOUTQ``) and in the receiver's socket not yet read (``FIONREAD``), sampled every 5 ms
  by a thread in each peer;
* ``copied``: (default loop only) the share of the bytes handed to the transport that went
  through its own buffer (what ``send`` did not take at once: a copy);
* faults, voluntary / involuntary context switches per message, of the whole process.

    .venv/bin/python -m benchmarks.modes --reps 10
    .venv/bin/python -m benchmarks.modes --reps 5 --pin one      # both peers on one vCPU
    .venv/bin/python -m benchmarks.modes --reps 5 --pin two --loop uvloop

Diagnostics only: the sampling thread and the transport wrapper cost a little CPU.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import resource
import socket
import statistics
import struct
import termios
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from . import workers as w
from .runner import CTX, use_loop

SIOCOUTQ = 0x5411  # linux/sockios.h (TIOCOUTQ)
EVERY = 0.005
TIMEOUT = 120.0


def _usage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"faults": r.ru_minflt, "vcs": r.ru_nvcsw, "ics": r.ru_nivcsw}


def _tcp_fds() -> list[int]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            s = socket.socket(fileno=int(name))
            try:
                if s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM:
                    out.append(int(name))
            finally:
                s.detach()
        except OSError:
            pass
    return out


def _ioctl(fd: int, req: int) -> int:
    value: int = struct.unpack("i", fcntl.ioctl(fd, req, b"\0\0\0\0"))[0]
    return value


def _sample_queues(into: dict[str, list[int]], stop: threading.Event) -> None:
    """Every EVERY s until ``stop``: the summed SIOCOUTQ and FIONREAD of this process's
    TCP sockets (the listening socket answers 0)."""
    fds: list[int] = []
    while not stop.wait(EVERY):
        if not fds:
            fds = _tcp_fds()
        outq = inq = 0
        for fd in fds:
            try:
                outq += _ioctl(fd, SIOCOUTQ)
                inq += _ioctl(fd, termios.FIONREAD)
            except OSError:
                fds = []
        into["outq"].append(outq)
        into["inq"].append(inq)


def _count_copies(stats: dict[str, int]) -> None:
    """Wrap the default loop's socket transport's ``write``: bytes handed over, and bytes
    that went into its buffer (all of them when it already held some)."""
    from asyncio import selector_events

    cls = selector_events._SelectorSocketTransport
    write = cls.write

    def counted(self: Any, data: Any) -> None:
        before = len(self._buffer)
        write(self, data)
        stats["handed"] += len(data)
        stats["copied"] += len(data) if before else len(self._buffer)

    cls.write = counted  # type: ignore[method-assign]


def _peer(role: str, loop: str, pin: int | None, pipe: Connection, args: tuple[Any, ...]
          ) -> None:
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    use_loop(loop)
    queues: dict[str, list[int]] = {"outq": [], "inq": []}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_queues, args=(queues, stop), daemon=True)
    sampler.start()
    copies = {"handed": 0, "copied": 0}
    if loop == "default" and role == "sender":
        _count_copies(copies)
    u0 = _usage()
    if role == "sender":
        pipe.send(("cpu", w.send_objtransport(*args)))
    else:
        w.recv_objtransport(pipe, *args)
    u1 = _usage()
    stop.set()
    sampler.join(1.0)
    tail = {k: v[len(v) // 5:] or [0] for k, v in queues.items()}  # without the start
    pipe.send(("stats", {**{k: u1[k] - u0[k] for k in u0}, **copies,
                         "outq": statistics.median(tail["outq"]),
                         "inq": statistics.median(tail["inq"])}))


def _vcpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def run(size: int, count: int, loop: str, pins: tuple[int | None, int | None]) -> str:
    """One run; its line of figures."""
    rx_parent, rx_child = CTX.Pipe()
    tx_parent, tx_child = CTX.Pipe()
    rx = CTX.Process(target=_peer, args=("receiver", loop, pins[0], rx_child, (size, count)))
    rx.start()
    tx = None
    try:
        if not rx_parent.poll(TIMEOUT):
            raise RuntimeError("the receiver did not start")
        port = rx_parent.recv()
        tx = CTX.Process(target=_peer, args=("sender", loop, pins[1], tx_child,
                                             (port, size, count)))
        tx.start()
        same = seen = 0
        end = time.monotonic() + TIMEOUT
        while not rx_parent.poll(EVERY):
            if time.monotonic() > end:
                raise RuntimeError("the run did not end in time")
            try:
                same += _vcpu(rx.pid or 0) == _vcpu(tx.pid or 0)
                seen += 1
            except (OSError, IndexError, ValueError):
                pass
        got, nbytes, seconds, rx_cpu = rx_parent.recv()
        rx_stats = rx_parent.recv()[1]
        tx_cpu = tx_parent.recv()[1]
        tx_stats = tx_parent.recv()[1]
    finally:
        for p in (tx, rx):
            if p is not None:
                p.join(10.0)
                if p.is_alive():
                    p.kill()
                    p.join()
    n = max(1, got)
    copied = (f" copied {tx_stats['copied'] / tx_stats['handed']:.2f}"
              if tx_stats["handed"] else "")
    return (f"{nbytes / seconds / 1e6:7,.0f} MB/s  CPU µs/msg {tx_cpu / n * 1e6:5.0f} / "
            f"{rx_cpu / n * 1e6:5.0f}  same {same / max(1, seen):.2f}  "
            f"outq {tx_stats['outq'] / 1024:5.0f}K inq {rx_stats['inq'] / 1024:5.0f}K{copied}  "
            f"faults {tx_stats['faults'] / n:.2f} / {rx_stats['faults'] / n:.2f}  "
            f"cs {tx_stats['vcs'] / n:.2f}+{tx_stats['ics'] / n:.2f} / "
            f"{rx_stats['vcs'] / n:.2f}+{rx_stats['ics'] / n:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024 * 1024)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--loop", default="default", choices=("default", "uvloop"))
    ap.add_argument("--pin", default="free", choices=("free", "one", "two"))
    a = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pins: tuple[int | None, int | None] = {
        "free": (None, None), "one": (cpus[0], cpus[0]),
        "two": (cpus[0], cpus[-1])}[a.pin]
    print(f"{a.count} x {a.size} B, {a.loop} loop, peers {a.pin}; CPU sender / receiver; "
          "faults and context switches (voluntary+involuntary) per message, sender / receiver",
          flush=True)
    for rep in range(a.reps):
        print(f"rep {rep + 1}/{a.reps} {run(a.size, a.count, a.loop, pins)}", flush=True)


if __name__ == "__main__":
    main()
