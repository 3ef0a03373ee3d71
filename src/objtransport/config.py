"""Configuration: enums and frozen, validated option sets.

The service holds one :class:`Options` as its defaults; each call may override any field
(``dataclasses.replace`` under the hood), and the result is validated again. Strings from the
public API (``transport="tcp"``, ``priority="high"``) become enums here, at the edge.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Framing",
    "Options",
    "Priority",
    "TransportKind",
    "KiB",
    "MiB",
]

KiB = 1024
MiB = 1024 * 1024


class TransportKind(enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    WEBSOCKET = "websocket"
    GRPC = "grpc"
    QUIC = "quic"

    @classmethod
    def parse(cls, value: str | TransportKind) -> TransportKind:
        """Return the enum for ``value``; raise ``UnsupportedTransport`` for an unknown name."""
        if isinstance(value, TransportKind):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            from .exceptions import UnsupportedTransport

            raise UnsupportedTransport(str(value), tuple(k.value for k in cls)) from None


class Framing(enum.Enum):
    NATIVE = "native"
    RAW = "raw"
    AUTO = "auto"  # listeners only: detect from the peer's first bytes

    @classmethod
    def parse(cls, value: str | Framing) -> Framing:
        if isinstance(value, Framing):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"framing must be one of {[f.value for f in cls]}, not {value!r}"
            ) from None


class Priority(enum.IntEnum):
    CONTROL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if not isinstance(value, str):  # a bool, a float, a list...: not a priority
            raise ValueError(f"priority must be one of {[p.name.lower() for p in cls]} "
                             f"(or a Priority, or its value 0-3), not {value!r}")
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(
                f"priority must be one of {[p.name.lower() for p in cls]}, not {value!r}"
            ) from None


#: the fields whose ``None`` is a value, not "not given"
_NULLABLE = frozenset({"max_reconnect_attempts", "reconnect_deadline", "max_reset_timeout"})
#: the fields only ``NetworkTransport(...)`` takes: one value for the whole service
SERVICE_ONLY = frozenset({"max_spare_chunk_bytes", "settle_heap"})


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if not value >= 0 or (value == 0 and not allow_zero):  # NaN too: no order, no deadline
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Options:
    """Every tunable of a connection, a listener and the service, with safe defaults.

    Times are in seconds, sizes in bytes. The first block keeps the original Elixir
    module's defaults.
    """

    pool_size: int = 10
    timeout: float = 5.0
    reconnect_interval: float = 1.0
    max_reconnect_attempts: int | None = 5  # None: for ever (or until reconnect_deadline)
    ssl: bool = False
    # reconnection backoff: delay_n = min(reconnect_max_delay, interval * multiplier**n),
    # then full jitter (uniform in [0, delay_n]) when reconnect_jitter is true.
    reconnect_multiplier: float = 2.0
    reconnect_max_delay: float = 30.0
    reconnect_jitter: bool = True
    # give up reconnecting this many seconds after the loss (None: no time bound); with
    # max_reconnect_attempts too, whichever comes first
    reconnect_deadline: float | None = None
    # liveness
    keepalive_interval: float = 15.0
    pong_timeout: float = 10.0
    hello_timeout: float = 5.0
    # an accepted socket's TLS handshake must be done within this (else it is cut and its
    # max_connections slot freed); also a client's TLS handshake (asyncio's default is 60 s)
    handshake_timeout: float = 5.0
    idle_timeout: float = 300.0  # pooled connections unused this long are closed
    # circuit breaker, per endpoint
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_max_probes: int = 1
    # a breaker that re-opens (its half-open probe failed) stays open twice as long as the
    # last time, jittered, from reset_timeout up to this (None: reset_timeout, no growth)
    max_reset_timeout: float | None = None
    # limits
    max_frame_size: int = 1 * MiB
    max_message_size: int = 64 * MiB
    max_fragment_size: int = 256 * KiB
    max_partial_messages: int = 64
    max_reassembly_bytes: int = 128 * MiB
    max_pending_bytes: int = 4 * MiB  # send backpressure high-water mark, per connection
    max_connections: int = 10_000  # per listener
    receive_queue_size: int = 100_000  # messages waiting for receive()/messages()
    # framing
    framing: Framing = Framing.NATIVE
    raw_keepalive_filter: bool = True
    raw_keepalive_interval: float = 0.0  # 0 = do not send the 0x00 keepalive byte
    # throttling and QoS (0 = unlimited); burst 0 = 1/10 s of traffic, at least 16 KiB
    max_bandwidth: float = 0.0  # bytes/s sent, per connection
    burst: float = 0.0
    max_receive_bandwidth: float = 0.0  # bytes/s read, per connection (pauses reading)
    receive_burst: float = 0.0
    qos_weights: tuple[int, int] = (4, 1)  # normal : low share of what high leaves
    qos: bool = True  # False: one FIFO for every priority (the priority still travels)
    # lossless sessions (native framing)
    reliable: bool = True  # sequence numbers, ACKs and resume (False: fire and forget)
    session_resume_timeout: float = 60.0  # both sides keep a broken session this long
    # broken sessions a listener keeps for a resume, at most: they hold no max_connections
    # slot; past this the one that waited longest ends (its client gets SessionLost)
    max_kept_sessions: int = 10_000
    max_unacked_bytes: int = 16 * MiB  # sent, not yet acknowledged, before send_data waits
    # the spare buffers of the resend stores' chunk pools (1088 KiB each) that all the
    # sessions of one service keep at most (NetworkTransport's; a call's is ignored)
    max_spare_chunk_bytes: int = 64 * MiB
    # a TCP/TLS link's first full write chunk (1 MiB queued without yielding) frees one
    # 4 MiB block, once per process, which raises glibc's malloc thresholds for the whole
    # process (README, "The process's heap (glibc)"); False: never (NetworkTransport's)
    settle_heap: bool = True
    # UDP (transport="udp"): message bytes per datagram (native frames add a 20 or 28-byte
    # header); fragments missing after reassembly_timeout give their message up; all peers
    # of one UDP or TCP listener share max_total_reassembly_bytes (memory of incomplete
    # messages: a connection that would pass it is closed, OVERLOADED); socket buffers
    # asked of the OS
    max_datagram_payload: int = 1200
    reassembly_timeout: float = 5.0
    max_total_reassembly_bytes: int = 256 * MiB
    udp_socket_buffer: int = 4 * MiB
    # Linux UDP segmentation offload: many datagrams of a loop turn in one sendmsg
    # (UDP_SEGMENT) and received coalesced (UDP_GRO); off, or where the kernel refuses it,
    # one system call per datagram
    udp_offload: bool = True
    # a native UDP listener admits an address only once it echoed a cookie sent to it
    # (docs/protocol.md, section 6.1); False admits on the first PING, as before (for
    # clients older than the cookie)
    udp_return_check: bool = True
    # messaging (native framing): headers a receiver accepts per message; requests in
    # flight per connection before request() waits; compression ("zlib", "zstd" or None)
    # of messages of at least compression_min_size bytes, when the peer's HELLO allows it
    max_headers: int = 64
    max_header_bytes: int = 8 * KiB
    max_inflight_requests: int = 1024
    compression: str | None = None
    compression_min_size: int = 1 * KiB

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size!r}")
        if self.max_reconnect_attempts is not None and self.max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must be >= 0 (or None: for ever)")
        if self.reconnect_deadline is not None:
            _positive("reconnect_deadline", self.reconnect_deadline)
        if self.max_reset_timeout is not None and self.max_reset_timeout < self.reset_timeout:
            raise ValueError("max_reset_timeout must be >= reset_timeout (or None)")
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if self.half_open_max_probes < 1:
            raise ValueError("half_open_max_probes must be >= 1")
        for name in ("timeout", "reconnect_interval", "keepalive_interval", "pong_timeout",
                     "hello_timeout", "handshake_timeout", "idle_timeout", "reset_timeout",
                     "reconnect_max_delay"):
            _positive(name, getattr(self, name))
        _positive("raw_keepalive_interval", self.raw_keepalive_interval, allow_zero=True)
        if self.reconnect_multiplier < 1.0:
            raise ValueError("reconnect_multiplier must be >= 1.0")
        if self.max_frame_size < 64 or self.max_frame_size > 0xFFFFFFFF:
            raise ValueError("max_frame_size must be within 64 .. 2**32-1")
        if self.max_message_size < 1 or self.max_message_size > 0xFFFFFFFF - 1:
            raise ValueError("max_message_size must be within 1 .. 2**32-2")
        if not 1 <= self.max_fragment_size <= self.max_frame_size - 24:
            raise ValueError("max_fragment_size must be within 1 .. max_frame_size - 24")
        for name in ("max_bandwidth", "burst", "max_receive_bandwidth", "receive_burst"):
            _positive(name, getattr(self, name), allow_zero=True)
        if len(self.qos_weights) != 2 or min(self.qos_weights) < 1:
            raise ValueError("qos_weights must be two integers >= 1 (normal, low)")
        for name in ("max_partial_messages", "max_reassembly_bytes", "max_pending_bytes",
                     "max_connections", "receive_queue_size", "max_kept_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 64 <= self.max_datagram_payload <= 65_479:
            raise ValueError("max_datagram_payload must be within 64 .. 65479 (UDP's 65507 "
                             "less the 28-byte fragment header)")
        _positive("reassembly_timeout", self.reassembly_timeout)
        if self.max_spare_chunk_bytes < 0:
            raise ValueError("max_spare_chunk_bytes must be >= 0 (0: no spares kept)")
        if self.max_total_reassembly_bytes < 1 or self.udp_socket_buffer < 0:
            raise ValueError("max_total_reassembly_bytes must be >= 1, udp_socket_buffer >= 0")
        if not 0 <= self.max_headers <= 4096 or not 0 <= self.max_header_bytes <= 60_000:
            raise ValueError("max_headers must be within 0 .. 4096, max_header_bytes within "
                             "0 .. 60000")
        if self.max_inflight_requests < 1 or self.compression_min_size < 0:
            raise ValueError("max_inflight_requests must be >= 1, compression_min_size >= 0")
        if self.compression not in (None, "zlib", "zstd"):
            raise ValueError(f"compression must be 'zlib', 'zstd' or None, not "
                             f"{self.compression!r}")
        if self.compression == "zstd" and importlib.util.find_spec("zstandard") is None:
            raise ValueError("compression='zstd' needs: pip install 'objtransport[zstd]'")
        if not isinstance(self.framing, Framing):
            object.__setattr__(self, "framing", Framing.parse(self.framing))

    def with_overrides(self, **overrides: Any) -> Options:
        """Return a copy with the non-``None`` overrides applied (and validated); for the
        fields where ``None`` means something (``max_reconnect_attempts=None``: for ever),
        an explicit ``None`` applies too."""
        changes = {k: v for k, v in overrides.items() if v is not None or k in _NULLABLE}
        if not changes:
            return self
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def for_call(self, **overrides: Any) -> Options:
        """:meth:`with_overrides` for one call (``connect``, ``listen``, a group, a pool):
        a service-wide field (:data:`SERVICE_ONLY`) raises ``TypeError`` rather than being
        ignored."""
        wide = SERVICE_ONLY.intersection(overrides)
        if wide:
            name = sorted(wide)[0]
            raise TypeError(f"{name} is service-wide: NetworkTransport({name}=...), "
                            "not an option of one call")
        return self.with_overrides(**overrides)
