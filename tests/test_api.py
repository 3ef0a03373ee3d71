"""The public API surface is deliberate: a change to it must change this test."""

from __future__ import annotations

import objtransport

EXPECTED = {
    "CircuitBreakerState", "CircuitOpenError", "ConnectError", "ConnectionClosed",
    "ConnectionInfo", "ConnectionNotFound", "ConnectionNotReady", "Framing", "Listener",
    "Message", "MessageTooLarge", "NetworkTransport", "NoAvailableConnection", "Options",
    "Priority", "ProtocolError", "SendTimeout", "ServiceNotRunning", "SessionLost",
    "TransportError", "TransportKind", "TransportMetrics", "UnsupportedTransport", "__version__",
}


def test_all_is_the_public_api() -> None:
    assert set(objtransport.__all__) == EXPECTED
    for name in objtransport.__all__:
        assert hasattr(objtransport, name), name


def test_every_error_is_a_transport_error() -> None:
    errors = [getattr(objtransport, n) for n in objtransport.__all__
              if isinstance(getattr(objtransport, n), type)
              and issubclass(getattr(objtransport, n), Exception)]
    assert len(errors) == 13
    assert all(issubclass(e, objtransport.TransportError) for e in errors)


def test_defaults_are_the_original_modules() -> None:
    o = objtransport.Options()
    assert (o.pool_size, o.timeout, o.reconnect_interval, o.max_reconnect_attempts, o.ssl) == (
        10, 5.0, 1.0, 5, False)
    assert (o.failure_threshold, o.reset_timeout) == (5, 30.0)
    assert o.max_message_size == 64 * 1024 * 1024
