"""The worker process of a :class:`~objtransport.workers.WorkerPool`: what it serves
(:class:`WorkerSpec`, pickled to it) and its life (:func:`worker_main`): one
:class:`~objtransport.NetworkTransport` with one listener on the pool's port
(``reuse_port``), answering the parent's requests over its pipe until SIGTERM or "stop"."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import ssl
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TransportKind
from .service import NetworkTransport

if TYPE_CHECKING:
    from .workers import HandlerFactory

__all__ = ["WorkerSpec", "worker_main"]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker serves: pickled to it at its start."""

    factory: HandlerFactory
    host: str
    port: int
    transport: str
    service_options: dict[str, Any]
    listen_options: dict[str, Any]
    #: TLS: (certfile, keyfile, cafile or None); each worker builds its own context (an
    #: SSLContext cannot be pickled)
    tls: tuple[str, str, str | None] | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None or self.transport == "quic":
            return None
        certfile, keyfile, cafile = self.tls
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
        if cafile is not None:  # clients must show a certificate signed by it
            ctx.load_verify_locations(cafile)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def listen_tls(self) -> dict[str, Any]:
        """The listener's TLS options: an ``ssl_context``, or for QUIC the PEM itself."""
        if self.tls is None or self.transport != "quic":
            return {"ssl_context": self.ssl_context()}
        certfile, keyfile, cafile = self.tls
        pem = {"certificate_chain": Path(certfile).read_bytes(),
               "private_key": Path(keyfile).read_bytes()}
        if cafile is not None:  # clients must show a certificate signed by it
            pem["root_certificates"] = Path(cafile).read_bytes()
        return pem


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """A worker's process: serve until SIGTERM (or "stop" from the parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (Ctrl-C reaches all)
    try:
        asyncio.run(_worker(spec, pipe))
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


async def _worker(spec: WorkerSpec, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with NetworkTransport(**spec.service_options) as net:
        listener = await net.listen(spec.host, spec.port, transport=TransportKind(spec.transport),
                                    handler=spec.factory(net), reuse_port=True,
                                    **spec.listen_tls(), **spec.listen_options)

        def on_request() -> None:
            try:
                request = pipe.recv()
            except (EOFError, OSError):  # the parent is gone: stop
                loop.remove_reader(pipe.fileno())
                stop.set()
                return
            if request == "metrics":
                pipe.send(("metrics", dataclasses.asdict(net.get_metrics())))
            elif request == "stop":
                stop.set()

        loop.add_reader(pipe.fileno(), on_request)
        pipe.send(("ready", os.getpid(), listener.port))
        try:
            await stop.wait()
        finally:
            loop.remove_reader(pipe.fileno())
            await listener.close()  # stop accepting first: the others take new peers
