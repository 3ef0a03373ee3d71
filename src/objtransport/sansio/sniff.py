"""Who is on the other end, from the first bytes it sent: a peer speaking another protocol
is named at once, with what to pass to talk to it (docs/protocol.md section 3.1).

:func:`wrong_peer` is a pure function of the first bytes received on a connection (4 are
enough). It knows the openings of the protocols a peer is most likely to speak by mistake:

===========================  ====================================  =========================
first bytes                  the peer speaks                       the fix
===========================  ====================================  =========================
``16 03 0x`` (or 14/15/17)   TLS (a ClientHello, a record, alert)  ``ssl=True`` / ``ssl_context``
``OBJT``                     objtransport native framing           ``framing="native"``
``GET ``, ``HTTP/`` ...      HTTP/1 (a WebSocket handshake)        ``transport="websocket"``
``PRI *`` / a SETTINGS frame HTTP/2 (gRPC)                         ``transport="grpc"``
===========================  ====================================  =========================

A session calls it only where the bytes are already wrong for its own framing (a native
session that did not get the magic, a raw session that got a length no message may have), so
a valid peer never pays for it.
"""

from __future__ import annotations

from .framing import MAGIC

__all__ = ["HTTP2_PREFACE", "WEBSOCKET_LISTENER", "not_websocket", "wrong_peer"]

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: TLS record content types: change_cipher_spec, alert, handshake, application_data
_TLS_TYPES = frozenset((0x14, 0x15, 0x16, 0x17))
_HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"OPTI", b"DELE", b"PATC", b"CONN")

TLS = 'peer speaks TLS: connect with ssl=True / listen with ssl_context'
NATIVE = ('peer speaks objtransport native framing: use framing="native" '
          '(or "auto" on a listener)')
HTTP = 'peer speaks HTTP/WebSocket: use transport="websocket"'
HTTP2 = 'peer speaks gRPC/HTTP/2: use transport="grpc"'


def wrong_peer(head: bytes | bytearray | memoryview) -> str | None:
    """What the peer speaks and what to pass, if ``head`` (the first bytes it sent, at
    least 4) is the opening of a protocol we know; None otherwise."""
    head = bytes(head[:16])
    if len(head) < 4:
        return None
    if head[:4] == MAGIC:
        return NATIVE
    if head[0] in _TLS_TYPES and head[1] == 3 and head[2] <= 4:
        return TLS
    if head.startswith(HTTP2_PREFACE[:len(head)]) or _http2_frame(head):
        return HTTP2
    if head.startswith(_HTTP_METHODS) or head.startswith(b"HTTP"):
        return HTTP
    return None


def not_websocket(head: bytes | bytearray | memoryview) -> str | None:
    """At a WebSocket listener: None if ``head`` (a connection's first bytes) may start an
    HTTP request, else what the peer speaks and what it should pass."""
    if not head:
        return None
    kind = wrong_peer(head)
    if kind is TLS:
        return TLS
    if kind is NATIVE:
        what = "objtransport native framing over plain TCP"
    elif kind is HTTP2:
        what = "HTTP/2 (gRPC)"
    elif kind is HTTP or bytes(head[:1]).isupper():
        return None  # a request line (or too little to say): the HTTP parser decides
    else:
        what = f"no HTTP (first bytes {bytes(head[:8])!r})"
    return f'peer speaks {what}, not WebSocket: connect with transport="websocket"'


#: the GOAWAY reason a WebSocket listener sends to a native client that came over plain TCP
WEBSOCKET_LISTENER = 'this listener speaks WebSocket: connect with transport="websocket"'


def _http2_frame(head: bytes) -> bool:
    """A server's first HTTP/2 frame: SETTINGS (type 4, no flags) on stream 0, a payload
    of whole 6-byte settings (9 bytes needed)."""
    if len(head) < 9 or head[3] != 4 or head[4:9] != bytes(5):
        return False
    length = int.from_bytes(head[:3], "big")
    return length <= 0x4000 and length % 6 == 0
