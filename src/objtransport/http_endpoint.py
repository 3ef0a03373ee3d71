"""A minimal HTTP/1.1 endpoint on the running event loop (:class:`HttpEndpoint`): the part
the Prometheus exporter (:mod:`~objtransport.exporters.prometheus`) and the worker pool's
probes (:mod:`~objtransport.pool_http`) share.

It answers ``GET`` (and ``HEAD``) with what an ``answer(path)`` coroutine returns, one
request per connection (``Connection: close``). A client gets ``deadline`` (10 s) to send
its request head and read the answer; then it is cut. Anything else is ``405``. No
third-party server: the endpoint serves a few small texts, and it runs on the service's own
loop so every figure is read on the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Self

__all__ = ["Answer", "HttpEndpoint"]

#: ``answer(path)`` -> (status line, content type, body); ``path`` without its query
Answer = Callable[[str], Awaitable[tuple[str, str, bytes]]]

#: how long a client has to send its request and take the answer
REQUEST_DEADLINE = 10.0


class HttpEndpoint:
    """Serve ``answer`` on ``host:port`` (port 0: any free port, read ``.port`` after
    :meth:`start`). Used as it is, or as a base whose subclass passes its own method."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1", port: int = 0,
                 deadline: float = REQUEST_DEADLINE) -> None:
        self.answer = answer
        self.deadline = deadline
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # the headers: nothing in them changes the answer
                parts = request.decode("latin-1").split()
                head_only = parts[:1] == ["HEAD"]
                if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                    status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
                else:
                    status, ctype, body = await self.answer(parts[1].split("?")[0])
                head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
                writer.write(head.encode("latin-1") + (b"" if head_only else body))
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass  # a slow or vanished client: it is closed below, nothing else to do
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
