"""Listeners that use every core: N worker processes share one port (``SO_REUSEPORT``).

::

    import objtransport

    def make_handler(net):             # runs in each worker; module level (it is pickled)
        async def echo(msg):
            await net.send_data(msg.conn_id, msg.data)
        return echo

    if __name__ == "__main__":
        asyncio.run(objtransport.serve(make_handler, "0.0.0.0", 7000, workers=4))

:class:`WorkerPool` starts ``workers`` processes (``multiprocessing`` *spawn*: no forked
event loop), each running its own :class:`~objtransport.NetworkTransport` with one listener
on the same port (``listen(..., reuse_port=True)``); the kernel spreads new connections
among them. The parent restarts a worker that dies (after ``restart_delay``, doubled while
it keeps dying within a second of starting, at most 30 s), stops them all in order on
:meth:`~WorkerPool.stop` (SIGTERM to each: the worker stops accepting, closes its
connections in order, exits; SIGKILL after ``stop_timeout``) and aggregates their metrics
(:meth:`~WorkerPool.metrics`). :func:`serve` runs a pool until SIGTERM or SIGINT.

**Sessions live in one worker.** A connection is served by the worker that accepted it, and
so is its session. A client whose reconnection lands on another worker (the kernel picks by
the connection's address and port, so it usually does, and always when its worker died) is
told the session is unknown: the client's connection goes on with a new session and reports
``SessionLost`` (event, ``flush()`` / ``wait_ack`` raise it, ``unconfirmed(conn_id)`` hands
over what is in doubt) at once, with no wait. Routing resumes to the session's worker would
need a shared accept path (one process reading the HELLO and passing the socket); we chose
the plain kernel balancing and the clean report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from .dispatch import Handler
from .info import TransportMetrics
from .sansio.events import Message
from .service import NetworkTransport
from .worker_process import WorkerSpec, worker_main

__all__ = ["HandlerFactory", "WorkerPool", "aggregate", "echo", "serve", "sink"]

log = logging.getLogger("objtransport.workers")

#: called in each worker with its service; returns the listener's handler (module level:
#: it is pickled to the workers)
HandlerFactory = Callable[[NetworkTransport], Handler]

_CTX = mp.get_context("spawn")
#: a worker that dies sooner than this after its start doubles the next restart delay
_HEALTHY_AFTER = 1.0
_MAX_RESTART_DELAY = 30.0


def echo(net: NetworkTransport) -> Handler:
    """A handler factory: send every message back to its sender."""
    def handler(msg: Message) -> None:
        net.send_nowait(msg.conn_id, msg.data)
    return handler


def sink(net: NetworkTransport) -> Handler:
    """A handler factory: discard every message (the metrics count them)."""
    def handler(msg: Message) -> None:
        pass
    return handler


# -- the parent -----------------------------------------------------------------------------

@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    pipe: Pipe | None = None
    pid: int = 0
    started: float = 0.0
    restarts: int = 0
    delay: float = 0.0
    ready: asyncio.Future[None] | None = None
    exited: asyncio.Future[None] | None = None
    replies: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    restart: asyncio.TimerHandle | None = None


class WorkerPool:
    """``workers`` processes serving ``handler_factory`` on one ``host:port`` (see the
    module doc). ``async with WorkerPool(...) as pool:`` or ``start()`` / ``stop()``.

    TLS: ``certfile`` and ``keyfile`` (PEM paths; ``cafile`` to require client
    certificates): each worker loads them into its own context."""

    def __init__(self, handler_factory: HandlerFactory, host: str = "127.0.0.1",
                 port: int = 0, *, workers: int | None = None, transport: str = "tcp",
                 restart_delay: float = 0.5, stop_timeout: float = 10.0,
                 start_timeout: float = 30.0, service_options: dict[str, Any] | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 cafile: str | None = None, **listen_options: Any) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"workers must be >= 1, not {n}")
        self.host = host
        self.port = port
        self.restart_delay = restart_delay
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        if (certfile is None) != (keyfile is None):
            raise ValueError("TLS needs both certfile and keyfile")
        tls = (certfile, keyfile, cafile) if certfile is not None and keyfile is not None \
            else None
        if tls is not None:  # fail here, not in every worker
            WorkerSpec(handler_factory, host, port, transport, {}, {}, tls).listen_tls()
        self._spec = WorkerSpec(handler_factory, host, port, transport,
                           dict(service_options or {}), listen_options, tls)
        self._slots = [_Slot(i) for i in range(n)]
        self._reserve: socket.socket | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        #: workers restarted after they died, in all
        self.restarts = 0
        #: where :func:`serve` publishes the added-up metrics (None without metrics_port)
        self.metrics_url: str | None = None

    def __repr__(self) -> str:
        return f"<WorkerPool {self.host}:{self.port} workers={len(self._slots)} pids={self.pids}>"

    @property
    def workers(self) -> int:
        """How many workers the pool keeps."""
        return len(self._slots)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids, by slot (0 while one is restarting)."""
        return [s.pid if s.process is not None and s.process.is_alive() else 0
                for s in self._slots]

    async def start(self) -> WorkerPool:
        """Start every worker; return when all listen. Raises ``RuntimeError`` if one fails
        to start (the others are stopped)."""
        self._loop = asyncio.get_running_loop()
        if self.port == 0:  # one port for all: reserve it (bound, not listening)
            udp = self._spec.transport in ("udp", "quic")
            self._reserve = _reserve_port(self.host, udp)
            self.port = self._reserve.getsockname()[1]
            self._spec = dataclasses.replace(self._spec, port=self.port)
            if udp:  # a bound UDP socket would take datagrams
                self._reserve.close()
                self._reserve = None
        for slot in self._slots:
            self._spawn(slot)
        try:
            async with asyncio.timeout(self.start_timeout):
                await asyncio.gather(*(s.ready for s in self._slots if s.ready is not None))
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aenter__(self) -> WorkerPool:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _spawn(self, slot: _Slot) -> None:
        loop = self._loop
        assert loop is not None
        slot.restart = None
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(target=worker_main, args=(self._spec, child),
                            name=f"objtransport-worker-{slot.index}", daemon=True)
        proc.start()
        child.close()
        slot.process, slot.pipe, slot.started = proc, parent, time.monotonic()
        slot.ready = loop.create_future()
        slot.exited = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_message, slot)
        loop.add_reader(proc.sentinel, self._on_exit, slot, proc)

    def _on_message(self, slot: _Slot) -> None:
        pipe = slot.pipe
        assert pipe is not None
        try:
            msg = pipe.recv()
        except (EOFError, OSError):
            self._drop_pipe(slot)
            return
        if msg[0] == "ready":
            slot.pid = msg[1]
            if slot.ready is not None and not slot.ready.done():
                slot.ready.set_result(None)
            self._pulse()
        elif msg[0] == "metrics" and slot.replies:
            fut = slot.replies.pop(0)
            if not fut.done():
                fut.set_result(msg[1])

    def _drop_pipe(self, slot: _Slot) -> None:
        pipe = slot.pipe
        if pipe is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(pipe.fileno())
        pipe.close()
        slot.pipe = None
        for fut in slot.replies:
            if not fut.done():
                fut.set_exception(ConnectionError(f"worker {slot.index} is gone"))
        slot.replies.clear()

    def _on_exit(self, slot: _Slot, proc: BaseProcess) -> None:
        loop = self._loop
        assert loop is not None
        loop.remove_reader(proc.sentinel)
        proc.join(0)
        self._drop_pipe(slot)
        if slot.exited is not None and not slot.exited.done():
            slot.exited.set_result(None)
        if slot.ready is not None and not slot.ready.done():
            slot.ready.set_exception(RuntimeError(
                f"worker {slot.index} exited with status {proc.exitcode} before listening"))
            slot.ready.exception()  # retrieved: start() reports it
        if self._stopping or slot.process is not proc:
            return
        lived = time.monotonic() - slot.started
        slot.delay = (self.restart_delay if lived >= _HEALTHY_AFTER or not slot.delay
                      else min(_MAX_RESTART_DELAY, slot.delay * 2))
        log.warning("worker %d (pid %d) exited with status %s; restarting in %.1f s",
                    slot.index, slot.pid, proc.exitcode, slot.delay)
        slot.restarts += 1
        self.restarts += 1
        slot.restart = loop.call_later(slot.delay, self._spawn, slot)
        self._pulse()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def listening(self) -> int:
        """Workers that are up and listening now."""
        return sum(1 for s in self._slots if s.pipe is not None and s.ready is not None
                   and s.ready.done() and not s.ready.exception())

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker listens (e.g. after a restart)."""
        async with asyncio.timeout(timeout):
            while self.listening < len(self._slots):
                await self._changed.wait()

    async def metrics(self, timeout: float = 5.0) -> TransportMetrics:
        """Every live worker's ``get_metrics()``, added up (:func:`aggregate`)."""
        loop = self._loop
        assert loop is not None
        futs = []
        for slot in self._slots:
            if slot.pipe is not None and slot.ready is not None and slot.ready.done():
                fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                slot.replies.append(fut)
                slot.pipe.send("metrics")
                futs.append(fut)
        async with asyncio.timeout(timeout):
            replies = await asyncio.gather(*futs, return_exceptions=True)
        return aggregate([TransportMetrics(**r) for r in replies if isinstance(r, dict)])

    def stopping_now(self) -> None:
        """From now on the pool is stopping (``/ready`` says 503; nothing is restarted)."""
        self._stopping = True

    async def stop(self) -> None:
        """SIGTERM every worker (each stops accepting, closes its connections in order and
        exits), SIGKILL those still there after ``stop_timeout``; reap them all."""
        self._stopping = True
        procs = []
        for slot in self._slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
            proc = slot.process
            if proc is not None:
                if proc.is_alive():
                    proc.terminate()  # SIGTERM: the worker stops in order
                procs.append((slot, proc))
        exits = [s.exited for s, _ in procs if s.exited is not None and not s.exited.done()]
        if exits:
            await asyncio.wait(exits, timeout=self.stop_timeout)
        loop = self._loop
        for slot, proc in procs:
            if slot.exited is not None and slot.exited.done():
                proc.join(2)  # its sentinel closed as it exits: reaped a moment later
            if proc.is_alive():
                log.warning("worker pid %s did not stop within %g s: killed", proc.pid,
                            self.stop_timeout)
                proc.kill()
            proc.join(5)
            if loop is not None:
                loop.remove_reader(proc.sentinel)
            self._drop_pipe(slot)
            slot.process = None
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None


def _reserve_port(host: str, udp: bool = False) -> socket.socket:
    """A socket bound to ``host:0`` with SO_REUSEPORT, not listening: the pool's port, held
    while the workers (re)start. The kernel hands connections to listening sockets only (a
    UDP pool closes it at once: a bound UDP socket receives)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


_MAX = {"p50_latency_ms", "p99_latency_ms"}


def aggregate(parts: list[TransportMetrics]) -> TransportMetrics:
    """Add up the workers' metrics: counts and per-key dicts are summed, the mean RTT is
    weighted by samples, p50/p99 are the workers' highest (an upper bound)."""
    if not parts:
        return TransportMetrics(0, 0, 0, 0, 0, 0, 0.0)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(TransportMetrics):
        values = [getattr(p, f.name) for p in parts]
        if f.name in _MAX:
            out[f.name] = max(values)
        elif isinstance(values[0], dict):
            merged: dict[Any, Any] = {}
            for v in values:
                for k, n in v.items():
                    merged[k] = merged.get(k, 0) + n
            out[f.name] = merged
        else:
            out[f.name] = sum(values)
    samples = out["latency_samples"]
    out["avg_latency_ms"] = (out["latency_sum_seconds"] / samples * 1000.0) if samples else 0.0
    return TransportMetrics(**out)


async def serve(handler_factory: HandlerFactory, host: str = "127.0.0.1", port: int = 7000,
                *, workers: int | None = None, transport: str = "tcp",
                ready: Callable[[WorkerPool], object] | None = None,
                metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                **options: Any) -> None:
    """Run ``workers`` processes (default: one per core) serving ``handler_factory`` on
    ``host:port`` until SIGTERM or SIGINT, then stop them in order. ``ready(pool)`` is called
    once all listen. With ``metrics_port`` the parent serves the workers' metrics added up
    (``/metrics``) and ``/ready`` / ``/healthz`` (:mod:`objtransport.pool_http`).
    ``options`` go to :class:`WorkerPool` (``restart_delay``, ``service_options``...) and the
    rest to each worker's ``listen``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with WorkerPool(handler_factory, host, port, workers=workers, transport=transport,
                          **options) as pool:
        endpoint = None
        if metrics_port is not None:
            from .pool_http import PoolEndpoint

            endpoint = await PoolEndpoint(pool, metrics_host, metrics_port).start()
            pool.metrics_url = f"http://{metrics_host}:{endpoint.port}/metrics"
        try:
            if ready is not None:
                ready(pool)
            await stop.wait()
        finally:
            pool.stopping_now()
            if endpoint is not None:
                await endpoint.close()
