"""The drivers of this installation, by transport kind (:class:`DriverTable`).

TCP and UDP are always there; WebSocket, gRPC and QUIC when their third-party library imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .auth import AUTH_OPTIONS
from .config import Framing, TransportKind
from .drivers.base import Driver
from .drivers.tcp import TcpDriver
from .drivers.udp import UdpDriver
from .exceptions import UnsupportedTransport

__all__ = ["DriverTable"]


def _websocket() -> Driver | None:
    try:
        from .drivers.websocket import WebSocketDriver
    except ImportError:  # `websockets` is not installed
        return None
    return WebSocketDriver()


def _grpc() -> Driver | None:
    try:
        from .drivers.grpc_driver import GrpcDriver
    except ImportError:  # `grpcio` is not installed
        return None
    return GrpcDriver()


def _quic() -> Driver | None:
    try:
        from .drivers.quic_driver import QuicDriver
    except ImportError:  # `aioquic` is not installed
        return None
    return QuicDriver()


#: transports whose driver needs a third-party library: present when it imports
_OPTIONAL: dict[TransportKind, Callable[[], Driver | None]] = {
    TransportKind.WEBSOCKET: _websocket,
    TransportKind.GRPC: _grpc,
    TransportKind.QUIC: _quic,
}


#: transports whose token travels in the native HELLO (raw framing cannot carry one)
_HELLO_AUTH = frozenset({TransportKind.TCP, TransportKind.UDP, TransportKind.QUIC})

#: the pip extra (``objtransport[...]``) of each optional transport
_EXTRAS = {TransportKind.WEBSOCKET: "websocket", TransportKind.GRPC: "grpc",
           TransportKind.QUIC: "quic"}


class DriverTable:
    """One driver per supported transport kind."""

    def __init__(self) -> None:
        self._drivers: dict[TransportKind, Driver] = {TransportKind.TCP: TcpDriver(),
                                                      TransportKind.UDP: UdpDriver()}
        for kind, factory in _OPTIONAL.items():
            driver = factory()
            if driver is not None:
                self._drivers[kind] = driver

    @property
    def names(self) -> list[str]:
        """The transports this installation supports."""
        return [k.value for k in self._drivers]

    def get(self, transport: str | TransportKind) -> Driver:
        """The driver for a transport name or kind; raises ``UnsupportedTransport``."""
        kind = TransportKind.parse(transport)
        driver = self._drivers.get(kind)
        if driver is None:
            raise UnsupportedTransport(kind.value, tuple(self.names), _EXTRAS.get(kind))
        return driver

    def kind(self, transport: str | TransportKind) -> TransportKind:
        """The supported kind of a transport name; raises ``UnsupportedTransport``."""
        return self.get(transport).kind

    @staticmethod
    def split_options(driver: Driver, options: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Separate a driver's own options (e.g. ``path``) from :class:`Options` fields.
        ``options`` is not changed."""
        for name in sorted(AUTH_OPTIONS):
            if name in options and name not in driver.extra_options:
                raise ValueError(f"{name}= is not supported over {driver.kind.value} yet "
                                 "(tcp, udp, websocket, grpc and quic only)")
        extra = {k: v for k, v in options.items() if k in driver.extra_options}
        rest = {k: v for k, v in options.items() if k not in driver.extra_options}
        return rest, extra

    @staticmethod
    def check_auth(driver: Driver, extra: Mapping[str, Any], framing: Framing) -> None:
        """Raw framing over TCP and UDP has no HELLO to carry a token: ``authenticate=`` or
        ``token=`` there is a ``ValueError`` (mutual TLS still gives an identity)."""
        if framing is not Framing.RAW or driver.kind not in _HELLO_AUTH:
            return
        for name in ("authenticate", "token", "credentials"):
            if extra.get(name) is not None:
                raise ValueError(
                    f"{name}= needs native framing over {driver.kind.value}: raw "
                    "{packet, 4} has no HELLO to carry a token (authenticate raw peers "
                    "with mutual TLS: the certificate subject is ConnectionInfo.identity)")
