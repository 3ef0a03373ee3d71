"""The gRPC transport's contract and settings: names, carrier sizes, status mapping, TLS
credentials from PEM options, channel and server options, and cutting native bytes into
Envelopes. No I/O here; :mod:`.grpc` uses it.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import grpc

from ..config import Options
from ..sansio.envelope import frames_header
from ..sansio.framing import GoAwayCode
from .message_link import MessageLink

__all__ = ["CARRIER_LIMIT", "CARRIER_MAX", "CARRIER_START", "FRAMING_KEY", "LOST", "METHOD",
           "NATIVE", "NATIVE_METADATA", "OK", "OVERHEAD", "SERVICE", "TLS_OPTIONS",
           "carriers", "channel_options", "client_credentials", "describe_rpc_error",
           "framing_of", "parse_peer", "server_credentials", "server_options",
           "status_for_close"]

#: the gRPC service and the one method objtransport serves and calls
SERVICE = "objtransport.v1.Transport"
METHOD = f"/{SERVICE}/Connect"
#: the call metadata key that selects the native framing (value ``native``)
FRAMING_KEY = "objtransport-framing"
NATIVE = "native"
NATIVE_METADATA = ((FRAMING_KEY, NATIVE),)
#: the native-frame bytes a sender takes from its queue for one Envelope
CARRIER_MAX = MessageLink.carrier_max
#: the most native-frame bytes one Envelope carries: the queue hands out whole frames, so a
#: sender may go 1/16 above its budget (frame headers) before it splits
CARRIER_LIMIT = CARRIER_MAX + CARRIER_MAX // 16
#: the first Envelopes of a call are smaller and double up to CARRIER_MAX ("slow start"): a
#: connection that breaks every few KiB still delivers whole Envelopes, so resuming progresses
CARRIER_START = 16 * 1024
#: the Envelope's own bytes around its content (tag, length varint, text flag), rounded up
OVERHEAD = 64
#: the PEM material a gRPC connect/listen takes instead of an ``ssl.SSLContext``
TLS_OPTIONS = frozenset({"root_certificates", "certificate_chain", "private_key"})
#: metadata key of the bearer token (``connect(..., token=...)``)
AUTHORIZATION = "authorization"

OK = grpc.StatusCode.OK
#: session close codes -> the status a listener ends the call with
_STATUS = {
    GoAwayCode.NORMAL: OK,
    GoAwayCode.SHUTDOWN: grpc.StatusCode.UNAVAILABLE,
    GoAwayCode.PROTOCOL_ERROR: grpc.StatusCode.INVALID_ARGUMENT,
    GoAwayCode.UNSUPPORTED_VERSION: grpc.StatusCode.INVALID_ARGUMENT,
    GoAwayCode.FRAME_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    GoAwayCode.MESSAGE_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    GoAwayCode.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    GoAwayCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    GoAwayCode.HELLO_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    GoAwayCode.IDLE_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    -1: grpc.StatusCode.CANCELLED,
}
#: statuses that mean "the connection went away": reconnect (and feed the breaker)
LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                   grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED})


def status_for_close(code: int | None) -> grpc.StatusCode:
    """The gRPC status a listener ends a call with, for a session close code."""
    if code is None:
        return OK
    return _STATUS.get(code, OK)


def describe_rpc_error(code: grpc.StatusCode, details: str) -> str:
    """A short, specific reason for a call that failed while connecting."""
    low = details.lower()
    if "connection refused" in low:
        return "connection refused"
    if "certificate_verify_failed" in low:
        return f"TLS certificate verification failed: {details}"
    if "handshake failed" in low or "ssl_error" in low:
        return f"TLS handshake failed: {details}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timed out"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return (f"the server does not implement {METHOD} (not an objtransport gRPC "
                f"listener?): {details}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"refused by the listener (RESOURCE_EXHAUSTED): {details}"
    return f"{code.name}: {details}" if details else code.name


def framing_of(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == FRAMING_KEY:
            return str(value)
    return ""


def parse_peer(text: str) -> tuple[str, int] | str:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> ``(host, port)``."""
    kind, _, rest = unquote(text).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return text
    host, _, port = rest.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return text


def _pem(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"{name} must be PEM bytes or str, not {type(value).__name__}")


def _roots_from_context(ctx: ssl_module.SSLContext) -> bytes | None:
    """The CA certificates an ``ssl.SSLContext`` trusts, as PEM (None: the system roots)."""
    if ctx.verify_mode == ssl_module.CERT_NONE:
        raise ValueError("gRPC always verifies the server's certificate: an ssl_context "
                         "with verification off cannot be honoured (pass "
                         "root_certificates= with the CA to trust)")
    ders = ctx.get_ca_certs(binary_form=True)
    if not ders:
        return None
    return "".join(ssl_module.DER_cert_to_PEM_cert(d) for d in ders).encode()


def client_credentials(ssl_context: ssl_module.SSLContext | None,
                       extra: dict[str, Any]) -> grpc.ChannelCredentials | None:
    """TLS credentials for a client, or None for plaintext.

    TLS is on with ``ssl=True`` / ``ssl_context=`` or ``root_certificates=``. The server is
    always verified: against ``root_certificates`` (PEM), else the CAs loaded in
    ``ssl_context``, else the system roots. ``certificate_chain=`` + ``private_key=`` add a
    client certificate (mTLS).
    """
    roots = _pem(extra.get("root_certificates"), "root_certificates")
    chain = _pem(extra.get("certificate_chain"), "certificate_chain")
    key = _pem(extra.get("private_key"), "private_key")
    if ssl_context is None and roots is None:
        if chain is not None or key is not None:
            raise ValueError("a client certificate needs TLS: pass ssl=True (and "
                             "root_certificates=)")
        return None
    if roots is None and ssl_context is not None:
        roots = _roots_from_context(ssl_context)
    return grpc.ssl_channel_credentials(roots, key, chain)


def server_credentials(ssl_context: ssl_module.SSLContext | None,
                       extra: dict[str, Any]) -> grpc.ServerCredentials | None:
    """TLS credentials for a listener from ``certificate_chain=`` and ``private_key=`` (PEM);
    with ``root_certificates=`` too, clients must present a certificate it signed."""
    chain = _pem(extra.get("certificate_chain"), "certificate_chain")
    key = _pem(extra.get("private_key"), "private_key")
    roots = _pem(extra.get("root_certificates"), "root_certificates")
    if chain is None and key is None:
        if ssl_context is not None:
            raise ValueError("a gRPC listener cannot take an ssl.SSLContext (grpcio wants "
                             "PEM): pass certificate_chain= and private_key=")
        return None
    if chain is None or key is None:
        raise ValueError("certificate_chain= and private_key= go together")
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=roots,
                                       require_client_auth=roots is not None)


def _keepalive(options: Options) -> list[tuple[str, Any]]:
    return [("grpc.keepalive_time_ms", max(1000, int(options.keepalive_interval * 1000))),
            ("grpc.keepalive_timeout_ms", max(1000, int(options.pong_timeout * 1000))),
            ("grpc.http2.max_pings_without_data", 0)]


def channel_options(options: Options, native: bool,
                    server_hostname: str | None) -> list[tuple[str, Any]]:
    """A client channel's options: message limits from the frame/message limits, HTTP/2
    keepalive, a subchannel of its own."""
    limit = (max(CARRIER_LIMIT, options.max_frame_size) if native
             else options.max_message_size) + OVERHEAD
    opts: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
        ("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0),
        *_keepalive(options)]
    if server_hostname:
        opts += [("grpc.ssl_target_name_override", server_hostname),
                 ("grpc.default_authority", server_hostname)]
    return opts


def server_options(options: Options, reuse_port: bool = False) -> list[tuple[str, Any]]:
    limit = max(CARRIER_LIMIT, options.max_frame_size, options.max_message_size) + OVERHEAD
    return [("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            # a socket must finish TLS and send its HTTP/2 SETTINGS within
            # handshake_timeout (grpc's default is 120 s)
            ("grpc.server_handshake_timeout_ms", max(1, int(options.handshake_timeout * 1000))),
            *_keepalive(options)]


def carriers(chunks: Sequence[bytes | bytearray | memoryview], limit: int = CARRIER_LIMIT
             ) -> list[bytes]:
    """Serialized Envelopes holding ``chunks`` as native frames, at most ``limit`` frame
    bytes each (every byte copied once)."""
    total = sum(len(c) for c in chunks)
    if total <= limit:
        return [b"".join([frames_header(total), *chunks])]
    out: list[bytes] = []
    parts: list[bytes | bytearray | memoryview] = []
    room = limit
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            piece = view[:room]
            parts.append(piece)
            room -= len(piece)
            view = view[len(piece):]
            if not room:
                out.append(b"".join([frames_header(limit), *parts]))
                parts, room = [], limit
    if parts:
        out.append(b"".join([frames_header(limit - room), *parts]))
    return out
