"""The gRPC carrier message ``objtransport.v1.Envelope``, encoded and decoded by hand.

``proto/objtransport/v1/transport.proto`` defines it::

    message Envelope {
      bytes payload = 1;  // raw mode: one application message
      bytes frames = 2;   // native mode: a piece of the native byte stream
      bool text = 3;      // raw mode: the payload is UTF-8 text
    }

The protobuf wire format of these three fields is a tag byte, a varint length (or value) and
the bytes, so writing it here costs one join and needs neither protoc nor the protobuf
runtime on the hot path. The decoder follows the protobuf rules a generated class follows:
fields in any order, the last occurrence wins, unknown fields (any wire type but groups) are
skipped; anything malformed raises :class:`~objtransport.exceptions.ProtocolError`.
``tests/test_grpc.py`` checks both directions against classes generated from the .proto.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import ProtocolError
from .framing import GoAwayCode

__all__ = ["decode_envelope", "encode_frames", "encode_payload", "frames_header"]

_PAYLOAD = 0x0A  # field 1, wire type 2 (length-delimited)
_FRAMES = 0x12  # field 2, wire type 2
_TEXT = 0x18  # field 3, wire type 0 (varint)
_TEXT_TRUE = b"\x18\x01"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frames_header(size: int) -> bytes:
    """The tag and length that precede ``size`` bytes of native frames."""
    return bytes((_FRAMES,)) + _varint(size)


def encode_frames(chunks: Sequence[bytes | bytearray | memoryview]) -> bytes:
    """An Envelope whose ``frames`` field holds the chunks, concatenated (one copy); empty
    frames are omitted, as protobuf omits default values."""
    size = sum(len(c) for c in chunks)
    if not size:
        return b""
    return b"".join([frames_header(size), *chunks])


#: the tag and one-byte length of a payload under 128 bytes, by size
_SMALL_PAYLOAD = [bytes((_PAYLOAD, n)) for n in range(0x80)]


def encode_payload(data: bytes | bytearray | memoryview, text: bool = False) -> bytes:
    """An Envelope holding one application message (raw mode). An empty payload is omitted,
    as protobuf omits default values."""
    size = len(data)
    if 0 < size < 0x80 and not text:
        return _SMALL_PAYLOAD[size] + data
    parts: list[bytes | bytearray | memoryview] = []
    if size:
        parts = [bytes((_PAYLOAD,)) + _varint(size), data]
    if text:
        parts.append(_TEXT_TRUE)
    return b"".join(parts)


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    raise ProtocolError("malformed Envelope: bad varint", GoAwayCode.PROTOCOL_ERROR)


def decode_envelope(data: bytes) -> tuple[memoryview | bytes, memoryview | bytes, bool]:
    """``(payload, frames, text)`` of one serialized Envelope; absent fields are empty.

    ``frames`` is a view into ``data`` (no copy), ``payload`` a view or a copy: call
    ``bytes()`` on either to keep it (no copy when it is one already).
    """
    end = len(data)
    if end > 1 and (data[0] == _PAYLOAD or data[0] == _FRAMES):
        # the common Envelope: one bytes field with a length of one or two bytes
        n = data[1]
        pos = 2
        if n >= 0x80:
            if end > 2 and data[2] < 0x80:
                n = (n & 0x7F) | (data[2] << 7)
                pos = 3
            else:
                pos = 0  # a longer length: the general path below
        if pos and pos + n == end:
            if data[0] == _PAYLOAD:
                return data[pos:], b"", False
            return b"", memoryview(data)[pos:], False
    view = memoryview(data)
    payload: memoryview | bytes = b""
    frames: memoryview | bytes = b""
    text = False
    pos = 0
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos, end)
        wire = key & 7
        if wire == 2:
            n, pos = _read_varint(data, pos, end)
            stop = pos + n
            if stop > end:
                raise ProtocolError(f"malformed Envelope: field of {n} bytes runs past the "
                                    f"end ({end - pos} left)", GoAwayCode.PROTOCOL_ERROR)
            if key == _FRAMES:
                frames = view[pos:stop]
            elif key == _PAYLOAD:
                payload = view[pos:stop]
            pos = stop
        elif wire == 0:
            value, pos = _read_varint(data, pos, end)
            if key == _TEXT:
                text = value != 0
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtocolError(f"malformed Envelope: wire type {wire}",
                                GoAwayCode.PROTOCOL_ERROR)
        if key >> 3 == 0:
            raise ProtocolError("malformed Envelope: field number 0",
                                GoAwayCode.PROTOCOL_ERROR)
    if pos > end:
        raise ProtocolError("malformed Envelope: truncated field", GoAwayCode.PROTOCOL_ERROR)
    return payload, frames, text
