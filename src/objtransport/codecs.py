"""Thin payload codecs: JSON (standard library) and MessagePack (``objtransport[msgpack]``).

``send_json`` / ``send_msgpack`` encode with these and set the ``content-type`` header;
``Message.json()`` / ``Message.msgpack()`` decode.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSON_TYPE", "MSGPACK_TYPE", "json_bytes", "msgpack_bytes"]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def msgpack_bytes(obj: Any) -> bytes:
    """MessagePack; raises ``ImportError`` naming the extra when msgpack is missing."""
    try:
        import msgpack
    except ImportError:
        raise ImportError("send_msgpack needs: pip install 'objtransport[msgpack]'") from None
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out
