"""UDP benchmark peers: objtransport (native) next to a plain asyncio ``DatagramProtocol`` pair.

UDP loses what the receiver cannot drain, so these cases report what arrived and the loss:
``recv_*`` reports its port, counts until ``count`` messages arrived or nothing came for
:data:`QUIET` s, then reports ``(received, bytes, seconds from first to last)``. Senders are
paced the same way on both sides (:func:`pace`: ``rate`` messages/s in bursts, 0 = as fast as
the API allows). :func:`udp_throughput` is the runner: it reports received msg/s (or MB/s)
and prints the loss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from .runner import CASE_TIMEOUT, CTX, Result, _run_target
from .workers import DEADLINE

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


def recv_objtransport(pipe: Connection, size: int, count: int) -> None:
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        state = [0.0, 0.0, 0.0, 0.0]  # received, bytes, first, last
        done = asyncio.Event()

        def on_message(msg: Message) -> None:
            now = time.perf_counter()
            if not state[0]:
                state[2] = now
            state[0] += 1
            state[1] += len(msg.data)
            state[3] = now
            if state[0] >= count:
                done.set()

        async with NetworkTransport() as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_message, transport="udp",
                                        max_datagram_payload=PIECE)
            pipe.send(listener.port)
            await _count_until_quiet(state, count, done)
            pipe.send((int(state[0]), int(state[1]), state[3] - state[2]))

    asyncio.run(main())


def send_objtransport(port: int, size: int, count: int, rate: float = 0.0) -> None:
    from objtransport import NetworkTransport

    async def main() -> None:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port, transport="udp",
                                     max_datagram_payload=PIECE)
            payload = b"x" * size
            pacer = _Pacer(rate)
            for _ in range(count):
                await net.send_data(conn, payload)
                await pacer.tick()
            await net.flush(conn, timeout=DEADLINE)
            await asyncio.sleep(0.2)

    asyncio.run(main())


# -- plain asyncio DatagramProtocol ---------------------------------------------------------


def recv_asyncio(pipe: Connection, size: int, count: int) -> None:
    async def main() -> None:
        state = [0.0, 0.0, 0.0, 0.0]
        done = asyncio.Event()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                now = time.perf_counter()
                if not state[0]:
                    state[2] = now
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
        pipe.send((int(state[0]), int(state[1]), state[3] - state[2]))

    asyncio.run(main())


def send_asyncio(port: int, size: int, count: int, rate: float = 0.0) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port))
        payload = b"x" * size
        pacer = _Pacer(rate)
        for _ in range(count):
            transport.sendto(payload)
            await pacer.tick()
        await asyncio.sleep(0.2)
        transport.close()

    asyncio.run(main())


# -- the runner ------------------------------------------------------------------------------


def udp_throughput(recv: Callable[..., None], send: Callable[..., None], size: int,
                   count: int, unit: str, label: str) -> Result:
    """Received msg/s (or MB/s) over the receiving time; the loss is printed and kept in
    ``extra["loss %"]``. ``count`` messages are sent; fewer may arrive."""
    parent, child = CTX.Pipe()
    r = _run_target(recv, (child, size, count))
    s = None
    try:
        if not parent.poll(20):
            return Result(error="receiver did not start")
        port = parent.recv()
        s = _run_target(send, (port, size, count))
        if not parent.poll(CASE_TIMEOUT):
            return Result(error="timed out")
        got, nbytes, seconds = parent.recv()
        if got < 2 or seconds <= 0:
            return Result(error=f"received {got} of {count}")
        loss = 100.0 * (count - got) / count
        value = got / seconds if unit == "msg/s" else nbytes / seconds / 1e6
        print(f"      {label}: received {got:,} of {count:,} (loss {loss:.2f} %)",
              flush=True)
        return Result(value, extra={"loss %": loss})
    except Exception as exc:  # a broken case must not stop the suite
        return Result(error=f"{type(exc).__name__}: {exc}")
    finally:
        for p in (s, r):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()
