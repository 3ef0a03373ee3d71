"""objtransport: one asyncio API to exchange messages over TCP, TLS, UDP, WebSocket, gRPC and QUIC.

::

    from objtransport import NetworkTransport

    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0)
        conn_id = await net.connect("127.0.0.1", listener.port)
        await net.send_data(conn_id, b"hello")
        msg = await net.receive(timeout=5.0)
"""

from __future__ import annotations

from . import events
from .batch import Batch
from .config import Framing, Options, Priority, TransportKind
from .connection import ConnectionInfo
from .events import Event
from .exceptions import (
    AuthenticationError,
    CircuitOpenError,
    ConnectError,
    ConnectionClosed,
    ConnectionNotFound,
    ConnectionNotReady,
    ListenError,
    MessageTooLarge,
    NoAvailableConnection,
    NoResponder,
    ProtocolError,
    ReceiveTimeout,
    RequestCancelled,
    RequestTimeout,
    SendTimeout,
    ServiceNotRunning,
    SessionLost,
    TransportError,
    UnsupportedFeature,
    UnsupportedTransport,
)
from .listener import Listener
from .params import SendDataOptions
from .sansio.breaker import CircuitBreakerState
from .sansio.events import Message
from .service import NetworkTransport, TransportMetrics
from .workers import WorkerPool, serve

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "CircuitBreakerState",
    "CircuitOpenError",
    "AuthenticationError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionInfo",
    "ConnectionNotFound",
    "ConnectionNotReady",
    "Event",
    "Framing",
    "ListenError",
    "Listener",
    "Message",
    "MessageTooLarge",
    "NetworkTransport",
    "NoAvailableConnection",
    "NoResponder",
    "Options",
    "Priority",
    "SendDataOptions",
    "ProtocolError",
    "ReceiveTimeout",
    "RequestCancelled",
    "RequestTimeout",
    "SendTimeout",
    "ServiceNotRunning",
    "SessionLost",
    "TransportError",
    "TransportKind",
    "TransportMetrics",
    "UnsupportedFeature",
    "UnsupportedTransport",
    "WorkerPool",
    "__version__",
    "events",
    "serve",
]
