"""The registry of benchmark cases. A new transport adds its cases and its own baselines.

Each case names its implementations (``objtransport`` first) and the one baseline its summary
ratio is taken against; :data:`REQUIRES` says what each implementation needs installed, so a
missing baseline stops the suite before it starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import workers as w
from . import workers_grpc as gr
from . import workers_idle as idle_
from . import workers_idle_rounds as rounds_
from . import workers_iperf as iperf
from . import workers_req as req
from . import workers_scale as scale_
from . import workers_udp as udp_
from . import workers_ws as ws
from .runner import SRC_VAR, Result, latency, throughput

KiB = 1024
MiB = 1024 * 1024


#: run(scale, loop) -> Result; raises BenchError when the run fails
Run = Callable[[float, str], Result]


@dataclass
class Case:
    name: str
    unit: str  # "msg/s", "MB/s" or "µs"
    target: str
    #: implementation name -> run ; "objtransport" first
    impls: dict[str, Run]
    #: the implementation the summary's ratio is taken against
    baseline: str = ""

    def __post_init__(self) -> None:
        if not self.baseline:
            self.baseline = list(self.impls)[1]
        assert list(self.impls)[0] == "objtransport" and self.baseline in self.impls


#: what an implementation needs: Python modules, or "bin:NAME" for a program on PATH
REQUIRES: dict[str, tuple[str, ...]] = {
    "pyzmq": ("zmq",),
    "websockets": ("websockets",),
    "grpc.aio": ("grpc", "grpc_tools"),
    "iperf3": ("bin:iperf3",),
}
#: what objtransport needs for the cases whose name starts with the key
REQUIRES_OURS: dict[str, tuple[str, ...]] = {
    "tcp 1 MiB JSON": ("zstandard",),
    "websocket": ("websockets",),
    "grpc": ("grpc", "grpc_tools"),
}


def against(case: Case, checkout: str) -> Case:
    """``case`` with one more implementation, "objtransport@<dir>": objtransport's own run
    with the package imported from ``checkout`` (its ``src/`` if it has one) in every peer
    (:data:`~.runner.SRC_VAR`)."""
    path = Path(checkout).resolve()
    src = path / "src" if (path / "src" / "objtransport").is_dir() else path
    if not (src / "objtransport").is_dir():
        raise SystemExit(f"--against {checkout}: no objtransport package there")
    ours = case.impls["objtransport"]

    def run(scale: float, loop: str) -> Result:
        os.environ[SRC_VAR] = str(src)  # inherited by the peers spawned now
        try:
            return ours(scale, loop)
        finally:
            del os.environ[SRC_VAR]

    impls = dict(case.impls)
    impls[f"objtransport@{path.name}"] = run
    return Case(case.name, case.unit, case.target, impls, case.baseline)


def _tp(recv: Callable[..., None], send: Callable[..., float], size: int, count: int,
        unit: str) -> Run:
    return lambda scale, loop: throughput(recv, send, size, max(100, int(count * scale)),
                                          unit, loop)


def _lat(echo: Callable[..., None], ping: Callable[..., tuple[list[float], float]]) -> Run:
    return lambda scale, loop: latency(echo, ping, max(500, int(5000 * scale)), 500, loop)


def _iperf(size: int, count: int, unit: str) -> Run:
    return lambda scale, loop: iperf.throughput(size, max(100, int(count * scale)), unit, loop)


def _tcp_throughput(size: int, counts: tuple[int, int, int], unit: str, target: str,
                    iperf_count: int = 0) -> Case:
    label = f"{size} B" if size < KiB else f"{size // KiB} KiB" if size < MiB else "1 MiB"
    impls = {
        "objtransport": _tp(w.recv_objtransport, w.send_objtransport, size, counts[0], unit),
        "asyncio": _tp(w.recv_asyncio, w.send_asyncio, size, counts[1], unit),
        "pyzmq": _tp(w.recv_pyzmq, w.send_pyzmq, size, counts[2], unit),
    }
    if iperf_count:
        impls["iperf3"] = _iperf(size, iperf_count, unit)
    return Case(f"tcp {label}", unit, target, impls,
                baseline="iperf3" if iperf_count else "pyzmq")


CASES: list[Case] = [
    _tcp_throughput(64, (1_500_000, 300_000, 1_500_000), "msg/s", ">= 1.5x pyzmq"),
    _tcp_throughput(KiB, (800_000, 200_000, 800_000), "msg/s", ">= 1.3x pyzmq"),
    _tcp_throughput(64 * KiB, (20_000, 10_000, 20_000), "MB/s", "-", iperf_count=30_000),
    _tcp_throughput(MiB, (2_000, 1_000, 2_000), "MB/s", ">= 0.8x iperf3", iperf_count=3_000),
    Case("tcp 64 B batch receive", "msg/s", "receiver CPU <= 0.3 us/msg", {
        # the sender of "tcp 64 B"; the receiver's handler takes one Batch per read
        "objtransport": _tp(w.recv_objtransport_batch, w.send_objtransport, 64, 1_500_000,
                            "msg/s"),
        "pyzmq": _tp(w.recv_pyzmq, w.send_pyzmq, 64, 1_500_000, "msg/s"),
    }),
    Case("tcp 64 B QoS mix", "msg/s", "QoS on >= 0.9x QoS off (cost <= 10%)", {
        # high and normal messages alternating; nothing throttled
        "objtransport": _tp(w.recv_objtransport,
                            partial(w.send_objtransport, priorities=("high", "normal")),
                            64, 1_500_000, "msg/s"),
        "qos off": _tp(w.recv_objtransport,
                       partial(w.send_objtransport, options={"qos": False},
                               priorities=("high", "normal")), 64, 1_500_000, "msg/s"),
    }),
    *[Case(f"tcp {label} acks", "msg/s", "acks on >= 0.85x acks off (cost <= 15%)", {
        "objtransport": _tp(w.recv_objtransport, w.send_objtransport, size, count, "msg/s"),
        "acks off": _tp(w.recv_objtransport,
                        partial(w.send_objtransport, options={"reliable": False}),
                        size, count, "msg/s"),
    }) for label, size, count in (("64 B", 64, 1_500_000), ("1 KiB", KiB, 800_000))],
    Case("tcp 64 B send_many", "msg/s", ">= 3x pyzmq", {
        # batches of 1000 messages per send_many call
        "objtransport": _tp(w.recv_objtransport, w.send_many_objtransport, 64, 3_000_000,
                            "msg/s"),
        "pyzmq": _tp(w.recv_pyzmq, w.send_pyzmq, 64, 1_500_000, "msg/s"),
    }),
    Case("tcp 64 B send_many batch receive", "msg/s", ">= 3x pyzmq", {
        # both cheap ends: send_many (batches of 1000) and one Batch per read on the
        # receiver, so neither side's per-message handler call bounds the rate
        "objtransport": _tp(w.recv_objtransport_batch, w.send_many_objtransport, 64,
                            3_000_000, "msg/s"),
        "pyzmq": _tp(w.recv_pyzmq, w.send_pyzmq, 64, 1_500_000, "msg/s"),
    }),
    Case("tcp ping-pong 64 B", "µs", "p50 within 15 us of asyncio", {
        "objtransport": _lat(w.echo_objtransport, w.ping_objtransport),
        "asyncio": _lat(w.echo_asyncio, w.ping_asyncio),
        "pyzmq": _lat(w.echo_pyzmq, w.ping_pyzmq),
    }),
]


# -- WebSocket (issue 4): objtransport native and raw next to a plain `websockets` pair ------

def _ws_case(framing: str, label: str, size: int, counts: tuple[int, int], unit: str,
             target: str) -> Case:
    recv = partial(w.recv_objtransport, transport="websocket")
    send = partial(w.send_objtransport, transport="websocket", framing=framing)
    return Case(f"websocket {framing} {label}", unit, target, {
        "objtransport": _tp(recv, send, size, counts[0], unit),
        "websockets": _tp(ws.recv_plain, ws.send_plain, size, counts[1], unit),
    })


CASES += [
    _ws_case("native", "64 B", 64, (1_000_000, 200_000), "msg/s", ">= 10x websockets"),
    _ws_case("native", "1 KiB", KiB, (600_000, 200_000), "msg/s", ">= 5x websockets"),
    _ws_case("native", "1 MiB", MiB, (2_000, 1_000), "MB/s", ">= 0.9x websockets"),
    _ws_case("raw", "64 B", 64, (200_000, 200_000), "msg/s", ">= 0.85x websockets"),
    _ws_case("raw", "1 KiB", KiB, (200_000, 200_000), "msg/s", ">= 0.85x websockets"),
    _ws_case("raw", "1 MiB", MiB, (1_000, 1_000), "MB/s", ">= 0.85x websockets"),
    *[Case(f"websocket {framing} ping-pong 64 B", "µs", "p50 <= 1.2x websockets", {
        "objtransport": _lat(partial(w.echo_objtransport, transport="websocket"),
                             partial(w.ping_objtransport, transport="websocket",
                                     framing=framing)),
        "websockets": _lat(ws.echo_plain, ws.ping_plain),
    }) for framing in ("native", "raw")],
]


# -- gRPC (issue 5): objtransport native and raw next to a plain grpc.aio streaming pair ------

def _grpc_case(framing: str, label: str, size: int, counts: tuple[int, int], unit: str,
               target: str) -> Case:
    recv = partial(w.recv_objtransport, transport="grpc")
    send = partial(w.send_objtransport, transport="grpc", framing=framing)
    return Case(f"grpc {framing} {label}", unit, target, {
        "objtransport": _tp(recv, send, size, counts[0], unit),
        "grpc.aio": _tp(gr.recv_plain, gr.send_plain, size, counts[1], unit),
    })


CASES += [
    _grpc_case("native", "64 B", 64, (1_000_000, 40_000), "msg/s", ">= 50x grpc.aio"),
    _grpc_case("native", "1 KiB", KiB, (500_000, 40_000), "msg/s", ">= 20x grpc.aio"),
    _grpc_case("native", "1 MiB", MiB, (2_000, 1_000), "MB/s", ">= 0.9x grpc.aio"),
    _grpc_case("raw", "64 B", 64, (40_000, 40_000), "msg/s", ">= 1.0x grpc.aio"),
    _grpc_case("raw", "1 KiB", KiB, (40_000, 40_000), "msg/s", ">= 0.9x grpc.aio"),
    _grpc_case("raw", "1 MiB", MiB, (1_000, 1_000), "MB/s", ">= 0.9x grpc.aio"),
    *[Case(f"grpc {framing} ping-pong 64 B", "µs", "p50 <= 1.2x grpc.aio", {
        "objtransport": _lat(partial(w.echo_objtransport, transport="grpc"),
                             partial(w.ping_objtransport, transport="grpc", framing=framing)),
        "grpc.aio": _lat(gr.echo_plain, gr.ping_plain),
    }) for framing in ("native", "raw")],
]


# -- UDP (issue 3): objtransport native next to a plain asyncio DatagramProtocol pair --------
# Received messages/s and loss (printed per run). "paced" senders send at a fixed rate in
# bursts of 64 (both sides alike); unpaced ones as fast as their API allows.

def _udp(size: int, count: int, unit: str, rate: float = 0.0
         ) -> Callable[[Callable[..., None], Callable[..., float]], Run]:
    def make(recv: Callable[..., None], send: Callable[..., float]) -> Run:
        return lambda scale, loop: throughput(
            recv, partial(send, rate=rate), size, max(1000, int(count * scale)), unit, loop,
            lossy=True)
    return make


def _udp_case(name: str, size: int, count: int, unit: str, target: str,
              rate: float = 0.0, no_offload: bool = False) -> Case:
    make = _udp(size, count, unit, rate)
    impls = {
        "objtransport": make(udp_.recv_objtransport, udp_.send_objtransport),
        "asyncio": make(udp_.recv_asyncio, udp_.send_asyncio),
    }
    if no_offload:  # udp_offload=False on both peers: one system call per datagram
        impls["no offload"] = make(partial(udp_.recv_objtransport, offload=False),
                                   partial(udp_.send_objtransport, offload=False))
    return Case(name, unit, target, impls)


CASES += [
    _udp_case("udp 64 B", 64, 400_000, "msg/s",
              ">= 400k msg/s received (offload), 250k without, loss <= 1 %", no_offload=True),
    _udp_case("udp 64 B paced 200k", 64, 400_000, "msg/s", "loss <= 2 %", rate=200_000),
    _udp_case("udp 1 KiB", KiB, 300_000, "msg/s", "received >= asyncio"),
    _udp_case("udp 1 KiB paced 150k", KiB, 300_000, "msg/s", "loss <= 2 %", rate=150_000),
    Case("udp 64 KiB frag 1200 B", "MB/s", "-", {
        "objtransport": _udp(64 * KiB, 4_000, "MB/s", 4_000)(
            udp_.recv_objtransport, udp_.send_objtransport),
        # the same bytes as plain 1200 B datagrams (55 per 64 KiB message)
        "asyncio 1200 B": _udp(udp_.PIECE, 4_000 * 55, "MB/s", 4_000 * 55)(
            udp_.recv_asyncio, udp_.send_asyncio),
    }),
]


# -- memory per idle connection (issue 17): a listener holding 10,000 idle TCP connections ----
# Listener heap growth per connection (tracemalloc, bytes); every connection must answer a
# ping within 1 s. Baseline: a plain asyncio Protocol server holding the same connections.

def _idle(serve: Callable[..., None], native: bool) -> Run:
    return lambda scale, loop: idle_.idle(serve, max(100, int(10_000 * scale)), native, loop)


def _rounds(serve: Callable[..., None], native: bool) -> Run:
    return lambda scale, loop: rounds_.rounds(serve, max(100, int(10_000 * scale)), native,
                                              loop)


CASES += [
    Case("tcp 10,000 idle connections", "B/conn", "<= 10 KiB per connection, all answer a "
         "ping within 1 s", {
             "objtransport": _idle(idle_.serve_objtransport, True),
             "asyncio": _idle(idle_.serve_asyncio, False),
         }),
    # the same connections over 3 keepalive rounds of 1 s: the tracked objects each round
    # leaves alive per connection (what moves to the oldest generation), the listener's CPU
    # per connection and round (rx); the name holds the case above's, so that --only picks
    # both (it splits on commas)
    Case("tcp 10,000 idle connections keepalive rounds", "objs/conn/round",
         "< 0.1 tracked objects per connection left by a keepalive round", {
             "objtransport": _rounds(rounds_.serve_objtransport, True),
             "asyncio": _rounds(rounds_.serve_asyncio, False),
         }),
]


def _rounds_over(transport: str, n: int) -> Run:
    return lambda scale, loop: rounds_.rounds(rounds_.serve_objtransport,
                                              max(100, int(n * scale)), True, loop, transport)


# the same rounds over the other link kinds (their far deadlines on the wheel too): 1,000
# connections, objtransport clients (their own keepalive an hour away) answering the
# listener's PINGs; the floor is the TCP listener's with as many connections
CASES += [
    Case(f"{transport} 1000 idle connections keepalive rounds", "objs/conn/round", target, {
             "objtransport": _rounds_over(transport, 1_000),
             "tcp": lambda scale, loop: rounds_.rounds(rounds_.serve_objtransport,
                                                       max(100, int(1_000 * scale)), True,
                                                       loop),
         })
    for transport, target in (
        ("udp", "< 0.1 tracked objects per connection left by a keepalive round"),
        # what a round leaves is the carrier library's own (design.md, "Keepalive without
        # garbage, every link kind"): the target is to add nothing to it
        ("websocket", "<= 4.1 tracked objects per connection and round (websockets' own 4)"),
        ("grpc", "<= 19.1 tracked objects per connection and round (grpc.aio's own 19)"),
    )
]


# -- many cores (issue 16): objtransport.serve with workers=2 against workers=1 -----------------
# 8 cheap raw senders (pre-encoded frames, 64 KiB per write); the receivers are measured over
# a window while all send. The summary ratio is the scaling workers=2 / workers=1.

CASES += [
    Case("tcp 64 B workers", "msg/s", ">= 1.6x workers=1 (2 cores)", {
        "objtransport": lambda scale, loop: scale_.run(scale_.serve_pool, (2,), loop, scale),
        "workers=1": lambda scale, loop: scale_.run(scale_.serve_pool, (1,), loop, scale),
        "asyncio": lambda scale, loop: scale_.run(scale_.serve_asyncio, (), loop, scale),
    }, baseline="workers=1"),
]


# -- messaging (issue 15): request/reply next to grpc.aio unary and pyzmq DEALER/ROUTER;
# compression over a throttled link ------------------------------------------------------------
def _req(serve: Callable[..., None], ask: Callable[..., tuple[float, float]], count: int,
         inflight: int) -> Run:
    return lambda scale, loop: req.reqrep(serve, ask, max(200, int(count * scale)), inflight,
                                          loop)


CASES += [
    Case(f"tcp request/reply 64 B x{inflight}", "msg/s", ">= grpc.aio unary", {
        "objtransport": _req(req.serve_objtransport, req.ask_objtransport, count, inflight),
        "grpc.aio": _req(req.serve_grpc, req.ask_grpc, count // 4, inflight),
        "pyzmq": _req(req.serve_pyzmq, req.ask_pyzmq, count, inflight),
    }, baseline="grpc.aio")
    for inflight, count in ((1, 5_000), (16, 40_000), (256, 80_000))
]
CASES += [
    Case("tcp 1 MiB JSON at 10 MB/s, compression", "MB/s", "zstd/zlib > 3x off", {
        "objtransport": _tp(w.recv_objtransport,
                            partial(req.send_compressed, compression="zstd"), MiB, 60, "MB/s"),
        "zlib": _tp(w.recv_objtransport, partial(req.send_compressed, compression="zlib"),
                    MiB, 60, "MB/s"),
        "off": _tp(w.recv_objtransport, partial(req.send_compressed, compression=None),
                   MiB, 20, "MB/s"),
    }, baseline="off"),
]


# -- QUIC (issue 13): objtransport native and raw next to a plain aioquic pair ---------------
# The plain pair: aioquic.asyncio, one stream of {packet, 4} frames (workers_quic.py).
from . import workers_quic as qu  # noqa: E402

REQUIRES["aioquic"] = ("aioquic",)
REQUIRES_OURS["quic"] = ("aioquic",)


def _quic_case(framing: str, label: str, size: int, counts: tuple[int, int], unit: str,
               target: str, datagram: int = qu.DATAGRAM) -> Case:
    send = partial(qu.send_objtransport, framing=framing, datagram=datagram)
    recv = partial(qu.recv_objtransport, datagram=datagram)
    suffix = "" if datagram == qu.DATAGRAM else f" dgram {datagram // KiB} KiB"
    return Case(f"quic {framing} {label}{suffix}", unit, target, {
        "objtransport": _tp(recv, send, size, counts[0], unit),
        "aioquic": _tp(partial(qu.recv_plain, datagram=datagram),
                       partial(qu.send_plain, datagram=datagram), size, counts[1], unit),
    })


CASES += [
    _quic_case("native", "64 B", 64, (200_000, 200_000), "msg/s", ">= 3x aioquic"),
    _quic_case("native", "1 KiB", KiB, (40_000, 40_000), "msg/s", ">= 1x aioquic"),
    _quic_case("native", "1 MiB", MiB, (50, 50), "MB/s", ">= 0.9x aioquic"),
    _quic_case("raw", "64 B", 64, (200_000, 200_000), "msg/s", ">= 0.9x aioquic"),
    _quic_case("raw", "1 KiB", KiB, (40_000, 40_000), "msg/s", ">= 0.9x aioquic"),
    _quic_case("raw", "1 MiB", MiB, (50, 50), "MB/s", ">= 0.9x aioquic"),
    # both pairs with 16 KiB packets (max_datagram_size): loopback or a known path
    _quic_case("native", "64 B", 64, (400_000, 400_000), "msg/s", ">= 3x aioquic", 16 * KiB),
    _quic_case("native", "1 MiB", MiB, (200, 200), "MB/s", ">= 0.9x aioquic", 16 * KiB),
    *[Case(f"quic {framing} ping-pong 64 B", "µs", "p50 <= 1.2x aioquic", {
        "objtransport": _lat(qu.echo_objtransport,
                             partial(qu.ping_objtransport, framing=framing)),
        "aioquic": _lat(qu.echo_plain, qu.ping_plain),
    }) for framing in ("native", "raw")],
]
