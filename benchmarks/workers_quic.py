"""QUIC benchmark peers: objtransport (native and raw) and a plain aioquic pair.

Same contract as :mod:`benchmarks.workers`. The plain pair is what an aioquic user writes:
``aioquic.asyncio`` with one client stream carrying ``{packet, 4}`` frames; its receiver
parses frames out of ``StreamDataReceived`` events (no StreamReader per message), its
sender writes one frame per message and yields to the loop every ``YIELD_BYTES`` of frames
(aioquic's stream writer has no flow control: without yielding nothing would be sent
until the loop ran), then waits for the receiver's one-byte "got everything". Every
receiver uses a throw-away certificate; every client skips verification through an
explicit ``ssl_context`` with ``CERT_NONE`` (the certificate only costs the handshake, not
the timed part). Both pairs use the same ``max_datagram_size`` (1200 unless a case says).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from multiprocessing.connection import Connection
from typing import Any

from .workers import DEADLINE, LEN, cpu_seconds

ALPN_RAW = "objtransport-raw/1"
#: the plain sender yields to the loop every this many bytes of frames
YIELD_BYTES = 16 * 1024
#: UDP payload per QUIC packet for both pairs (aioquic's default; safe on any path)
DATAGRAM = 1200


def _cert() -> tuple[bytes, bytes]:
    from objtransport.drivers.quic_config import demo_certificate

    return demo_certificate("127.0.0.1")


def _insecure() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- objtransport -----------------------------------------------------------------------------

def recv_objtransport(pipe: Connection, size: int, count: int, datagram: int = DATAGRAM
                      ) -> None:
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        got = 0
        first = cpu0 = 0.0
        nbytes = 0
        done = asyncio.Event()

        def on_message(msg: Message) -> None:
            nonlocal got, first, nbytes, cpu0
            if not got:
                first = time.perf_counter()
                cpu0 = cpu_seconds()
            got += 1
            nbytes += len(msg.data)
            if got >= count:
                done.set()

        chain, key = _cert()
        async with NetworkTransport() as net:
            listener = await net.listen("127.0.0.1", 0, handler=on_message, transport="quic",
                                        certificate_chain=chain, private_key=key,
                                        max_datagram_size=datagram)
            pipe.send(listener.port)
            try:
                await asyncio.wait_for(done.wait(), DEADLINE)
            except TimeoutError:
                pass
            pipe.send((got, nbytes, time.perf_counter() - first, cpu_seconds() - cpu0))

    asyncio.run(main())


def send_objtransport(port: int, size: int, count: int, framing: str = "native",
                      datagram: int = DATAGRAM) -> float:
    from objtransport import NetworkTransport

    async def main() -> float:
        async with NetworkTransport(timeout=DEADLINE) as net:
            conn = await net.connect("127.0.0.1", port, transport="quic", framing=framing,
                                     ssl_context=_insecure(), max_datagram_size=datagram)
            payload = b"x" * size
            cpu0 = cpu_seconds()
            for _ in range(count):
                await net.send_data(conn, payload)
            await net.flush(conn, timeout=DEADLINE)
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


def echo_objtransport(pipe: Connection) -> None:
    from objtransport import Message, NetworkTransport

    async def main() -> None:
        chain, key = _cert()
        async with NetworkTransport() as net:
            def echo(msg: Message) -> None:
                net.send_nowait(msg.conn_id, msg.data)

            listener = await net.listen("127.0.0.1", 0, handler=echo, transport="quic",
                                        certificate_chain=chain, private_key=key)
            pipe.send(listener.port)
            cpu0 = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send(cpu_seconds() - cpu0)

    asyncio.run(main())


def ping_objtransport(port: int, rounds: int, warmup: int,
                      framing: str = "native") -> tuple[list[float], float]:
    from objtransport import NetworkTransport

    async def main() -> tuple[list[float], float]:
        async with NetworkTransport() as net:
            conn = await net.connect("127.0.0.1", port, transport="quic", framing=framing,
                                     ssl_context=_insecure())
            payload = b"p" * 64
            out: list[float] = []
            cpu0 = cpu_seconds()
            for i in range(rounds + warmup):
                t = time.perf_counter_ns()
                await net.send_data(conn, payload)
                await net.receive(conn, timeout=5.0)
                if i >= warmup:
                    out.append((time.perf_counter_ns() - t) / 1000)
            return out, cpu_seconds() - cpu0

    return asyncio.run(main())


# -- plain aioquic ----------------------------------------------------------------------------

def _server_config(datagram: int = DATAGRAM) -> Any:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.tls import load_pem_private_key, load_pem_x509_certificates

    chain, key = _cert()
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN_RAW],
                               max_datagram_size=datagram)
    config.certificate = load_pem_x509_certificates(chain)[0]
    config.private_key = load_pem_private_key(key)
    return config


def _client_config(datagram: int = DATAGRAM) -> Any:
    from aioquic.quic.configuration import QuicConfiguration

    return QuicConfiguration(is_client=True, alpn_protocols=[ALPN_RAW],
                             verify_mode=ssl.CERT_NONE, max_datagram_size=datagram)


def recv_plain(pipe: Connection, size: int, count: int, datagram: int = DATAGRAM) -> None:
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.quic.events import QuicEvent, StreamDataReceived

    state = {"got": 0, "nbytes": 0, "first": 0.0, "cpu0": 0.0}

    async def main() -> None:
        done = asyncio.Event()

        class Counter(QuicConnectionProtocol):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.buf = bytearray()

            def quic_event_received(self, event: QuicEvent) -> None:
                if not isinstance(event, StreamDataReceived):
                    return
                if not state["got"] and not self.buf:
                    state["first"] = time.perf_counter()
                    state["cpu0"] = cpu_seconds()
                buf = self.buf
                buf += event.data
                off = 0
                n = len(buf)
                got = 0
                while n - off >= 4:
                    (length,) = LEN.unpack_from(buf, off)
                    if n - off - 4 < length:
                        break
                    off += 4 + length
                    got += 1
                    state["nbytes"] += length
                del buf[:off]
                state["got"] += got
                if state["got"] >= count and not done.is_set():
                    done.set()
                    # tell the sender all arrived (it has no other way to know)
                    self._quic.send_stream_data(event.stream_id, b"!")  # noqa: SLF001
                    self.transmit()

        server = await serve("127.0.0.1", 0, configuration=_server_config(datagram),
                             create_protocol=Counter)
        pipe.send(server._transport.get_extra_info("sockname")[1])  # noqa: SLF001
        try:
            await asyncio.wait_for(done.wait(), DEADLINE)
        except TimeoutError:
            pass
        pipe.send((state["got"], state["nbytes"], time.perf_counter() - state["first"],
                   cpu_seconds() - state["cpu0"]))
        server.close()

    asyncio.run(main())


def send_plain(port: int, size: int, count: int, datagram: int = DATAGRAM) -> float:
    from aioquic.asyncio import connect

    async def main() -> float:
        async with connect("127.0.0.1", port, configuration=_client_config(datagram)) as client:
            reader, writer = await client.create_stream()
            frame = LEN.pack(size) + b"x" * size
            every = max(1, YIELD_BYTES // len(frame))
            cpu0 = cpu_seconds()
            for i in range(count):
                writer.write(frame)
                if i % every == every - 1:
                    await asyncio.sleep(0)
            await asyncio.wait_for(reader.readexactly(1), DEADLINE)  # the receiver has all
            cpu = cpu_seconds() - cpu0
            await asyncio.sleep(0.2)
        return cpu

    return asyncio.run(main())


def echo_plain(pipe: Connection) -> None:
    from aioquic.asyncio import serve

    async def main() -> None:
        def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async def run() -> None:
                try:
                    while True:
                        head = await reader.readexactly(4)
                        body = await reader.readexactly(LEN.unpack(head)[0])
                        writer.write(head + body)
                except asyncio.IncompleteReadError:
                    return
            tasks.add(asyncio.get_running_loop().create_task(run()))

        tasks: set[asyncio.Task[None]] = set()
        server = await serve("127.0.0.1", 0, configuration=_server_config(),
                             stream_handler=on_stream)
        pipe.send(server._transport.get_extra_info("sockname")[1])  # noqa: SLF001
        cpu0 = cpu_seconds()
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        pipe.send(cpu_seconds() - cpu0)
        server.close()

    asyncio.run(main())


def ping_plain(port: int, rounds: int, warmup: int) -> tuple[list[float], float]:
    from aioquic.asyncio import connect

    async def main() -> tuple[list[float], float]:
        async with connect("127.0.0.1", port, configuration=_client_config()) as client:
            reader, writer = await client.create_stream()
            frame = LEN.pack(64) + b"p" * 64
            out: list[float] = []
            cpu0 = cpu_seconds()
            for i in range(rounds + warmup):
                t = time.perf_counter_ns()
                writer.write(frame)
                await reader.readexactly(68)
                if i >= warmup:
                    out.append((time.perf_counter_ns() - t) / 1000)
            return out, cpu_seconds() - cpu0

    return asyncio.run(main())
