"""mypy --strict catches mistakes in code that uses objtransport (issue 11): a misspelt
option, an unknown transport, framing or priority. Runs mypy's API on small snippets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

GOOD = """
    from objtransport import NetworkTransport, Priority, TransportKind

    async def main() -> None:
        async with NetworkTransport(timeout=2.0, pool_size=3, framing="raw") as net:
            listener = await net.listen("127.0.0.1", 0, framing="auto", transport="websocket",
                                        path="/objects", max_connections=10)
            conn = await net.connect("127.0.0.1", listener.port, timeout=3,
                                     max_bandwidth=1e6, transport=TransportKind.WEBSOCKET)
            await net.send_data(conn, b"x", priority="high")
            await net.send_data(conn, bytearray(b"x"), priority=Priority.LOW)
            await net.send_data(conn, memoryview(b"x"), priority=0)
            await net.send_data(conn, b"x", stream=2, text=True, timeout=1.0, wait_ack=False,
                                reliable=True, headers={"k": "v"}, ttl=5.0)
            await net.send_to("127.0.0.1", 1, b"x", transport="udp", pool_size=2, timeout=1.0)
"""

BAD = {
    "tiemout": ('await net.connect("h", 1, tiemout=3)',
                'Unexpected keyword argument "tiemout" for "connect"'),
    "listen option": ('await net.listen("h", 0, max_conections=3)',
                      'Unexpected keyword argument "max_conections" for "listen"'),
    "service option": ("NetworkTransport(pool_sise=3)",
                       'Unexpected keyword argument "pool_sise"'),
    "send_to option": ('await net.send_to("h", 1, b"x", retries=3)',
                       'Unexpected keyword argument "retries" for "send_to"'),
    "transport": ('await net.connect("h", 1, transport="tpc")',
                  'Argument "transport" to "connect"'),
    "framing": ('await net.listen("h", 0, framing="nativ")', 'Argument "framing" to "listen"'),
    "client framing": ('await net.connect("h", 1, framing="auto")',
                       'Argument "framing" to "connect"'),
    "priority": ('await net.send_data(1, b"x", priority="urgent")',
                 'Argument "priority" to "send_data"'),
    "payload": ("await net.send_data(1, [1, 2])", 'Argument 2 to "send_data"'),
    "send_data option": ('await net.send_data(1, b"x", wait_acks=True)',
                         'Unexpected keyword argument "wait_acks" for "send_data"'),
    "send_data option type": ('await net.send_data(1, b"x", stream="2")',
                              'Argument "stream" to "send_data"'),
}


def _check(tmp_path: Path, body: str) -> tuple[int, str]:
    src = tmp_path / "snippet.py"
    src.write_text(textwrap.dedent(body))
    out, err, status = mypy_api.run(["--strict", "--no-error-summary",
                                     "--cache-dir", str(tmp_path / ".mypy_cache"), str(src)])
    return status, out + err


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_correct_use_type_checks(tmp_path: Path) -> None:
    status, out = _check(tmp_path, GOOD)
    assert status == 0, out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_mistakes_are_rejected_by_mypy_strict(tmp_path: Path) -> None:
    lines = "\n".join(f"        {code}  # {name}" for name, (code, _) in BAD.items())
    body = ("from objtransport import NetworkTransport\n\n"
            "async def main() -> None:\n"
            "    async with NetworkTransport() as net:\n" + lines + "\n")
    status, out = _check(tmp_path, body)
    assert status == 1, out
    for name, (_, message) in BAD.items():
        assert message in out, f"{name}: {message!r} not in\n{out}"
