"""Frame codec for the native and raw framings (docs/protocol.md is the normative text).

Encoding is a handful of ``struct`` calls. Decoding is incremental and lives in
:mod:`objtransport.sansio.decoder`; this module holds the constants and the small helpers both
sides share. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..exceptions import ProtocolError

__all__ = [
    "FLAG_FRAG",
    "FLAG_PACK",
    "FLAG_TEXT",
    "FRAG_EXT",
    "FRAME_HEADER",
    "PLAIN_DATA",
    "PLAIN_HEADER",
    "HEADER_SIZE",
    "HELLO_FORMAT",
    "FEATURE_WINDOW",
    "WINDOW_FORMAT",
    "MAGIC",
    "MAX_HELLO_LENGTH",
    "MAX_TOKEN",
    "TOKEN_LENGTH",
    "PREFIX_SIZE",
    "RAW_KEEPALIVE",
    "VERSION",
    "FrameType",
    "GoAwayCode",
    "Hello",
    "decode_goaway",
    "decode_hello",
    "encode_data",
    "encode_data_fragment_header",
    "encode_frame",
    "encode_goaway",
    "encode_hello",
    "encode_raw",
    "wire_flags",
]

MAGIC = b"OBJT"
VERSION = 1
PREFIX_SIZE = 4  # the u32 length
HEADER_SIZE = 16  # version, type, flags, priority, stream, seq (after the length)
#: length, version, type, flags, priority, stream, seq: 20 bytes in all
FRAME_HEADER = struct.Struct("!IBBBBIQ")
#: the same 20 bytes for the common frame, a DATA frame of normal priority on stream 0
#: without flags: length, ``PLAIN_DATA`` (version, type, flags, priority as one u32), 4 zero
#: bytes (stream 0), seq. Three arguments to pack instead of seven: 25-70 ns less a message
PLAIN_HEADER = struct.Struct("!II4xQ")
PLAIN_DATA = 0x01020002  # version 1, DATA (2), no flags, priority 2
#: fragment extension: offset, total
FRAG_EXT = struct.Struct("!II")
FRAG_HEADER = struct.Struct("!IBBBBIQII")
RAW_PREFIX = struct.Struct("!I")
HELLO_FORMAT = struct.Struct("!16sIIIQ")
GOAWAY_FORMAT = struct.Struct("!H")
TOKEN_LENGTH = struct.Struct("!H")
#: the longest token a HELLO may carry (UTF-8 bytes)
MAX_TOKEN = 4096
#: the largest frame ``length`` accepted before the peer's HELLO: a HELLO with the longest
#: token and room for extensions. A larger claim is refused before its body is read.
MAX_HELLO_LENGTH = 8192
MAX_GOAWAY_REASON = 256
RAW_KEEPALIVE = b"\x00"

FEATURE_ACKS = 0x01  # the sender acknowledges DATA
FEATURE_RESUME = 0x02  # the sender can resume this session after a reconnection
FEATURE_RESUMED = 0x04  # (listener's HELLO) this continues a session it kept
ACK_FORMAT = struct.Struct("!Q")

FLAG_FRAG = 0x01
FLAG_TEXT = 0x02
FLAG_META = 0x04  # the message starts with a meta block (sansio/headers.py)
FLAG_ZIP = 0x08  # the payload is compressed (sansio/headers.py)
KNOWN_FLAGS = FLAG_FRAG | FLAG_TEXT | FLAG_META | FLAG_ZIP
#: UDP only, on PING and PONG: the sender accepts packed datagrams (several frames in one)
FLAG_PACK = 0x10
FEATURE_META = 0x08  # the sender understands FLAG_META (headers, requests)
FEATURE_ZLIB = 0x10  # the sender decompresses zlib payloads
FEATURE_ZSTD = 0x20  # the sender decompresses zstd payloads
FEATURE_TOKEN = 0x40  # (client's HELLO) a token follows the fixed fields
FEATURE_SKIP = 0x80  # the sender understands SKIP frames (expired messages given up)
#: the HELLO carries the sender's window (its ``max_unacked_bytes``, u32) after the fixed
#: fields and any token: the peer may then acknowledge in larger steps (section 1.6)
FEATURE_WINDOW = 0x100
WINDOW_FORMAT = struct.Struct("!I")
#: SKIP payload: the number of the message given up (u64)
SKIP_FORMAT = struct.Struct("!Q")


class FrameType(enum.IntEnum):
    HELLO = 1
    DATA = 2
    ACK = 3
    PING = 4
    PONG = 5
    GOAWAY = 6
    SKIP = 7  # a message given up (its ttl passed): the receiver counts it as done


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    UNSUPPORTED_VERSION = 2
    FRAME_TOO_LARGE = 3
    MESSAGE_TOO_LARGE = 4
    HELLO_TIMEOUT = 5
    IDLE_TIMEOUT = 6
    SHUTDOWN = 7
    OVERLOADED = 8
    UNAUTHENTICATED = 9


@dataclass(frozen=True, slots=True)
class Hello:
    session_id: bytes
    features: int
    max_frame_size: int
    max_message_size: int
    resume_seq: int = 0
    #: the client's credentials (``connect(..., token=...)``), None without
    token: str | None = None
    #: the bytes the sender lets go unacknowledged before it waits (its
    #: ``max_unacked_bytes``, at most 2**32 - 1); 0: not announced
    window: int = 0


def wire_flags(text: bool | int) -> int:
    """A session's ``text`` argument as DATA flags: ``True`` is a text message; an ``int``
    (not a ``bool``) is the flags themselves (``FLAG_META``, ``FLAG_ZIP``, ``FLAG_TEXT``)."""
    if type(text) is int:
        return text & (FLAG_TEXT | FLAG_META | FLAG_ZIP)
    return FLAG_TEXT if text else 0


_pack_header = FRAME_HEADER.pack
_pack_frag = FRAG_HEADER.pack
_pack_raw = RAW_PREFIX.pack


def encode_frame(
    ftype: int, payload: bytes = b"", *, flags: int = 0, priority: int = 0,
    stream: int = 0, seq: int = 0,
) -> bytes:
    """Return one complete native frame (length prefix included) for a small payload."""
    return _pack_header(HEADER_SIZE + len(payload), VERSION, ftype, flags, priority,
                        stream, seq) + payload


def encode_data(payload: bytes, seq: int, stream: int, priority: int, flags: int = 0) -> bytes:
    """One unfragmented DATA frame; the payload is copied (use for small messages)."""
    return _pack_header(HEADER_SIZE + len(payload), VERSION, 2, flags, priority,
                        stream, seq) + payload


def encode_data_fragment_header(
    piece_len: int, seq: int, stream: int, priority: int, offset: int, total: int,
    flags: int = 0,
) -> bytes:
    """The 28-byte header of a DATA fragment; the caller sends the piece right after it."""
    return _pack_frag(HEADER_SIZE + FRAG_EXT.size + piece_len, VERSION, 2, flags | FLAG_FRAG,
                      priority, stream, seq, offset, total)


def encode_raw(payload: bytes) -> bytes:
    """One ``{packet, 4}`` frame: the 4-byte length, then the payload."""
    return _pack_raw(len(payload)) + payload


def encode_hello(hello: Hello) -> bytes:
    """The HELLO frame (without the magic, which precedes only the first one)."""
    if len(hello.session_id) != 16:
        raise ValueError("session_id must be 16 bytes")
    features = hello.features & ~(FEATURE_TOKEN | FEATURE_WINDOW)
    token = b""
    if hello.token is not None:
        raw = hello.token.encode("utf-8")
        if not raw or len(raw) > MAX_TOKEN:
            raise ValueError(f"a token is 1 to {MAX_TOKEN} bytes of UTF-8, not {len(raw)}")
        features |= FEATURE_TOKEN
        token = TOKEN_LENGTH.pack(len(raw)) + raw
    if hello.window > 0:
        features |= FEATURE_WINDOW
        token += WINDOW_FORMAT.pack(min(hello.window, 0xFFFFFFFF))
    body = HELLO_FORMAT.pack(hello.session_id, features, hello.max_frame_size,
                             hello.max_message_size, hello.resume_seq)
    return encode_frame(FrameType.HELLO, body + token)


def decode_hello(payload: bytes) -> Hello:
    """Parse a HELLO payload; extra trailing bytes are ignored (extensions)."""
    if len(payload) < HELLO_FORMAT.size:
        raise ProtocolError(
            f"HELLO payload of {len(payload)} bytes, expected at least {HELLO_FORMAT.size}",
            GoAwayCode.PROTOCOL_ERROR,
        )
    sid, features, max_frame, max_msg, resume = HELLO_FORMAT.unpack_from(payload)
    if max_frame < 64 or max_msg < 1:
        raise ProtocolError("HELLO announces unusable limits", GoAwayCode.PROTOCOL_ERROR)
    token, at = _decode_token(payload) if features & FEATURE_TOKEN else (None,
                                                                         HELLO_FORMAT.size)
    window = 0
    if features & FEATURE_WINDOW:
        if len(payload) < at + WINDOW_FORMAT.size:
            raise ProtocolError("HELLO announces a window but has none",
                                GoAwayCode.PROTOCOL_ERROR)
        (window,) = WINDOW_FORMAT.unpack_from(payload, at)
    return Hello(sid, features, max_frame, max_msg, resume, token, window)


def _decode_token(payload: bytes) -> tuple[str, int]:
    """The token after a HELLO's fixed fields, and where it ends: its length is checked
    against :data:`MAX_TOKEN` and what arrived before anything is copied."""
    at = HELLO_FORMAT.size
    if len(payload) < at + 2:
        raise ProtocolError("HELLO announces a token but has no token length",
                            GoAwayCode.PROTOCOL_ERROR)
    (size,) = TOKEN_LENGTH.unpack_from(payload, at)
    if size == 0 or size > MAX_TOKEN:
        raise ProtocolError(f"HELLO token of {size} bytes (1 to {MAX_TOKEN} allowed)",
                            GoAwayCode.PROTOCOL_ERROR)
    if len(payload) < at + 2 + size:
        raise ProtocolError(f"HELLO token of {size} bytes is cut short",
                            GoAwayCode.PROTOCOL_ERROR)
    try:
        return bytes(payload[at + 2:at + 2 + size]).decode("utf-8"), at + 2 + size
    except UnicodeDecodeError:
        raise ProtocolError("HELLO token is not UTF-8", GoAwayCode.PROTOCOL_ERROR) from None


def encode_goaway(code: int, reason: str) -> bytes:
    """A GOAWAY frame; the reason is cut to 256 bytes of UTF-8."""
    raw = reason.encode("utf-8", "replace")[:MAX_GOAWAY_REASON]
    return encode_frame(FrameType.GOAWAY, GOAWAY_FORMAT.pack(code) + raw)


def decode_goaway(payload: bytes) -> tuple[int, str]:
    """Return ``(code, reason)`` of a GOAWAY payload."""
    if len(payload) < 2:
        raise ProtocolError("GOAWAY payload shorter than 2 bytes", GoAwayCode.PROTOCOL_ERROR)
    (code,) = GOAWAY_FORMAT.unpack_from(payload)
    return code, bytes(payload[2:2 + MAX_GOAWAY_REASON]).decode("utf-8", "replace")
