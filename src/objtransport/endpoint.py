"""What a connection is to (:class:`Endpoint`) and where it stands (:class:`ConnState`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .config import TransportKind

__all__ = ["ConnState", "Endpoint"]


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a pool and a breaker are keyed by."""

    transport: TransportKind
    host: str
    port: int
    tls: bool

    def __post_init__(self) -> None:
        if self.transport is TransportKind.QUIC and not self.tls:
            object.__setattr__(self, "tls", True)  # QUIC is always TLS 1.3

    def __str__(self) -> str:
        scheme = self.transport.value + ("+tls" if self.tls else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"
