"""Structured logging: every record of the ``objtransport`` logger hierarchy that is about a
connection, a listener or an endpoint carries ``conn_id``, ``endpoint`` and ``transport`` as
``extra=`` fields (attributes of the ``LogRecord``), so that JSON log handlers can use them::

    class Json(logging.Formatter):
        def format(self, r):
            return json.dumps({"msg": r.getMessage(), "conn_id": r.conn_id,
                               "endpoint": r.endpoint, "transport": r.transport})

    handler = logging.StreamHandler()
    handler.addFilter(DefaultFields())      # records about nothing in particular get None
    handler.setFormatter(Json())
    logging.getLogger("objtransport").addHandler(handler)

Loggers: ``objtransport`` (service), ``objtransport.connection``, ``objtransport.handler``,
``objtransport.listener``, ``objtransport.events`` and one per driver
(``objtransport.stream``, ``objtransport.websocket``, ``objtransport.grpc``...).
"""

from __future__ import annotations

import logging

__all__ = ["FIELDS", "DefaultFields", "log_fields"]

#: the ``extra=`` fields of objtransport's records
FIELDS = ("conn_id", "endpoint", "transport")


def log_fields(conn_id: int | None, endpoint: object, transport: str | None = None
               ) -> dict[str, object]:
    """The ``extra=`` mapping of a record about ``conn_id`` (None: a listener or endpoint)
    and ``endpoint`` (an ``Endpoint``, or a ``"tcp://host:port"`` string); the transport
    name comes from the endpoint unless given."""
    text = str(endpoint)
    if transport is None:
        kind = getattr(endpoint, "transport", None)
        value = getattr(kind, "value", kind)
        if isinstance(value, str):
            transport = value
        else:
            transport = text.split("://", 1)[0].split("+", 1)[0] if "://" in text else ""
    return {"conn_id": conn_id, "endpoint": text, "transport": transport}


class DefaultFields(logging.Filter):
    """A handler filter that gives every record the :data:`FIELDS` (None when absent), so a
    formatter may use them on any record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True
