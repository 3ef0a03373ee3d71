"""The one exception tree of objtransport.

Every error objtransport raises derives from :class:`TransportError`. Errors from the
operating system (``OSError``), ``ssl`` and the third-party libraries are mapped into this
tree at the driver boundary and chained as ``__cause__``; they never reach the caller raw.

::

    TransportError
    ├── ConnectionNotFound        unknown connection id
    ├── ConnectionNotReady        the connection exists but is not connected (carries .state)
    ├── CircuitOpenError          the endpoint's breaker is open (carries .retry_after)
    ├── NoAvailableConnection     the pool could not hand out a connection
    ├── ConnectError              refused, unreachable, timed out, TLS verification failed
    │   └── AuthenticationError   the listener refused the credentials (never retried)
    ├── ListenError               the address cannot be listened on (busy port, no such address)
    ├── ConnectionClosed          an established connection went away (carries .code, .reason)
    ├── MessageTooLarge           a message above max_message_size (or the datagram limit)
    ├── ProtocolError             the peer broke the wire protocol (carries .code)
    ├── SendTimeout               backpressure did not clear within the timeout (also a
    │                             TimeoutError)
    ├── ReceiveTimeout            receive() got no message within the timeout (also a
    │                             TimeoutError)
    ├── SessionLost               the peer lost our session: some messages unconfirmed
    ├── UnsupportedTransport      a transport name objtransport does not know, or whose extra
    │                             is not installed (the message names the pip command)
    ├── ServiceNotRunning         the NetworkTransport was not started or is stopped
    ├── UnsupportedFeature        headers, requests, ttl or compression on a connection that
    │                             cannot carry them (raw framing, UDP, an older peer)
    ├── RequestTimeout            no answer to a request within its deadline (also a
    │                             TimeoutError)
    ├── NoResponder               the peer answered a request with an error: no handler
    │                             replies there, or its handler raised (carries .status)
    └── RequestCancelled          the connection a request waits on was given up

Each message names what happened and the endpoint it happened to.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CircuitOpenError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionNotFound",
    "ConnectionNotReady",
    "ListenError",
    "MessageTooLarge",
    "NoAvailableConnection",
    "ProtocolError",
    "ReceiveTimeout",
    "SendTimeout",
    "ServiceNotRunning",
    "SessionLost",
    "TransportError",
    "NoResponder",
    "RequestCancelled",
    "RequestTimeout",
    "UnsupportedFeature",
    "UnsupportedTransport",
]


class TransportError(Exception):
    """Root of every objtransport error."""


class ConnectionNotFound(TransportError, KeyError):
    """No connection has this id (it never existed or was disconnected and forgotten)."""

    def __init__(self, conn_id: object) -> None:
        self.conn_id = conn_id
        super().__init__(f"connection {conn_id!r} not found")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConnectionNotReady(TransportError):
    """The connection exists but cannot carry data now."""

    def __init__(self, conn_id: object, state: str, endpoint: str = "") -> None:
        self.conn_id = conn_id
        self.state = state
        where = f" to {endpoint}" if endpoint else ""
        super().__init__(f"connection {conn_id!r}{where} is {state}, not connected")


class CircuitOpenError(TransportError):
    """The endpoint's circuit breaker is open; nothing was sent over the network."""

    def __init__(self, endpoint: str, retry_after: float) -> None:
        self.endpoint = endpoint
        self.retry_after = retry_after
        super().__init__(
            f"circuit open for {endpoint}: failing fast, retry after {retry_after:.3f} s"
        )


class NoAvailableConnection(TransportError):
    """The pool for an endpoint had no usable connection and could not open one."""


class ConnectError(TransportError):
    """Opening a connection failed: refused, unreachable, timed out or TLS rejected."""

    def __init__(self, endpoint: str, reason: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.reason = reason
        #: the HTTP status of a refused WebSocket upgrade (None otherwise)
        self.status = status
        super().__init__(f"cannot connect to {endpoint}: {reason}")


class AuthenticationError(ConnectError):
    """The listener refused our credentials (``token=``): not retried, and counted by the
    endpoint's circuit breaker."""


class ConnectionClosed(TransportError):
    """An established connection was closed (by the peer, an error or a local close)."""

    def __init__(self, endpoint: str, code: int = 0, reason: str = "") -> None:
        self.endpoint = endpoint
        self.code = code
        self.reason = reason
        detail = f" (code {code}: {reason})" if reason else f" (code {code})"
        super().__init__(f"connection to {endpoint} closed{detail}")


class MessageTooLarge(TransportError):
    """A message is larger than the limit that applies to it; nothing was sent."""

    def __init__(self, size: int, limit: int, what: str = "max_message_size") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds {what} ({limit} bytes)")


class ProtocolError(TransportError):
    """The peer broke the wire protocol. ``code`` is the GOAWAY code sent for it."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


class SessionLost(TransportError):
    """The peer lost our session (it restarted, or the resume came too late). The messages
    in ``unconfirmed`` (seq, payload, stream, priority, text) may or may not have arrived;
    ``NetworkTransport.unconfirmed(conn_id)`` hands them over."""

    def __init__(self, endpoint: str, unconfirmed: list[tuple[int, bytes, int, int, bool]]
                 ) -> None:
        self.endpoint = endpoint
        self.unconfirmed = list(unconfirmed)
        super().__init__(f"{endpoint} lost the session: {len(unconfirmed)} message(s) sent "
                         "before were not confirmed")


class SendTimeout(TransportError, TimeoutError):
    """``send_data`` waited for backpressure to clear longer than its timeout."""


class ReceiveTimeout(TransportError, TimeoutError):
    """``receive()`` got no message within its timeout."""


class ListenError(TransportError):
    """``listen`` could not serve the address: the port is taken, the address is not
    local, or the options do not fit the transport."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"cannot listen on {endpoint}: {reason}")


class UnsupportedTransport(TransportError, ValueError):
    """A transport name that objtransport does not support (or not in this build)."""

    def __init__(self, name: str, supported: tuple[str, ...], extra: str | None = None
                 ) -> None:
        self.name = name
        #: the pip extra that would bring this transport, if that is what is missing
        self.extra = extra
        if extra is not None:
            super().__init__(f"transport {name!r} needs: pip install 'objtransport[{extra}]'")
        else:
            super().__init__(f"unsupported transport {name!r}; supported: "
                             f"{', '.join(supported)}")


class ServiceNotRunning(TransportError):
    """The NetworkTransport service is not started, or has been stopped."""


class UnsupportedFeature(TransportError):
    """A feature of the native protocol (headers, requests, ttl, compression) asked of a
    connection that cannot carry it: raw framing, UDP, or a peer that does not announce it."""


class RequestTimeout(TransportError, TimeoutError):
    """No answer to a request within its timeout. An answer that comes later is dropped
    (and counted in ``get_metrics().late_replies``)."""


class NoResponder(TransportError):
    """The peer answered a request with an error instead of a reply: no handler there
    replies (``status`` NO_RESPONDER), or the handler raised (HANDLER_ERROR; the text is
    short and never the peer's traceback), or the deadline had passed (EXPIRED)."""

    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"no reply from {endpoint}: {detail}")


class RequestCancelled(TransportError):
    """The connection a request was waiting on was closed or given up before the answer
    came; the request may or may not have been handled by the peer."""
