"""Types of the public API's parameters, so that a type checker catches a wrong name.

``transport``, ``framing`` and ``priority`` are ``Literal`` types; the per-call options are
``TypedDict``s used as ``**options: Unpack[...]``, so ``mypy --strict`` rejects
``net.connect(host, port, tiemout=3)``. At run time the same names are checked again
(:meth:`Options.with_overrides` raises ``TypeError`` for an unknown one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict

from .auth import Authenticate, Credentials
from .config import Framing, Priority, TransportKind
from .sansio.headers import HeaderValue

__all__ = [
    "ClientFraming",
    "ConnectOptions",
    "FramingName",
    "ListenOptions",
    "PriorityArg",
    "PriorityName",
    "SendDataOptions",
    "SendToOptions",
    "ServiceOptions",
    "TransportArg",
    "TransportName",
]

TransportName = Literal["tcp", "udp", "websocket", "grpc", "quic"]
TransportArg = TransportName | TransportKind
FramingName = Literal["native", "raw", "auto"]
#: what a client speaks (``"auto"`` is for listeners)
ClientFraming = Literal["native", "raw"] | Framing
PriorityName = Literal["control", "high", "normal", "low"]
#: a priority name, its value (0 = control .. 3 = low) or the enum
PriorityArg = PriorityName | Literal[0, 1, 2, 3] | Priority


class _Tunables(TypedDict, total=False):
    """The :class:`~objtransport.Options` fields that no call takes as its own parameter."""

    pool_size: int
    reconnect_interval: float
    max_reconnect_attempts: int | None
    reconnect_deadline: float | None
    reconnect_multiplier: float
    reconnect_max_delay: float
    reconnect_jitter: bool
    keepalive_interval: float
    pong_timeout: float
    hello_timeout: float
    handshake_timeout: float
    idle_timeout: float
    failure_threshold: int
    reset_timeout: float
    max_reset_timeout: float | None
    half_open_max_probes: int
    max_frame_size: int
    max_message_size: int
    max_fragment_size: int
    max_partial_messages: int
    max_reassembly_bytes: int
    max_pending_bytes: int
    max_connections: int
    receive_queue_size: int
    raw_keepalive_filter: bool
    raw_keepalive_interval: float
    max_receive_bandwidth: float
    receive_burst: float
    qos_weights: tuple[int, int]
    qos: bool
    reliable: bool
    session_resume_timeout: float
    max_kept_sessions: int
    max_unacked_bytes: int
    max_datagram_payload: int
    reassembly_timeout: float
    max_total_reassembly_bytes: int
    udp_socket_buffer: int
    udp_offload: bool
    udp_return_check: bool
    max_headers: int
    max_header_bytes: int
    max_inflight_requests: int
    compression: Literal["zlib", "zstd"] | None
    compression_min_size: int


class ServiceOptions(_Tunables, total=False):
    """``NetworkTransport(**options)``: the defaults of every call."""

    timeout: float
    ssl: bool
    framing: FramingName | Framing
    max_spare_chunk_bytes: int
    #: False: the process's malloc thresholds are left alone (README, "The process's heap")
    settle_heap: bool


class _PerCall(_Tunables, total=False):
    max_bandwidth: float
    burst: float
    #: WebSocket: the HTTP path
    path: str
    #: gRPC and QUIC TLS material (PEM)
    root_certificates: bytes
    certificate_chain: bytes
    private_key: bytes
    #: QUIC: UDP payload bytes per packet (1200 by default; at most 16384)
    max_datagram_size: int


class ConnectOptions(_PerCall, total=False):
    """``connect(..., **options)``: overrides of the service's defaults for one
    connection, and the transport's own options (``path``, gRPC certificates)."""

    timeout: float
    #: a bearer token for the listener's ``authenticate`` (native HELLO, WebSocket, gRPC)
    token: str
    #: instead of ``token``: a token, or a function (plain or async) returning one, called
    #: at every connection attempt (so an expiring token is refreshed on reconnect)
    credentials: Credentials


class ListenOptions(_PerCall, total=False):
    """``listen(..., **options)``: overrides for the listener and what it accepts."""

    timeout: float
    #: ``fn(token) -> identity | None`` (sync or async): who may connect (native TCP, TLS,
    #: UDP; WebSocket, gRPC)
    authenticate: Authenticate
    #: authentications under way at once (native TCP/TLS/UDP listeners; default 64): above
    #: it a client is refused at once with GOAWAY OVERLOADED (retryable)
    max_authentications: int


class SendToOptions(_PerCall, total=False):
    """``send_to(..., **options)``: overrides for the pooled connections it opens
    (``timeout`` is ``send_to``'s own parameter)."""


class SendDataOptions(TypedDict, total=False):
    """``send_data(conn, data, **options)``: the per-message arguments, keyword-only (see
    :meth:`~objtransport.NetworkTransport.send_data`).

    A ``**`` dict rather than keyword-only parameters with defaults: CPython 3.11 looks each
    omitted keyword-only parameter up in the function's defaults dict on every call (8
    lookups, ~65 ns of a 0.77 µs send; ``priority`` alone ~30 ns of a 0.69 µs one); an
    empty ``**options`` costs one small dict.
    """

    priority: PriorityArg
    stream: int
    text: bool
    timeout: float | None
    wait_ack: bool
    reliable: bool
    headers: Mapping[str, HeaderValue] | None
    ttl: float | None


#: the names ``send_data`` takes in ``**options`` (anything else raises ``TypeError``)
SEND_DATA_KEYS = frozenset(SendDataOptions.__annotations__)
