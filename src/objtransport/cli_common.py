"""What every ``objtransport`` subcommand shares: transport, framing and TLS options, value
parsers (``50ms``, ``1MB``, ``HOST:PORT``) and the one-line error.

A subcommand adds :func:`add_transport_options` to its parser and turns the parsed
arguments into a :class:`TransportArgs` with :meth:`TransportArgs.from_args`; the
``listen_kwargs()`` / ``connect_kwargs()`` of that object go straight to
``NetworkTransport.listen`` / ``connect``.
"""

from __future__ import annotations

import argparse
import re
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from .config import TransportKind

__all__ = [
    "CliError",
    "HelpFormatter",
    "Parser",
    "TransportArgs",
    "add_transport_options",
    "parse_duration",
    "parse_endpoint",
    "parse_port",
    "parse_size",
    "transport_choices",
]


class CliError(Exception):
    """A user error the command prints as one line (``objtransport: <message>``), exit 1."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions kept as written (plain text), and every option's default shown (flags
    are off unless given; options without a default say what they do when unset)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.nargs == 0 \
                or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``objtransport serve: error: ...``."""

    #: the sub-command parsers by name (the top-level parser's; empty for a command's own)
    commands: Mapping[str, argparse.ArgumentParser] = MappingProxyType({})

    @property
    def arguments(self) -> list[argparse.Action]:
        """Every argument and option it takes, in the order ``--help`` lists them."""
        return list(self._actions)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def transport_choices() -> list[str]:
    """Every transport name the command accepts: the library's kinds, plus ``tls``."""
    names = [k.value for k in TransportKind]
    names.insert(1, "tls")
    return names


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
          "gi": 1024**3, "gib": 1024**3}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$", re.IGNORECASE)
_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    """``"1MB"`` -> 1000000, ``"64KiB"`` -> 65536, ``"512"`` -> 512 (bytes)."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (examples: 512, 64KiB, 1MB, 2MiB)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def parse_duration(text: str) -> float:
    """``"50ms"`` -> 0.05, ``"10s"`` -> 10.0, ``"2"`` -> 2.0 (seconds)."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (examples: 50ms, 1.5s, 2m)")
    return float(m.group(1)) * _SECONDS[(m.group(2) or "").lower()]


def parse_port(text: str) -> int:
    """A TCP/UDP port, 0 (any free port) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"127.0.0.1:7000"`` or ``"[::1]:7000"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7000)")
    return host.strip("[]"), int(port)


def add_transport_options(parser: argparse.ArgumentParser, *, server: bool,
                          framing_default: str = "native") -> None:
    """``--transport --framing --tls --cert --key --ca --insecure`` on ``parser``."""
    g = parser.add_argument_group("transport")
    g.add_argument("--transport", "-t", choices=transport_choices(), default="tcp",
                   help="tcp, tls (TCP with TLS), udp, websocket, grpc or quic (always TLS)")
    framings = ["native", "raw", "auto"] if server else ["native", "raw"]
    g.add_argument("--framing", choices=framings, default=framing_default,
                   help="native (objtransport frames), raw ({packet, 4}: a 4-byte length, "
                        "then the message)" + ("; auto detects it per connection"
                                               if server else ""))
    g.add_argument("--tls", action="store_true",
                   help="TLS over websocket or grpc (implied by --transport tls)")
    g.add_argument("--cert", metavar="PEM", type=Path, default=None,
                   help="certificate chain (PEM): the listener's, or the client's for mutual "
                        "TLS")
    g.add_argument("--key", metavar="PEM", type=Path, default=None,
                   help="private key (PEM) of --cert")
    g.add_argument("--ca", metavar="PEM", type=Path, default=None,
                   help=("CA bundle (PEM): a listener then requires client certificates "
                         "it signed" if server else
                         "CA bundle (PEM) the server's certificate is checked against "
                         "(default: the system's CAs)"))
    if not server:
        g.add_argument("--insecure", action="store_true",
                       help="TLS without checking the server's certificate or name "
                            "(for testing only)")


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class TransportArgs:
    """The transport options of one command, checked; picklable (bench sends it to its
    worker processes)."""

    transport: str = "tcp"
    framing: str = "native"
    tls: bool = False
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    insecure: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TransportArgs:
        transport = "tcp" if args.transport == "tls" else args.transport
        tls = bool(args.tls or args.transport in ("tls", "quic"))  # QUIC is always TLS 1.3
        if tls and transport == "udp":
            raise CliError("TLS over UDP (DTLS) is not supported: drop --tls")
        if (args.cert is None) != (args.key is None):
            raise CliError("--cert and --key go together")
        out = cls(transport, args.framing, tls, args.cert, args.key, args.ca,
                  bool(getattr(args, "insecure", False)))
        if (out.cert or out.ca or out.insecure) and not tls:
            raise CliError("--cert/--key/--ca/--insecure need TLS: use --transport tls "
                           "(or --tls with websocket or grpc)")
        return out

    @property
    def label(self) -> str:
        """``"tcp"``, ``"tls"``, ``"websocket+tls"``..."""
        if self.tls and self.transport != "quic":
            return "tls" if self.transport == "tcp" else f"{self.transport}+tls"
        return self.transport

    def listen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``NetworkTransport.listen``."""
        kw: dict[str, Any] = {"transport": self.transport, "framing": self.framing}
        if not self.tls:
            return kw
        if self.cert is None or self.key is None:
            raise CliError("a TLS listener needs --cert and --key")
        if self.transport in ("grpc", "quic"):  # PEM bytes, not an SSLContext
            kw["certificate_chain"] = _read(self.cert, "--cert")
            kw["private_key"] = _read(self.key, "--key")
            if self.ca is not None:
                kw["root_certificates"] = _read(self.ca, "--ca")
            return kw
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.ca is not None:
                ctx.load_verify_locations(self.ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load the TLS certificate: {exc}") from None
        kw["ssl_context"] = ctx
        return kw

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``NetworkTransport.connect``."""
        kw: dict[str, Any] = {"transport": self.transport, "framing": self.framing}
        if not self.tls:
            return kw
        if self.transport == "grpc":
            if self.insecure:
                raise CliError("grpc cannot skip the certificate check: pass --ca instead "
                               "of --insecure")
            kw["ssl"] = True
            if self.ca is not None:
                kw["root_certificates"] = _read(self.ca, "--ca")
            if self.cert is not None:
                kw["certificate_chain"] = _read(self.cert, "--cert")
                kw["private_key"] = _read(self.key, "--key")
            return kw
        if self.transport == "quic":
            if self.ca is not None:
                kw["root_certificates"] = _read(self.ca, "--ca")
            if self.cert is not None:
                kw["certificate_chain"] = _read(self.cert, "--cert")
                kw["private_key"] = _read(self.key, "--key")
            if self.insecure:  # an explicit CERT_NONE context turns verification off
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                kw["ssl_context"] = ctx
            return kw
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if self.ca is not None:
                ctx.load_verify_locations(self.ca)
            if self.cert is not None and self.key is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load TLS material: {exc}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        kw["ssl_context"] = ctx
        return kw


def stderr_line(message: str) -> None:
    """Print ``objtransport: <message>`` on stderr."""
    print(f"objtransport: {message}", file=sys.stderr, flush=True)
