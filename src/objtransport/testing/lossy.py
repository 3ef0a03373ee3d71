"""``LossyDatagramProxy``: a UDP proxy on loopback that drops, duplicates and reorders, seeded.

Put it between a UDP client and a listener, and every datagram from a client goes through one
seeded random draw: dropped (``drop``), sent twice (``duplicate``), or held back until the
next one has gone (``reorder``; a held datagram left alone goes after ``hold`` seconds).
Replies go back untouched unless ``both_ways``. The proxy records exactly what it did, so a
test can account for every loss::

    proxy = await LossyDatagramProxy("127.0.0.1", listener.port, seed=7, drop=0.05).start()
    conn = await net.connect("127.0.0.1", proxy.port, transport="udp")
    ...
    proxy.forwarded   # every datagram handed to the listener, in order (duplicates twice)
    proxy.dropped     # every datagram it threw away
    await proxy.close()

Each client address gets its own upstream socket, so the listener sees distinct peers.
Every socket and callback is owned by the proxy and released by ``close()`` (or ``async
with``).

``reset_every=N`` cuts a client's flow after N bytes from it (what a TCP reset is to
``FaultProxy``): its upstream socket closes, its address is forgotten for good (its later
datagrams are dropped), and the proxy's port refuses everything for ``outage`` seconds, so
the client's next datagram meets ICMP port unreachable and a connected client socket fails
at once. The port stays ours meanwhile (the socket is connected elsewhere, then replaced by
a new one bound with SO_REUSEPORT). ``resets`` counts the cuts.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

__all__ = ["LossyDatagramProxy"]

_BUFFER = 4 * 1024 * 1024


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, _BUFFER)
        except OSError:  # pragma: no cover
            pass
    return sock


class _Upstream:
    """The proxy's socket towards the listener for one client address."""

    def __init__(self, proxy: LossyDatagramProxy, client: Any) -> None:
        self.proxy = proxy
        self.client = client
        self.sock = _socket()
        self.sock.connect(proxy.upstream)
        self.held: bytes | None = None
        self.received = 0  # bytes from the client
        self.hold_handle: asyncio.TimerHandle | None = None
        proxy.loop.add_reader(self.sock.fileno(), self._on_reply)

    def _on_reply(self) -> None:
        while True:
            try:
                data = self.sock.recv(65_536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the listener is gone (ICMP): the client hears nothing
                return
            self.proxy.reply(self, data)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            self.proxy.send_errors += 1

    def close(self) -> None:
        if self.hold_handle is not None:
            self.hold_handle.cancel()
        self.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class LossyDatagramProxy:
    """A seeded lossy UDP proxy from ``host:port`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1",
                 port: int = 0, *, seed: int = 0, drop: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, hold: float = 0.01, both_ways: bool = False,
                 reset_every: int | None = None, outage: float = 0.1) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.rng = random.Random(seed)
        self.drop = drop
        self.duplicate = duplicate
        self.reorder = reorder
        self.hold = hold
        self.both_ways = both_ways
        self.reset_every = reset_every
        self.outage = outage
        self.resets = 0
        self._cut: set[Any] = set()  # client addresses whose flow was cut
        self._dark: asyncio.TimerHandle | None = None
        #: client -> listener datagrams handed on, in order (a duplicate appears twice)
        self.forwarded: list[bytes] = []
        #: client -> listener datagrams thrown away
        self.dropped: list[bytes] = []
        self.duplicated = 0
        self.reordered = 0  # datagrams held back and sent after a later one
        self.replies = 0
        self.send_errors = 0
        self._front: socket.socket | None = None
        self._ups: dict[Any, _Upstream] = {}
        self.loop: asyncio.AbstractEventLoop

    async def start(self) -> LossyDatagramProxy:
        self.loop = asyncio.get_running_loop()
        self._open_front()
        return self

    async def __aenter__(self) -> LossyDatagramProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_front(self) -> None:
        front = _socket()
        if self.reset_every is not None:  # the port is handed to a new socket after a cut
            front.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        front.bind((self.host, self.port))
        self.port = front.getsockname()[1]
        self.loop.add_reader(front.fileno(), self._on_request)
        old, self._front = self._front, front
        if old is not None:
            self.loop.remove_reader(old.fileno())
            old.close()

    def _cut_flow(self, addr: Any) -> None:
        """Reset the flow of ``addr``: see the module doc."""
        self.resets += 1
        self._cut.add(addr)
        up = self._ups.pop(addr, None)
        if up is not None:
            up.close()
        if self._dark is None and self._front is not None:
            # connected to our own address: nothing else matches it, the kernel refuses
            self._front.connect(self._front.getsockname())
            self._dark = self.loop.call_later(self.outage, self._light)

    def _light(self) -> None:
        self._dark = None
        self._open_front()

    def _on_request(self) -> None:
        front = self._front
        assert front is not None
        while True:
            try:
                data, addr = front.recvfrom(65_536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if addr in self._cut:
                continue
            up = self._ups.get(addr)
            if up is None:
                up = self._ups[addr] = _Upstream(self, addr)
            self._fault(up, data, self.forwarded, self.dropped, up.send)
            up.received += len(data)
            if self.reset_every is not None and up.received >= self.reset_every:
                self._cut_flow(addr)
                return

    def _fault(self, up: _Upstream, data: bytes, log: list[bytes] | None,
               dropped: list[bytes] | None, send: Any) -> None:
        """One draw for ``data``: drop, duplicate, hold back, or pass."""
        r = self.rng.random()
        if r < self.drop:
            if dropped is not None:
                dropped.append(data)
            return
        r -= self.drop
        copies = 1
        if r < self.duplicate:
            copies = 2
            self.duplicated += 1
        elif r - self.duplicate < self.reorder and up.held is None:
            up.held = data
            up.hold_handle = self.loop.call_later(self.hold, self._release, up, log, send)
            self.reordered += 1
            return
        for _ in range(copies):
            if log is not None:
                log.append(data)
            send(data)
        self._release(up, log, send)

    def _release(self, up: _Upstream, log: list[bytes] | None, send: Any) -> None:
        held = up.held
        if held is None:
            return
        up.held = None
        if up.hold_handle is not None:
            up.hold_handle.cancel()
            up.hold_handle = None
        if log is not None:
            log.append(held)
        send(held)

    def reply(self, up: _Upstream, data: bytes) -> None:
        """A datagram from the listener to the client behind ``up`` (faults applied if
        ``both_ways``)."""
        front = self._front
        if front is None:
            return
        self.replies += 1

        def send(d: bytes) -> None:
            try:
                front.sendto(d, up.client)
            except OSError:
                self.send_errors += 1

        if self.both_ways:
            self._fault(up, data, None, None, send)
        else:
            send(data)

    async def close(self) -> None:
        if self._dark is not None:
            self._dark.cancel()
            self._dark = None
        for up in self._ups.values():
            up.close()
        self._ups.clear()
        if self._front is not None:
            self.loop.remove_reader(self._front.fileno())
            self._front.close()
            self._front = None
