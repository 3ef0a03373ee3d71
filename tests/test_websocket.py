"""The WebSocket transport over real loopback sockets: native and raw, ws and wss, against
plain ``websockets`` peers and a real browser (headless Chromium over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

websockets = pytest.importorskip("websockets")

from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.asyncio.server import ServerConnection  # noqa: E402
from websockets.asyncio.server import serve as ws_serve  # noqa: E402
from websockets.exceptions import ConnectionClosed as WsConnectionClosed  # noqa: E402

from objtransport import (  # noqa: E402
    ConnectError,
    Message,
    NetworkTransport,
    TransportError,
)
from objtransport.sansio.session import NativeSession  # noqa: E402
from objtransport.testing import eventually  # noqa: E402

from .conftest import TLS  # noqa: E402

WS = {"transport": "websocket"}
SIZES = [1, 100, 64 * 1024, 256 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024 + 7,
         16 * 1024 * 1024]


@contextlib.asynccontextmanager
async def plain_echo_server(**kw: Any) -> AsyncIterator[int]:
    """A plain ``websockets`` echo server (no objtransport): yields its port."""
    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(WsConnectionClosed):
            async for msg in ws:
                await ws.send(msg)

    async with ws_serve(echo, "127.0.0.1", 0, compression=None, **kw) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def echo_listener(net: NetworkTransport, host: str = "127.0.0.1", port: int = 0,
                        **kw: Any) -> Any:
    def echo(msg: Message) -> None:
        net.send_nowait(msg.conn_id, msg.data, text=msg.text)

    return await net.listen(host, port, handler=echo, transport="websocket", **kw)


# -- native ----------------------------------------------------------------------------------

async def test_native_features_priorities_streams_text_and_acks(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, **WS)
    conn = await net.connect("127.0.0.1", listener.port, **WS)
    await net.send_data(conn, b"low", priority="low", stream=3)
    await net.send_data(conn, b"texte", text=True, priority="high")
    await net.flush(conn, timeout=5.0)  # every message acknowledged by the peer
    got = {(await net.receive(timeout=5.0)).data: None for _ in range(2)}
    assert set(got) == {b"low", b"texte"}
    assert net.connection_info(conn).unacked_messages == 0


async def test_native_coalesces_one_loop_turn_into_one_ws_message(
        net: NetworkTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    carriers: list[int] = []  # WebSocket messages the listener side received
    original = NativeSession.receive_data

    def counting(self: NativeSession, data: Any, now: float) -> Any:
        if self.role == "server":
            carriers.append(len(data))
        return original(self, data, now)

    monkeypatch.setattr(NativeSession, "receive_data", counting)
    got: list[bytes] = []
    listener = await net.listen("127.0.0.1", 0, handler=lambda m: got.append(m.data), **WS)
    conn = await net.connect("127.0.0.1", listener.port, **WS)
    await eventually(lambda: carriers)  # HELLO and PING went out
    carriers.clear()
    for i in range(1000):
        net.send_nowait(conn, i.to_bytes(4, "big") * 16)
    await eventually(lambda: len(got) == 1000)
    assert got == [i.to_bytes(4, "big") * 16 for i in range(1000)]
    # 1000 messages in one loop turn: the first written at once, the rest in one message
    assert 1 <= len(carriers) <= 3, carriers


async def test_native_client_against_plain_server_is_a_clear_connect_error(
        net: NetworkTransport) -> None:
    async with plain_echo_server() as port:
        with pytest.raises(ConnectError, match="objtransport.v1") as err:
            await net.connect("127.0.0.1", port, **WS)
    assert "framing='raw'" in str(err.value)


# -- raw: plain websockets peers --------------------------------------------------------------

async def test_raw_plain_client_binary_and_text_to_listener(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, **WS)
    async with ws_connect(f"ws://127.0.0.1:{listener.port}/", proxy=None,
                          max_size=None) as ws:
        await ws.send(b"\x00\x01binary")
        await ws.send("texte ü")
        first = await net.receive(timeout=5.0)
        second = await net.receive(timeout=5.0)
        assert (first.data, first.text) == (b"\x00\x01binary", False)
        assert (second.data, second.text) == ("texte ü".encode(), True)
        assert net.connection_info(first.conn_id).framing == "raw"
        await net.send_data(first.conn_id, b"reply")
        await net.send_data(first.conn_id, "réponse".encode(), text=True)
        assert await ws.recv() == b"reply"
        assert await ws.recv() == "réponse"
        big = os.urandom(3 * 1024 * 1024)
        await net.send_data(first.conn_id, big)
        assert await ws.recv() == big


async def test_raw_fragmented_messages_and_invalid_utf8(net: NetworkTransport) -> None:
    """A message sent in fragments arrives whole; a text message that is not UTF-8 closes
    only that connection (1007) and the listener keeps serving."""
    listener = await net.listen("127.0.0.1", 0, **WS)
    url = f"ws://127.0.0.1:{listener.port}/"
    async with ws_connect(url, proxy=None) as ws:
        await ws.send([b"frag", b"mented", b"!"])
        await ws.send(["tex", "te ü"])
        first = await net.receive(timeout=5.0)
        second = await net.receive(timeout=5.0)
        assert (first.data, first.text) == (b"fragmented!", False)
        assert (second.data, second.text) == ("texte ü".encode(), True)
        await ws.send(b"\xff\xfe not utf-8", text=True)
        with pytest.raises(WsConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    async with ws_connect(url, proxy=None) as ws:
        await ws.send(b"still serving")
        assert (await net.receive(timeout=5.0)).data == b"still serving"


async def test_raw_client_against_plain_websockets_server(net: NetworkTransport) -> None:
    async with plain_echo_server(max_size=None) as port:
        conn = await net.connect("127.0.0.1", port, framing="raw", **WS)
        payloads = [b"a", b"", os.urandom(100_000), os.urandom(5 * 1024 * 1024)]
        for p in payloads:
            await net.send_data(conn, p)
        await net.send_data(conn, b"as text", text=True)
        for p in payloads:
            assert (await net.receive(conn, timeout=10.0)).data == p
        last = await net.receive(conn, timeout=5.0)
        assert last.data == b"as text" and last.text
        info = net.connection_info(conn)
        assert info.framing == "raw" and info.messages_received == 5


async def test_raw_ping_pong_rtt_feeds_latency(net: NetworkTransport) -> None:
    async with plain_echo_server() as port:
        conn = await net.connect("127.0.0.1", port, framing="raw", keepalive_interval=0.05,
                                 **WS)
        await eventually(lambda: net.get_metrics().latency_samples >= 2)
        assert net.get_metrics().avg_latency_ms > 0
        assert net.connection_info(conn).rtt_ms is not None


async def test_close_code_and_reason_are_mapped(net: NetworkTransport) -> None:
    async def bye(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4001, "go away now")

    async with ws_serve(bye, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await net.connect("127.0.0.1", port, framing="raw", max_reconnect_attempts=0,
                                 **WS)
        await net.send_data(conn, b"hi")
        await eventually(lambda: net.connection_info(conn).state == "disconnected")
        info = net.connection_info(conn)
        assert info.error_count >= 1
        with pytest.raises(TransportError):  # never a websockets exception
            await net.send_data(conn, b"more", timeout=0.2)


async def test_closed_link_raises_connection_closed_with_code() -> None:
    """The link's own error names the WebSocket close code and reason."""
    async def bye(ws: ServerConnection) -> None:
        await ws.close(4002, "custom reason")

    async with NetworkTransport(timeout=5.0, max_reconnect_attempts=0) as net:
        async with ws_serve(bye, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            conn = await net.connect("127.0.0.1", port, framing="raw", **WS)
            link = net.connection(conn).link
            assert link is not None
            closed = await asyncio.wait_for(link.closed, 5.0)
            assert (closed.code, closed.reason, closed.by_peer) == (4002, "custom reason", True)
            err = link.closed_error()  # type: ignore[attr-defined]
            assert err.code == 4002 and "custom reason" in str(err)


async def test_oversized_message_closes_only_that_connection_with_1009(
        net: NetworkTransport) -> None:
    listener = await echo_listener(net, max_message_size=1024)
    url = f"ws://127.0.0.1:{listener.port}/"
    async with ws_connect(url, proxy=None) as good, ws_connect(url, proxy=None) as bad:
        await bad.send(b"x" * 2048)
        with pytest.raises(WsConnectionClosed) as err:
            await bad.recv()
        assert err.value.rcvd is not None and err.value.rcvd.code == 1009
        await good.send(b"still here")
        assert await good.recv() == b"still here"
    async with ws_connect(url, proxy=None) as again:
        await again.send(b"new one")
        assert await again.recv() == b"new one"
    assert net.get_metrics().errors >= 1


async def test_custom_path(net: NetworkTransport) -> None:
    listener = await echo_listener(net, path="/objects")
    conn = await net.connect("127.0.0.1", listener.port, path="/objects", **WS)
    await net.send_data(conn, b"on /objects")
    assert (await net.receive(conn, timeout=5.0)).data == b"on /objects"


# -- wss ---------------------------------------------------------------------------------------

async def test_wss_native_and_raw_with_generated_certificates(net: NetworkTransport,
                                                              tls: TLS) -> None:
    listener = await echo_listener(net, ssl_context=tls.server_ctx)
    conn = await net.connect("127.0.0.1", listener.port, ssl_context=tls.client_ctx, **WS)
    await net.send_data(conn, b"secret" * 1000)
    assert (await net.receive(conn, timeout=5.0)).data == b"secret" * 1000
    assert net.connection_info(conn).tls
    async with ws_connect(f"wss://127.0.0.1:{listener.port}/", ssl=tls.client_ctx,
                          proxy=None) as ws:
        await ws.send("plain wss client")
        assert await ws.recv() == "plain wss client"


async def test_wss_untrusted_certificate_is_refused(net: NetworkTransport, tls: TLS) -> None:
    listener = await echo_listener(net, ssl_context=tls.server_ctx)
    with pytest.raises(ConnectError, match="certificate verification failed"):
        await net.connect("127.0.0.1", listener.port, ssl=True, **WS)
    with pytest.raises(ConnectError):  # ws:// to a wss:// listener
        await net.connect("127.0.0.1", listener.port, **WS)


# -- failures -------------------------------------------------------------------------------

async def test_wrong_path_is_connect_error_with_404(net: NetworkTransport) -> None:
    listener = await net.listen("127.0.0.1", 0, path="/right", **WS)
    with pytest.raises(ConnectError, match="HTTP 404") as err:
        await net.connect("127.0.0.1", listener.port, path="/wrong", **WS)
    assert err.value.status == 404
    with pytest.raises(ConnectError, match="HTTP 404"):
        await net.connect("127.0.0.1", listener.port, framing="raw", **WS)


async def _http_server(reply: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_plain_http_server_is_connect_error(net: NetworkTransport) -> None:
    forbidden = await _http_server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    ok = await _http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    garbage = await _http_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    try:
        for server, pattern in ((forbidden, "HTTP 403"), (ok, "HTTP 200"),
                                (garbage, "not a WebSocket server")):
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(ConnectError, match=pattern):
                await net.connect("127.0.0.1", port, **WS)
        port = forbidden.sockets[0].getsockname()[1]
        breaker = net.circuit_breaker("127.0.0.1", port, transport="websocket")
        assert breaker.failure_count == 1  # the failure fed the endpoint's breaker
    finally:
        for s in (forbidden, ok, garbage):
            s.close()


# -- a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PAGE = """<!doctype html><title>objtransport</title><script>
window.result = new Promise((resolve) => {
  const ws = new WebSocket("ws://127.0.0.1:%d/");
  ws.binaryType = "arraybuffer";
  const got = [];
  ws.onopen = () => { ws.send(new Uint8Array([1, 2, 3, 250])); ws.send("héllo browser"); };
  ws.onmessage = (e) => {
    got.push(typeof e.data === "string" ? "text:" + e.data
                                        : "binary:" + Array.from(new Uint8Array(e.data)));
    if (got.length === 2) { ws.close(1000, "done"); resolve(got); }
  };
  ws.onerror = () => resolve(["error"]);
});
</script>"""


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


async def _cdp_evaluate(browser_url: str, page_url: str, expression: str) -> Any:
    """Open ``page_url`` in a new tab over the DevTools protocol, await ``expression``."""
    ids = itertools.count(1)
    async with ws_connect(browser_url, proxy=None, max_size=None) as cdp:
        async def call(method: str, session: str | None = None, **params: Any) -> Any:
            msg_id = next(ids)
            msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
            if session:
                msg["sessionId"] = session
            await cdp.send(json.dumps(msg))
            while True:
                reply = json.loads(await cdp.recv())
                if reply.get("id") == msg_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]

        target = (await call("Target.createTarget", url=page_url))["targetId"]
        session = (await call("Target.attachToTarget", targetId=target,
                              flatten=True))["sessionId"]
        for _ in range(100):  # the page's script may not have run yet
            res = await call("Runtime.evaluate", session, expression=expression,
                             awaitPromise=True, returnByValue=True)
            value = res["result"].get("value")
            if value is not None:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError("the page never produced a result")


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="Chromium is not installed (apt-get install chromium; "
                           ".ci/run installs it)")
async def test_browser_websocket_talks_to_a_listener(net: NetworkTransport) -> None:
    listener = await echo_listener(net)
    page = PAGE % listener.port
    with tempfile.TemporaryDirectory() as profile:
        page_file = os.path.join(profile, "page.html")
        _write(page_file, page)
        # no pipes (Chromium's helper processes would hold them open past the test):
        # DevTools says where it listens in the profile's DevToolsActivePort file
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        active = os.path.join(profile, "DevToolsActivePort")
        try:
            await eventually(lambda: len(_read_lines(active)) >= 2 or proc.returncode is not None,
                             timeout=30)
            assert proc.returncode is None, "chromium exited before DevTools started"
            port, path = _read_lines(active)[:2]
            got = await _cdp_evaluate(f"ws://127.0.0.1:{port}{path}", f"file://{page_file}",
                                      "window.result")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helpers
            await proc.wait()
    assert got == ["binary:1,2,3,250", "text:héllo browser"]
    info = [net.connection_info(c) for c in net.connections()]
    assert any(i.framing == "raw" and i.role == "server" for i in info) or not info
