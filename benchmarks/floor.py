"""What one awaited send costs at least here: ``python -m benchmarks.floor``.

Two parts, process CPU time per message, median (min-max) of ``--reps`` runs:

* **Python alone** (no library): a bare ``for`` loop, ``await f()`` of an empty coroutine,
  the same with send_data's arguments (nine keyword-only defaults, or ``priority`` and
  ``**options``), and a plain call. What any awaited ``send_data`` pays before its body.
* **The sender in this process**, against a spawned ``batch=True`` receiver (so the
  receiver's CPU is not counted and rarely slows us): ``await net.send_data(conn, p)``;
  the connection's session ``queue`` called directly (no coroutine: the floor of the
  framing, the counters and the writes); that call after ``await`` of an empty coroutine
  (the floor of any awaited design over this queue); a minimal coroutine that only looks
  the connection up and queues (no checks); ``send_many`` in batches of 1,000.

    .venv/bin/python -m benchmarks.floor [--loop uvloop] [--count 300000] [--reps 5]

The library variants reach into the connection (a benchmark, not an API): they show where
the time of ``send_data`` goes, not a way to send.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import workers as w
from .runner import CTX, use_loop

# -- Python alone --------------------------------------------------------------------------


async def _empty() -> None:
    pass


async def _kwonly(conn_id: int, data: bytes, *, priority: str = "normal", stream: int = 0,
                  text: bool = False, timeout: float | None = None, wait_ack: bool = False,
                  reliable: bool = True, headers: Any = None, ttl: float | None = None) -> None:
    pass


async def _options(conn_id: int, data: bytes, *, priority: str = "normal",
                   **options: Any) -> None:
    pass


def _plain(conn_id: int, data: bytes, *, priority: str = "normal", **options: Any) -> None:
    pass


async def _loop_only(n: int) -> None:
    for _ in range(n):
        pass


async def _await_empty(n: int) -> None:
    for _ in range(n):
        await _empty()


async def _await_kwonly(n: int) -> None:
    for _ in range(n):
        await _kwonly(1, b"x")


async def _await_options(n: int) -> None:
    for _ in range(n):
        await _options(1, b"x")


async def _call_plain(n: int) -> None:
    for _ in range(n):
        _plain(1, b"x")


PURE: dict[str, Callable[[int], Awaitable[None]]] = {
    "for loop alone": _loop_only,
    "await f() (empty coroutine)": _await_empty,
    "await f(id, data), 9 kw-only defaults": _await_kwonly,
    "await f(id, data), priority + **options": _await_options,
    "f(id, data), plain function": _call_plain,
}


def pure(count: int, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, fn in PURE.items():
            async def timed(fn: Callable[[int], Awaitable[None]] = fn) -> float:
                t = time.process_time()
                await fn(count)
                return time.process_time() - t
            out.setdefault(name, []).append(asyncio.run(timed()) / count * 1e6)
    return out


# -- the sender in this process ------------------------------------------------------------

Variant = Callable[[Any, int, Any, bytes, int], Awaitable[None]]


async def _send_data(net: Any, cid: int, conn: Any, payload: bytes, n: int) -> None:
    send = net.send_data
    for _ in range(n):
        await send(cid, payload)


async def _queue(net: Any, cid: int, conn: Any, payload: bytes, n: int) -> None:
    link = conn.link
    queue = link.queue
    for _ in range(n):
        if queue(payload):
            await link.wait_writable(60.0, 2)


async def _queue_after_await(net: Any, cid: int, conn: Any, payload: bytes, n: int) -> None:
    link = conn.link
    queue = link.queue
    for _ in range(n):
        await _empty()
        if queue(payload):
            await link.wait_writable(60.0, 2)


async def _minimal(self: Any, conn_id: int, data: bytes, *, priority: str = "normal",
                   **options: Any) -> None:
    link = self._conns[conn_id].link
    if link.queue(data):
        await link.wait_writable(60.0, 2)


async def _minimal_send(net: Any, cid: int, conn: Any, payload: bytes, n: int) -> None:
    for _ in range(n):
        await _minimal(net, cid, payload)


async def _send_many(net: Any, cid: int, conn: Any, payload: bytes, n: int) -> None:
    batch = [payload] * 1000
    for _ in range(n // 1000):
        await net.send_many(cid, batch)


SENDS: dict[str, Variant] = {
    "await net.send_data(conn, p)": _send_data,
    "session queue, no coroutine": _queue,
    "await f() + session queue": _queue_after_await,
    "minimal coroutine: lookup + queue": _minimal_send,
    "send_many, 1,000 a call": _send_many,
}


def sender(port: int, count: int, reps: int) -> dict[str, list[float]]:
    from objtransport import NetworkTransport

    async def main() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        async with NetworkTransport(timeout=60) as net:
            cid = await net.connect("127.0.0.1", port)
            conn = net._conns[cid]
            payload = b"x" * 64
            await _send_data(net, cid, conn, payload, 20_000)  # warm up
            for _ in range(reps):
                for name, fn in SENDS.items():
                    await net.flush(cid, timeout=60)
                    cpu0 = w.cpu_seconds()
                    await fn(net, cid, conn, payload, count)
                    await net.flush(cid, timeout=60)
                    out.setdefault(name, []).append((w.cpu_seconds() - cpu0) / count * 1e6)
        return out

    return asyncio.run(main())


def _show(title: str, figures: dict[str, list[float]]) -> None:
    print(title)
    for name, xs in figures.items():
        print(f"  {name:42s} {statistics.median(xs) * 1000:7.0f} ns "
              f"({min(xs) * 1000:.0f}-{max(xs) * 1000:.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    ap.add_argument("--loop", default="default", choices=("default", "uvloop"))
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    use_loop(args.loop)
    _show(f"Python alone ({args.loop} loop), per iteration:", pure(args.count, args.reps))
    mine, theirs = CTX.Pipe()
    total = 20_000 + args.count * args.reps * len(SENDS)
    peer = CTX.Process(target=_receiver, args=(args.loop, theirs, total), daemon=True)
    peer.start()
    try:
        if not mine.poll(30):
            raise SystemExit("the receiver did not start")
        figures = sender(mine.recv(), args.count, args.reps)
    finally:
        peer.join(10)
        if peer.is_alive():
            peer.terminate()
    _show("64 B sender, CPU per message (user + sys):", figures)


def _receiver(loop: str, pipe: Any, count: int) -> None:
    use_loop(loop)
    w.recv_objtransport_batch(pipe, 64, count)


if __name__ == "__main__":
    main()
