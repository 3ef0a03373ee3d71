"""The small HTTP endpoint shared by the metrics exporter and the worker pool's probes, from
raw sockets: methods, HEAD, and a client that never sends its request."""

from __future__ import annotations

import asyncio

from objtransport.http_endpoint import HttpEndpoint


async def _answer(path: str) -> tuple[str, str, bytes]:
    if path == "/x":
        return "200 OK", "text/plain", b"hello\n"
    return "404 Not Found", "text/plain", b"no\n"


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    return answer


async def test_get_head_other_methods_and_paths() -> None:
    endpoint = await HttpEndpoint(_answer).start()
    try:
        async with asyncio.timeout(10):
            got = await _ask(endpoint.port, b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200 OK\r\n")
            assert got.endswith(b"\r\n\r\nhello\n") and b"Content-Length: 6\r\n" in got
            head = await _ask(endpoint.port, b"HEAD /x HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
            assert b"Content-Length: 6\r\n" in head  # the length of what GET would send
            post = await _ask(endpoint.port, b"POST /x HTTP/1.1\r\n\r\n")
            assert post.startswith(b"HTTP/1.1 405 ")
            assert (await _ask(endpoint.port, b"GET /z HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 404 ")
    finally:
        await endpoint.close()
    assert not endpoint.serving


async def test_a_silent_client_is_cut_at_the_deadline_and_others_are_served() -> None:
    endpoint = await HttpEndpoint(_answer, deadline=0.3).start()
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(b"GET /x HTTP/1.1\r\n")  # and never the blank line
            got = await _ask(endpoint.port, b"GET /x HTTP/1.1\r\n\r\n")
            assert got.endswith(b"hello\n")  # served while the silent one waits
            assert await reader.read() == b""  # then the silent one is closed, no answer
            writer.close()
    finally:
        await endpoint.close()
