"""Erlang External Term Format: terms exchanged with an Elixir or Erlang node over raw
``{packet, 4}`` framing (what ``:erlang.term_to_binary/1`` and ``binary_to_term/1`` use).

::

    from objtransport import etf

    conn = await net.connect("10.0.0.5", 4000, framing="raw")     # a gen_tcp {packet, 4} peer
    await net.send_data(conn, etf.encode((etf.Atom("event"), {"id": 7, "ok": True})))
    reply = etf.decode((await net.receive(conn, timeout=5.0)).data)   # binary_to_term

Python to Erlang: ``int`` -> integer (small, 32-bit or big), ``float`` -> float, ``bytes`` and
``str`` -> binary (an Elixir string is a UTF-8 binary), :class:`Atom` -> atom, ``True`` /
``False`` -> ``true`` / ``false``, ``None`` -> ``nil``, ``tuple`` -> tuple, ``list`` -> list,
``dict`` -> map. Erlang to Python: the same back, binaries as ``bytes``, atoms as
:class:`Atom` (except ``true``, ``false``, ``nil``), a ``STRING_EXT`` (a list of small
integers, an Erlang string) as ``list[int]``, and an improper list's tail is refused.

Decoding never trusts a length: each is checked against the bytes left before anything is
allocated, and nesting is bounded (``max_depth``). Anything malformed or unsupported (pids,
references, funs, ports, compressed terms) raises :class:`ValueError`. Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["Atom", "decode", "encode"]

VERSION = 131
_F64 = struct.Struct(">d")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")

SMALL_INTEGER, INTEGER, FLOAT, NEW_FLOAT = 97, 98, 99, 70
ATOM, SMALL_ATOM, ATOM_UTF8, SMALL_ATOM_UTF8 = 100, 115, 118, 119
SMALL_TUPLE, LARGE_TUPLE, NIL, STRING, LIST, BINARY, MAP = 104, 105, 106, 107, 108, 109, 116
SMALL_BIG, LARGE_BIG = 110, 111


class Atom(str):
    """An Erlang atom (``:ok`` in Elixir is ``Atom("ok")``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


_SPECIAL = {"true": True, "false": False, "nil": None}


# -- encoding ----------------------------------------------------------------------------------
def encode(term: Any) -> bytes:
    """``:erlang.term_to_binary(term)`` (uncompressed)."""
    out = bytearray((VERSION,))
    _encode(term, out, 0)
    return bytes(out)


def _atom(name: str, out: bytearray) -> None:
    raw = name.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"atom of {len(raw)} bytes (at most 255)")
    out += bytes((SMALL_ATOM_UTF8, len(raw)))
    out += raw


def _encode(term: Any, out: bytearray, depth: int) -> None:
    if depth > 100:
        raise ValueError("term nested more than 100 deep")
    if term is True or term is False or term is None:
        _atom("true" if term is True else "false" if term is False else "nil", out)
    elif isinstance(term, Atom):
        _atom(term, out)
    elif isinstance(term, int):
        _integer(term, out)
    elif isinstance(term, float):
        out.append(NEW_FLOAT)
        out += _F64.pack(term)
    elif isinstance(term, (bytes, bytearray, memoryview, str)):
        raw = term.encode("utf-8") if isinstance(term, str) else bytes(term)
        out.append(BINARY)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(term, tuple):
        n = len(term)
        out += bytes((SMALL_TUPLE, n)) if n < 256 else bytes((LARGE_TUPLE,)) + _U32.pack(n)
        for item in term:
            _encode(item, out, depth + 1)
    elif isinstance(term, list):
        if not term:
            out.append(NIL)
            return
        out.append(LIST)
        out += _U32.pack(len(term))
        for item in term:
            _encode(item, out, depth + 1)
        out.append(NIL)
    elif isinstance(term, dict):
        out.append(MAP)
        out += _U32.pack(len(term))
        for key, value in term.items():
            _encode(key, out, depth + 1)
            _encode(value, out, depth + 1)
    else:
        raise ValueError(f"no Erlang term for {type(term).__name__}")


def _integer(n: int, out: bytearray) -> None:
    if 0 <= n < 256:
        out += bytes((SMALL_INTEGER, n))
    elif -(1 << 31) <= n < 1 << 31:
        out.append(INTEGER)
        out += _I32.pack(n)
    else:
        mag = abs(n)
        digits = mag.to_bytes((mag.bit_length() + 7) // 8, "little")
        if len(digits) < 256:
            out += bytes((SMALL_BIG, len(digits), n < 0))
        else:
            out.append(LARGE_BIG)
            out += _U32.pack(len(digits))
            out.append(n < 0)
        out += digits


# -- decoding ----------------------------------------------------------------------------------
def decode(data: bytes | bytearray | memoryview, *, max_depth: int = 100) -> Any:
    """``:erlang.binary_to_term(data)``; the whole input must be one term."""
    buf = bytes(data)
    if not buf or buf[0] != VERSION:
        raise ValueError("not External Term Format (no version byte 131)")
    term, off = _Decoder(buf, max_depth).term(1, 0)
    if off != len(buf):
        raise ValueError(f"{len(buf) - off} bytes after the term")
    return term


class _Decoder:
    def __init__(self, buf: bytes, max_depth: int) -> None:
        self.buf = buf
        self.max_depth = max_depth

    def need(self, off: int, n: int) -> None:
        if n < 0 or off + n > len(self.buf):
            raise ValueError(f"truncated term: {n} bytes needed at {off}, "
                             f"{len(self.buf) - off} left")

    def term(self, off: int, depth: int) -> tuple[Any, int]:
        if depth > self.max_depth:
            raise ValueError(f"term nested more than {self.max_depth} deep")
        self.need(off, 1)
        tag = self.buf[off]
        off += 1
        handler = _DECODERS.get(tag)
        if handler is None:
            raise ValueError(f"unsupported term tag {tag}")
        result: tuple[Any, int] = handler(self, off, depth)
        return result

    def fixed(self, off: int, st: struct.Struct) -> tuple[Any, int]:
        self.need(off, st.size)
        return st.unpack_from(self.buf, off)[0], off + st.size

    def raw(self, off: int, n: int) -> tuple[bytes, int]:
        self.need(off, n)
        return self.buf[off:off + n], off + n

    def items(self, off: int, n: int, depth: int) -> tuple[list[Any], int]:
        self.need(off, n)  # every element takes at least one byte: checked before the list
        out = []
        for _ in range(n):
            item, off = self.term(off, depth + 1)
            out.append(item)
        return out, off


def _small_int(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    d.need(off, 1)
    return d.buf[off], off + 1


def _int(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    return d.fixed(off, _I32)


def _new_float(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    return d.fixed(off, _F64)


def _old_float(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    raw, off = d.raw(off, 31)
    return float(raw.split(b"\0", 1)[0]), off


def _atom_of(raw: bytes, latin1: bool) -> Any:
    name = raw.decode("latin-1" if latin1 else "utf-8")
    return _SPECIAL[name] if name in _SPECIAL else Atom(name)


def _atom_u16(d: _Decoder, off: int, depth: int, latin1: bool) -> tuple[Any, int]:
    n, off = d.fixed(off, _U16)
    raw, off = d.raw(off, n)
    return _atom_of(raw, latin1), off


def _atom_u8(d: _Decoder, off: int, depth: int, latin1: bool) -> tuple[Any, int]:
    d.need(off, 1)
    raw, off = d.raw(off + 1, d.buf[off])
    return _atom_of(raw, latin1), off


def _small_tuple(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    d.need(off, 1)
    items, off = d.items(off + 1, d.buf[off], depth)
    return tuple(items), off


def _large_tuple(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U32)
    items, off = d.items(off, n, depth)
    return tuple(items), off


def _string(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U16)
    raw, off = d.raw(off, n)
    return list(raw), off


def _list(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U32)
    items, off = d.items(off, n, depth)
    d.need(off, 1)
    if d.buf[off] != NIL:
        raise ValueError("improper list (its tail is not [])")
    return items, off + 1


def _binary(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U32)
    return d.raw(off, n)


def _big(d: _Decoder, off: int, n: int) -> tuple[Any, int]:
    d.need(off, 1 + n)
    sign = d.buf[off]
    value = int.from_bytes(d.buf[off + 1:off + 1 + n], "little")
    return (-value if sign else value), off + 1 + n


def _small_big(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    d.need(off, 1)
    return _big(d, off + 1, d.buf[off])


def _large_big(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U32)
    return _big(d, off, n)


def _map(d: _Decoder, off: int, depth: int) -> tuple[Any, int]:
    n, off = d.fixed(off, _U32)
    d.need(off, 2 * n)
    out: dict[Any, Any] = {}
    for _ in range(n):
        key, off = d.term(off, depth + 1)
        value, off = d.term(off, depth + 1)
        if isinstance(key, list):
            key = tuple(key)  # a list key has no hashable Python twin: its tuple
        out[key] = value
    return out, off


_DECODERS: dict[int, Any] = {
    SMALL_INTEGER: _small_int, INTEGER: _int, NEW_FLOAT: _new_float, FLOAT: _old_float,
    ATOM: lambda d, o, x: _atom_u16(d, o, x, True),
    ATOM_UTF8: lambda d, o, x: _atom_u16(d, o, x, False),
    SMALL_ATOM: lambda d, o, x: _atom_u8(d, o, x, True),
    SMALL_ATOM_UTF8: lambda d, o, x: _atom_u8(d, o, x, False),
    SMALL_TUPLE: _small_tuple, LARGE_TUPLE: _large_tuple, NIL: lambda d, o, x: ([], o),
    STRING: _string, LIST: _list, BINARY: _binary, SMALL_BIG: _small_big,
    LARGE_BIG: _large_big, MAP: _map,
}
