"""Logging: records about a connection, listener or endpoint carry ``conn_id``, ``endpoint``
and ``transport`` as ``extra=`` fields, so a JSON handler can use them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from objtransport import Message, NetworkTransport
from objtransport.logfields import FIELDS, DefaultFields
from objtransport.testing import eventually


class Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"logger": record.name, "msg": record.getMessage(),
                           **{k: getattr(record, k) for k in FIELDS}})


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(DefaultFields())
        self.setFormatter(Json())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def collected() -> list[dict[str, object]]:
    handler = Collect()
    logger = logging.getLogger("objtransport")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


async def test_connection_records_carry_conn_id_endpoint_and_transport(
        collected: list[dict[str, object]]) -> None:
    async with NetworkTransport(reconnect_interval=0.05, failure_threshold=1,
                                max_reconnect_attempts=1) as net:
        def broken(msg: Message) -> None:
            raise RuntimeError("bug in a handler")

        listener = await net.listen("127.0.0.1", 0, handler=broken)
        port = listener.port
        conn = await net.connect("127.0.0.1", port)
        await net.send_data(conn, b"x")
        await eventually(lambda: net.get_metrics().handler_errors == 1)
        await listener.close()  # the client loses its link, fails to reconnect, gives up
        # its failed reconnection opens the endpoint's breaker (failure_threshold=1)
        await eventually(lambda: any("giving up" in str(x["msg"]) for x in collected))
    endpoint = f"tcp://127.0.0.1:{port}"
    handler = next(x for x in collected if x["logger"] == "objtransport.handler")
    assert handler["transport"] == "tcp" and isinstance(handler["conn_id"], int)
    assert handler["conn_id"] != conn  # the listener's side of the connection
    lost = next(x for x in collected if "reconnecting" in str(x["msg"]))
    assert (lost["conn_id"], lost["endpoint"], lost["transport"]) == (conn, endpoint, "tcp")
    given_up = next(x for x in collected if "giving up" in str(x["msg"]))
    assert (given_up["conn_id"], given_up["endpoint"]) == (conn, endpoint)
    breaker = next(x for x in collected if "circuit breaker" in str(x["msg"]))
    assert (breaker["conn_id"], breaker["endpoint"], breaker["transport"]) == (
        None, endpoint, "tcp")
    # every record has the fields (None where it is about nothing in particular)
    assert all(set(FIELDS) <= set(x) for x in collected)


async def test_a_driver_record_about_a_peer_carries_the_fields(
        collected: list[dict[str, object]]) -> None:
    async with NetworkTransport() as net:
        listener = await net.listen("127.0.0.1", 0, transport="websocket")
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"\x00\x00\x00\x05hello")  # raw framing, not an HTTP request
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        writer.close()
        await writer.wait_closed()
    record = next(x for x in collected if "closed:" in str(x["msg"]))
    assert record["transport"] == "websocket" and record["conn_id"] is None
    assert str(record["endpoint"]).startswith("websocket://127.0.0.1:")
