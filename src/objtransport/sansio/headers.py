"""The meta block of a DATA message: headers, request/reply correlation, expiry, and the
compressed form of a payload (docs/protocol.md section 1.9).

A DATA frame whose flags have ``META`` (bit 2) starts its message with::

    meta_length (u16)   bytes of the entries that follow
    entries             each: tag (u8), length (u16), value

=====  ==========  ============================================================
tag    name        value
=====  ==========  ============================================================
1      HEADER      key length (u8), key (UTF-8, lower case), value (bytes)
2      REQUEST     request id (u64), deadline (u64, Unix time in ms; 0: none)
3      REPLY       request id (u64), status (u8; see :class:`ReplyStatus`)
4      EXPIRES     Unix time in ms (u64) after which the message is worthless
=====  ==========  ============================================================

Unknown tags are skipped. With ``ZIP`` (bit 3) the application payload (after the meta block,
if any) is ``codec (u8), original size (u32), compressed bytes``; the original size is
checked against ``max_message_size`` before anything is decompressed, and decompression
stops at that size (a zip bomb costs nothing). Everything here is checked before it is
allocated: the number of entries and their total size against the receiver's limits.
Pure: no I/O, no clock (deadlines are numbers the caller compares with its clock).
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..exceptions import ProtocolError
from .events import Message, Received
from .framing import FLAG_META, FLAG_ZIP, GoAwayCode

__all__ = [
    "CODEC_ZLIB",
    "CODEC_ZSTD",
    "FLAG_META",
    "FLAG_ZIP",
    "EXT_FLAGS",
    "HeaderValue",
    "Meta",
    "MetaLimits",
    "meta_limits",
    "ReplyStatus",
    "available_codecs",
    "compress",
    "decode_meta",
    "decompress",
    "encode_meta",
    "plain_payload",
    "unwrap",
]

EXT_FLAGS = FLAG_META | FLAG_ZIP

TAG_HEADER = 1
TAG_REQUEST = 2
TAG_REPLY = 3
TAG_EXPIRES = 4

CODEC_ZLIB = 1
CODEC_ZSTD = 2
CODEC_NAMES = {"zlib": CODEC_ZLIB, "zstd": CODEC_ZSTD}

#: the longest error text a reply carries (never a traceback)
MAX_ERROR_TEXT = 256

_U16 = struct.Struct("!H")
_ENTRY = struct.Struct("!BH")
_REQUEST = struct.Struct("!QQ")
_REPLY = struct.Struct("!QB")
_U64 = struct.Struct("!Q")
_ZIP_HEAD = struct.Struct("!BI")
#: the whole block of the two common cases, packed at once: a request or a reply alone
_ONLY_REQUEST = struct.Struct("!HBHQQ")
_ONLY_REPLY = struct.Struct("!HBHQB")

HeaderValue = str | bytes


class ReplyStatus(enum.IntEnum):
    OK = 0
    NO_RESPONDER = 1  # no handler replies on that connection
    HANDLER_ERROR = 2  # the handler raised: the payload is a short text, no traceback
    EXPIRED = 3  # the deadline had passed when the request arrived


@dataclass(frozen=True, slots=True)
class MetaLimits:
    """What a receiver accepts in one meta block."""

    max_headers: int = 64
    max_header_bytes: int = 8192
    max_message_size: int = 64 * 1024 * 1024


@lru_cache(maxsize=16)
def meta_limits(max_headers: int, max_header_bytes: int, max_message_size: int) -> MetaLimits:
    """The (frozen) limits for these figures, one shared instance per set of options rather
    than one per session (an object fewer per connection for the garbage collector)."""
    return MetaLimits(max_headers, max_header_bytes, max_message_size)


@dataclass(slots=True)
class Meta:
    """A decoded meta block."""

    headers: dict[str, bytes] | None = None
    request_id: int = 0
    deadline_ms: int = 0
    reply_to: int = 0
    status: int = 0
    expires_ms: int = 0


def encode_meta(headers: Mapping[str, HeaderValue] | None = None, *, request_id: int = 0,
                deadline_ms: int = 0, reply_to: int = 0, status: int = 0,
                expires_ms: int = 0, limits: MetaLimits | None = None) -> bytes:
    """The meta block (its u16 length first). Raises ``ValueError`` for headers beyond
    ``limits`` (the peer would refuse them) or a key that is not 1..255 bytes of UTF-8."""
    if not headers and not expires_ms:  # the common blocks, in one pack
        if request_id and not reply_to:
            return _ONLY_REQUEST.pack(19, TAG_REQUEST, 16, request_id, deadline_ms)
        if reply_to and not request_id:
            return _ONLY_REPLY.pack(12, TAG_REPLY, 9, reply_to, status)
    parts: list[bytes] = []
    if request_id:
        parts.append(_ENTRY.pack(TAG_REQUEST, 16) + _REQUEST.pack(request_id, deadline_ms))
    if reply_to:
        parts.append(_ENTRY.pack(TAG_REPLY, 9) + _REPLY.pack(reply_to, status))
    if expires_ms:
        parts.append(_ENTRY.pack(TAG_EXPIRES, 8) + _U64.pack(expires_ms))
    if headers:
        lim = limits or MetaLimits()
        if len(headers) > lim.max_headers:
            raise ValueError(f"{len(headers)} headers, at most {lim.max_headers} allowed")
        size = 0
        for key, value in headers.items():
            k = key.lower().encode("utf-8")
            v = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            if not 1 <= len(k) <= 255:
                raise ValueError(f"header key {key!r}: 1 to 255 bytes of UTF-8")
            size += len(k) + len(v)
            if size > lim.max_header_bytes:
                raise ValueError(f"headers of more than {lim.max_header_bytes} bytes")
            parts.append(_ENTRY.pack(TAG_HEADER, 1 + len(k) + len(v)) + bytes((len(k),))
                         + k + v)
    body = b"".join(parts)
    if len(body) > 0xFFFF:
        raise ValueError("meta block above 65,535 bytes")
    return _U16.pack(len(body)) + body


def _bad(what: str) -> ProtocolError:
    return ProtocolError(f"bad meta block: {what}", GoAwayCode.PROTOCOL_ERROR)


def decode_meta(data: bytes, limits: MetaLimits) -> tuple[Meta, int]:
    """The meta block at the start of ``data`` and the offset of the payload after it.
    Raises :class:`ProtocolError` for a malformed block or headers beyond ``limits``
    (counted and summed before any header is copied)."""
    n = len(data)
    if n >= 21 and data[0] == 0 and data[1] == 19 and data[2] == TAG_REQUEST:
        _, _, length, rid, deadline = _ONLY_REQUEST.unpack_from(data)
        if length == 16:
            return Meta(request_id=rid, deadline_ms=deadline), 21
    elif n >= 14 and data[0] == 0 and data[1] == 12 and data[2] == TAG_REPLY:
        _, _, length, rid, status = _ONLY_REPLY.unpack_from(data)
        if length == 9:
            return Meta(reply_to=rid, status=status), 14
    if n < 2:
        raise _bad("shorter than its length field")
    (size,) = _U16.unpack_from(data)
    end = 2 + size
    if end > len(data):
        raise _bad(f"{size} bytes declared, {len(data) - 2} present")
    meta = Meta()
    spans: list[tuple[int, int]] = []
    off = 2
    header_bytes = 0
    while off < end:
        if end - off < 3:
            raise _bad("truncated entry")
        tag, n = _ENTRY.unpack_from(data, off)
        off += 3
        stop = off + n
        if stop > end:
            raise _bad("entry runs past the block")
        if tag == TAG_HEADER:
            if n < 1 or data[off] < 1 or 1 + data[off] > n:
                raise _bad("header entry")
            spans.append((off, stop))
            header_bytes += n - 1
            if len(spans) > limits.max_headers or header_bytes > limits.max_header_bytes:
                raise ProtocolError(
                    f"headers beyond the limits ({limits.max_headers} entries, "
                    f"{limits.max_header_bytes} bytes)", GoAwayCode.MESSAGE_TOO_LARGE)
        elif tag == TAG_REQUEST and n >= 16:
            meta.request_id, meta.deadline_ms = _REQUEST.unpack_from(data, off)
        elif tag == TAG_REPLY and n >= 9:
            meta.reply_to, meta.status = _REPLY.unpack_from(data, off)
        elif tag == TAG_EXPIRES and n >= 8:
            (meta.expires_ms,) = _U64.unpack_from(data, off)
        elif tag in (TAG_REQUEST, TAG_REPLY, TAG_EXPIRES):
            raise _bad(f"entry {tag} of {n} bytes")
        off = stop
    if spans:
        headers: dict[str, bytes] = {}
        for start, stop in spans:
            klen = data[start]
            try:
                key = bytes(data[start + 1:start + 1 + klen]).decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("header key is not UTF-8") from None
            headers[key] = bytes(data[start + 1 + klen:stop])
        meta.headers = headers
    return meta, end


# -- compression -----------------------------------------------------------------------------
def available_codecs() -> int:
    """The codecs this installation can decompress, as a bit set (``1 << codec``)."""
    bits = 1 << CODEC_ZLIB
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return bits
    return bits | 1 << CODEC_ZSTD


def compress(data: bytes | bytearray | memoryview, codec: int) -> bytes:
    """``codec (u8), original size (u32), compressed bytes``."""
    head = _ZIP_HEAD.pack(codec, len(data))
    if codec == CODEC_ZSTD:
        import zstandard

        return head + zstandard.ZstdCompressor(level=3).compress(bytes(data))
    return head + zlib.compress(data, 1)


def decompress(data: bytes | memoryview, max_size: int) -> bytes:
    """Undo :func:`compress`. The declared size is checked against ``max_size`` first and
    no more than it is ever produced: a payload that expands beyond what it declared is a
    :class:`ProtocolError`, found after at most the declared size of output."""
    if len(data) < _ZIP_HEAD.size:
        raise _bad("compressed payload without its header")
    codec, size = _ZIP_HEAD.unpack_from(data)
    if size > max_size:
        raise ProtocolError(f"compressed message declares {size} bytes, above "
                            f"max_message_size ({max_size})", GoAwayCode.MESSAGE_TOO_LARGE)
    body = memoryview(data)[_ZIP_HEAD.size:]
    if codec == CODEC_ZLIB:
        d = zlib.decompressobj()
        try:
            out = d.decompress(body, size + 1)
        except zlib.error as exc:
            raise _bad(f"zlib: {exc}") from None
        if len(out) != size or d.unconsumed_tail or not d.eof:
            raise ProtocolError(f"compressed message does not expand to the {size} bytes "
                                "it declares", GoAwayCode.MESSAGE_TOO_LARGE)
        return out
    if codec == CODEC_ZSTD:
        return _zstd_decompress(body, size)
    raise _bad(f"unknown compression codec {codec}")


def _zstd_decompress(body: memoryview, size: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise _bad("zstd payload, but zstandard is not installed") from None
    try:
        # read() stops at size + 1 bytes of output, whatever the frame claims or holds
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            out = reader.read(size + 1)
    except zstandard.ZstdError as exc:
        raise _bad(f"zstd: {exc}") from None
    if len(out) != size:
        raise ProtocolError(f"compressed message does not expand to the {size} bytes it "
                            "declares", GoAwayCode.MESSAGE_TOO_LARGE)
    return bytes(out)


# -- receiving ---------------------------------------------------------------------------------
def unwrap(msgs: list[Received], limits: MetaLimits, responder: Any,
           replies: list[tuple[int, int, bytes, dict[str, bytes] | None]],
           out: list[Received] | None = None) -> list[Received]:
    """Decode the meta block and compressed payload of each flagged message in ``msgs``.

    Requests get their id, deadline and ``responder``; replies are taken out of the list
    and appended to ``replies`` as ``(request_id, status, payload, headers)``. Raises
    :class:`ProtocolError` for anything malformed or beyond ``limits``; the messages before
    it are then in ``out`` (when the caller passed one) or ``replies``.
    """
    out = [] if out is None else out
    for m in msgs:
        if type(m) is bytes:
            out.append(m)
            continue
        assert isinstance(m, Message)
        if not m.flags & EXT_FLAGS:
            out.append(m)
            continue
        data = m.data
        meta: Meta | None = None
        if m.flags & FLAG_META:
            meta, off = decode_meta(data, limits)
            data = data[off:]
        if m.flags & FLAG_ZIP:
            data = decompress(data, limits.max_message_size)
        m.data = bytes(data)
        if meta is not None:
            if meta.reply_to:
                replies.append((meta.reply_to, meta.status, m.data, meta.headers))
                continue
            m.headers = meta.headers
            m.request_id = meta.request_id
            m.deadline = meta.deadline_ms / 1000.0
            m.expires = meta.expires_ms / 1000.0
            if meta.request_id:
                m.responder = responder
        out.append(m)
    return out


def plain_payload(data: bytes, text: bool | int, max_size: int) -> bytes:
    """The application payload of an unconfirmed message: without its meta block, and
    decompressed (``text`` is an ``int`` of wire flags for such a message)."""
    if type(text) is not int or not text & EXT_FLAGS:
        return data
    if text & FLAG_META:
        _, off = decode_meta(data, MetaLimits(4096, 60_000, max_size))
        data = data[off:]
    if text & FLAG_ZIP:
        data = decompress(data, max_size)
    return data
