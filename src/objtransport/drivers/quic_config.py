"""What the QUIC driver settles before any packet flows: ALPNs, TLS from PEM options,
session tickets for 0-RTT, close codes and connect-error wording.

Everything here uses aioquic's public API: :class:`~aioquic.quic.configuration.
QuicConfiguration` (its documented fields and ``load_verify_locations``) and the PEM loaders
of :mod:`aioquic.tls`.
"""

from __future__ import annotations

import ssl as ssl_module
from collections import OrderedDict
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import SessionTicket, load_pem_private_key, load_pem_x509_certificates

from ..config import Options
from ..sansio.framing import GoAwayCode

__all__ = ["ALPN_NATIVE", "ALPN_RAW", "DATAGRAM_FRAME_MAX", "TLS_OPTIONS", "TicketStore",
           "client_configuration", "describe_close", "server_configuration"]

#: the ALPN of the native framing (sessions, streams, ACKs) and of raw ``{packet, 4}``
ALPN_NATIVE = "objtransport/1"
ALPN_RAW = "objtransport-raw/1"
#: options a QUIC connect()/listen() takes beyond :class:`Options` (PEM, like gRPC), plus
#: ``max_datagram_size`` (bytes of UDP payload per QUIC packet; 1200 by default, at most
#: 16 KiB: on loopback or a known path, larger packets cut aioquic's per-packet cost)
TLS_OPTIONS = frozenset({"root_certificates", "certificate_chain", "private_key",
                         "max_datagram_size"})
#: the largest ``max_datagram_size`` allowed: aioquic 1.7 fails its own packets above it
#: (FRAME_ENCODING_ERROR at 32 KiB, tested)
MAX_DATAGRAM = 16_384
#: the largest DATAGRAM frame we accept (RFC 9221 ``max_datagram_frame_size``)
DATAGRAM_FRAME_MAX = 65_535
#: per-stream and per-connection flow-control windows (aioquic's defaults are 1 MiB)
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024


def _pem(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"{name} must be PEM bytes or str, not {type(value).__name__}")


def _datagram_size(extra: dict[str, Any]) -> int:
    size = extra.get("max_datagram_size", 1200)
    if not isinstance(size, int) or not 1200 <= size <= MAX_DATAGRAM:
        raise ValueError(f"max_datagram_size must be an int within 1200 .. {MAX_DATAGRAM}, "
                         f"not {size!r}")
    return size


def _roots_from_context(ctx: ssl_module.SSLContext) -> tuple[bytes | None, bool]:
    """The CAs an ``ssl.SSLContext`` trusts as PEM (None: the system roots), and whether it
    verifies at all (an explicit context with ``CERT_NONE`` is the caller's choice)."""
    if ctx.verify_mode == ssl_module.CERT_NONE:
        return None, False
    ders = ctx.get_ca_certs(binary_form=True)
    if not ders:
        return None, True
    return "".join(ssl_module.DER_cert_to_PEM_cert(d) for d in ders).encode(), True


def _base(options: Options, extra: dict[str, Any], is_client: bool,
          alpns: list[str]) -> QuicConfiguration:
    return QuicConfiguration(
        alpn_protocols=alpns, is_client=is_client,
        idle_timeout=options.keepalive_interval + options.pong_timeout,
        max_datagram_size=_datagram_size(extra),
        max_datagram_frame_size=DATAGRAM_FRAME_MAX,
        max_stream_data=STREAM_WINDOW, max_data=CONNECTION_WINDOW)


def client_configuration(options: Options, extra: dict[str, Any], native: bool,
                         server_name: str, ssl_context: ssl_module.SSLContext | None,
                         ticket: SessionTicket | None) -> QuicConfiguration:
    """A client's configuration: TLS 1.3 always, the server verified by default against
    ``root_certificates=`` (PEM), else the CAs of ``ssl_context``, else the system roots.
    Only an explicit ``ssl_context`` with ``verify_mode=CERT_NONE`` turns verification off.
    ``certificate_chain=`` + ``private_key=`` add a client certificate."""
    config = _base(options, extra, True, [ALPN_NATIVE if native else ALPN_RAW])
    config.server_name = server_name
    roots = _pem(extra.get("root_certificates"), "root_certificates")
    verify = True
    if roots is None and ssl_context is not None:
        roots, verify = _roots_from_context(ssl_context)
    config.verify_mode = ssl_module.CERT_REQUIRED if verify else ssl_module.CERT_NONE
    if roots is not None:
        config.load_verify_locations(cadata=roots)
    chain = _pem(extra.get("certificate_chain"), "certificate_chain")
    key = _pem(extra.get("private_key"), "private_key")
    if (chain is None) != (key is None):
        raise ValueError("certificate_chain= and private_key= go together")
    if chain is not None and key is not None:
        _load_identity(config, chain, key)
    config.session_ticket = ticket
    return config


def server_configuration(options: Options, extra: dict[str, Any]) -> QuicConfiguration:
    """A listener's configuration: both ALPNs offered (the client's decides), the identity
    from ``certificate_chain=`` + ``private_key=`` (PEM), required."""
    chain = _pem(extra.get("certificate_chain"), "certificate_chain")
    key = _pem(extra.get("private_key"), "private_key")
    if chain is None or key is None:
        raise ValueError("a QUIC listener needs certificate_chain= and private_key= (PEM): "
                         "QUIC is always TLS 1.3")
    config = _base(options, extra, False, [ALPN_NATIVE, ALPN_RAW])
    _load_identity(config, chain, key)
    roots = _pem(extra.get("root_certificates"), "root_certificates")
    if roots is not None:  # clients must present a certificate these CAs signed
        config.load_verify_locations(cadata=roots)
        config.verify_mode = ssl_module.CERT_REQUIRED
    return config


def _load_identity(config: QuicConfiguration, chain: bytes, key: bytes) -> None:
    certs = load_pem_x509_certificates(chain)
    if not certs:
        raise ValueError("certificate_chain= holds no PEM certificate")
    config.certificate = certs[0]
    config.certificate_chain = certs[1:]
    config.private_key = load_pem_private_key(key)


class TicketStore:
    """TLS session tickets by endpoint, for 0-RTT reconnects (bounded, oldest first out)."""

    def __init__(self, limit: int = 1024) -> None:
        self._tickets: OrderedDict[Any, SessionTicket] = OrderedDict()
        self._limit = limit

    def get(self, key: Any) -> SessionTicket | None:
        return self._tickets.get(key)

    def put(self, key: Any, ticket: SessionTicket) -> None:
        self._tickets[key] = ticket
        self._tickets.move_to_end(key)
        while len(self._tickets) > self._limit:
            self._tickets.popitem(last=False)

    def drop(self, key: Any) -> None:
        self._tickets.pop(key, None)


class ServerTickets:
    """A listener's issued tickets (aioquic's fetcher/handler pair), bounded."""

    def __init__(self, limit: int = 4096) -> None:
        self._tickets: OrderedDict[bytes, SessionTicket] = OrderedDict()
        self._limit = limit

    def add(self, ticket: SessionTicket) -> None:
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > self._limit:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> SessionTicket | None:
        return self._tickets.pop(label, None)  # single use: no replayed 0-RTT


#: application close codes at or above this are QUIC transport errors + this offset
_TRANSPORT = 0x10000
_TLS_ALERTS = {0x12a: "bad certificate", 0x130: "unknown CA", 0x12d: "certificate expired",
               0x128: "handshake failure", 0x178: "no application protocol",
               0x174: "certificate required"}


def describe_close(error_code: int, frame_type: int | None, reason: str) -> str:
    """A short reason for a QUIC CONNECTION_CLOSE (transport or TLS error)."""
    if 0x100 <= error_code <= 0x1ff:
        alert = _TLS_ALERTS.get(error_code, f"TLS alert {error_code - 0x100}")
        return f"TLS handshake failed: {alert}" + (f" ({reason})" if reason else "")
    try:
        name = QuicErrorCode(error_code).name
    except ValueError:
        name = f"error {error_code:#x}"
    return f"QUIC {name}" + (f": {reason}" if reason else "")


def close_code_to_goaway(error_code: int) -> int:
    """An application CONNECTION_CLOSE code as a GOAWAY code (unknown: PROTOCOL_ERROR)."""
    try:
        return int(GoAwayCode(error_code))
    except ValueError:
        return int(GoAwayCode.PROTOCOL_ERROR)


def demo_certificate(host: str = "127.0.0.1") -> tuple[bytes, bytes]:
    """A throw-away self-signed certificate for ``host`` and ``localhost`` (PEM chain, PEM
    key), valid one day: for demos and local tests, where the client passes the chain as
    ``root_certificates=`` (verification stays on)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "objtransport demo")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
