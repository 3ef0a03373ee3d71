"""``FaultProxy``: a TCP proxy that misbehaves on demand, for testing code against faults.

Put it between a client and a listener (on loopback) and, from the test, make the network
slow (``latency``), narrow (``bandwidth``), choppy (``chunk_size``), broken (``reset_all``,
``reset_every``), silent (``blackhole``) or half-closed (``close_direction``); ``jitter``
adds a random extra delay in ``[0, jitter]`` s to each chunk (order is kept)::

    proxy = await FaultProxy("127.0.0.1", listener.port).start()
    conn = await net.connect("127.0.0.1", proxy.port)
    proxy.reset_every = 100_000      # RST both sides after every 100 kB client -> server
    proxy.blackhole(True)            # forward nothing, close nothing
    await proxy.close()

Every task is owned by the proxy and cancelled by ``close()``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sent_up: int = 0  # client -> upstream bytes on this pair


class FaultProxy:
    """A proxy from ``host:port`` (port 0: any) to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1",
                 port: int = 0, *, latency: float = 0.0, bandwidth: float | None = None,
                 chunk_size: int | None = None, reset_every: int | None = None,
                 jitter: float = 0.0, rng: random.Random | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.latency = latency  # seconds added to every chunk, both ways
        self.jitter = jitter  # up to this many seconds more, drawn per chunk from rng
        self.rng = rng or random.Random()
        self.bandwidth = bandwidth  # bytes/s per direction and connection
        self.chunk_size = chunk_size  # forward in pieces of at most this size
        self.reset_every = reset_every  # RST after this many client -> upstream bytes
        self.resets = 0
        self.connections = 0
        self.bytes_forwarded = 0
        self._blackhole = False
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop accepting and drop every connection (with RST)."""
        if self._server is not None:
            self._server.close()
        self.reset_all()
        tasks = [t for p in self._pairs for t in p.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- faults ----------------------------------------------------------------------------
    def blackhole(self, on: bool = True) -> None:
        """Forward nothing (bytes are read and dropped) and close nothing, while ``on``."""
        self._blackhole = on

    def reset_all(self) -> None:
        """Reset (RST) both sides of every connection now."""
        for pair in list(self._pairs):
            self._reset(pair)

    def close_direction(self, direction: str) -> None:
        """Half-close: ``"upstream"`` sends EOF to the listener, ``"downstream"`` to the
        client; the other direction keeps flowing."""
        for pair in self._pairs:
            w = pair.upstream if direction == "upstream" else pair.client
            if w.can_write_eof():
                w.write_eof()

    # -- plumbing --------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._rst(writer)
            return
        self.connections += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [asyncio.create_task(self._pump(reader, up_writer, pair, True)),
                      asyncio.create_task(self._pump(up_reader, writer, pair, False))]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        self._pairs.discard(pair)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: _Pair, upward: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if self._blackhole:
                    continue
                delay = self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0)
                if delay:
                    await asyncio.sleep(delay)
                step = self.chunk_size or len(data)
                for i in range(0, len(data), step):
                    piece = data[i:i + step]
                    if upward and self.reset_every is not None:
                        room = self.reset_every - pair.sent_up
                        if len(piece) > room:  # forward up to the limit, then RST
                            if room > 0:
                                writer.write(piece[:room])
                                self.bytes_forwarded += room
                                await writer.drain()
                            self._reset(pair)
                            return
                        pair.sent_up += len(piece)
                    writer.write(piece)
                    self.bytes_forwarded += len(piece)
                    await writer.drain()
                    if self.bandwidth:
                        await asyncio.sleep(len(piece) / self.bandwidth)
        except (ConnectionError, OSError):
            self._reset(pair)

    def _reset(self, pair: _Pair) -> None:
        if pair in self._pairs:
            self.resets += 1
            self._pairs.discard(pair)
        self._rst(pair.client)
        self._rst(pair.upstream)

    @staticmethod
    def _rst(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:
                pass
        writer.transport.abort()
