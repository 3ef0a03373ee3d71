"""UDP benchmark peers: objtransport (native) next to a plain asyncio ``DatagramProtocol`` pair.

UDP loses what the receiver cannot drain, so these cases report what arrived and the loss:
``recv_*`` reports its port, counts until ``count`` messages arrived or nothing came for
:data:`QUIET` s, then reports ``(received, bytes, seconds from first to last, CPU seconds from
the first to the report)``. Senders are paced the same way on both sides (:class:`_Pacer`:
``rate`` messages/s in bursts, 0 = as fast as the API allows) and return their CPU seconds.
They run under :func:`benchmarks.runner.throughput` with ``lossy=True``: received msg/s (or
MB/s), the loss in ``extra``.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection

from .workers import DEADLINE, cpu_seconds

QUIET = 0.5  # the sender is done (or everything left was lost)
BURST = 64  # messages between pacing checks
PIECE = 1200  # datagram payload of the fragmented case


class _Pacer:
    """Keep a sender at ``rate`` messages/s: check every BURST messages, sleep ahead."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.perf_counter()
        self.sent = 0

    async def tick(self) -> None:
        self.sent += 1
        if self.sent % BURST:
            return
        if not self.rate:
            await asyncio.sleep(0)
            return
        ahead = self.sent / self.rate - (time.perf_counter() - self.start)
        # the loop's timers are only as fine as a millisecond: yield unless well ahead
        await asyncio.sleep(ahead if ahead > 0.002 else 0)


async def _count_until_quiet(state: list[float], count: int, done: asyncio.Event) -> None:
    """Wait until ``count`` arrived, or QUIET s passed without a message after the first."""
    end = time.perf_counter() + DEADLINE
    while time.perf_counter() < end and not done.is_set():
        seen = state[0]
        try:
            await asyncio.wait_for(done.wait(), QUIET)
        except TimeoutError:
            if state[0] == seen and seen > 0:
                return


# -- objtransport -------------------------------------------------------------------------


def recv_objtransport(pipe: Connection, size: int, count: int, offload: bool = True) -> None:
    """``offload=False``: no UDP_GRO on the listener's socket (one datagram per read)."""
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        state = [0.0, 0.0, 0.0, 0.0, 0.0]  # received, bytes, first, last, CPU at first
        done = asyncio.Event()

        def on_message(msg: Message) -> None:
            now = time.perf_counter()
            if not state[0]:
                state[2] = now
                state[4] = cpu_seconds()
            state[0] += 1
            state[1] += len(msg.data)
            state[3] = now
            if state[0] >= count:
                done.set()

        async with NetworkTransport(udp_offload=offload) as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_message, transport="udp",
                                        max_datagram_payload=PIECE)
            pipe.send(listener.port)
            await _count_until_quiet(state, count, done)
            pipe.send((int(state[0]), int(state[1]), state[3] - state[2],
                       cpu_seconds() - state[4]))

    asyncio.run(main())


def send_objtransport(port: int, size: int, count: int, rate: float = 0.0,
                      offload: bool = True) -> float:
    """``offload=False``: one ``send`` per datagram (no UDP_SEGMENT)."""
    from objtransport import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE, udp_offload=offload) as net:
            conn = await net.connect("127.0.0.1", port, transport="udp",
                                     max_datagram_payload=PIECE)
            payload = b"x" * size
            cpu0 = cpu_seconds()
            pacer = _Pacer(rate)
            for _ in range(count):
                await net.send_data(conn, payload)
                await pacer.tick()
            await net.flush(conn, timeout=DEADLINE)
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


# -- plain asyncio DatagramProtocol ---------------------------------------------------------


def recv_asyncio(pipe: Connection, size: int, count: int) -> None:
    async def main() -> None:
        state = [0.0, 0.0, 0.0, 0.0, 0.0]
        done = asyncio.Event()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                now = time.perf_counter()
                if not state[0]:
                    state[2] = now
                    state[4] = cpu_seconds()
                state[0] += 1
                state[1] += len(data)
                state[3] = now
                if state[0] >= count:
                    done.set()

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Receiver,
                                                           local_addr=("127.0.0.1", 0))
        pipe.send(transport.get_extra_info("sockname")[1])
        await _count_until_quiet(state, count, done)
        transport.close()
        pipe.send((int(state[0]), int(state[1]), state[3] - state[2], cpu_seconds() - state[4]))

    asyncio.run(main())


def send_asyncio(port: int, size: int, count: int, rate: float = 0.0) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port))
        payload = b"x" * size
        cpu0 = cpu_seconds()
        pacer = _Pacer(rate)
        for _ in range(count):
            transport.sendto(payload)
            await pacer.tick()
        cpu = cpu_seconds() - cpu0
        await asyncio.sleep(0.2)
        transport.close()
        return cpu

    return asyncio.run(main())
