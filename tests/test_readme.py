"""Every Python example of README.md runs as printed, on 127.0.0.1.

The Quick start and the blocking API example are whole scripts, run by tests/test_api.py and
tests/test_sync.py. The other examples are snippets that, as the README says, run inside the
Quick start's ``async with NetworkTransport() as net:`` block with its ``echo`` handler, and
``chain_pem``, ``key_pem``, ``ca_pem`` PEM bytes. Here each runs in that context; its fixed
port is swapped for a free one (tests run in parallel), nothing else is changed.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme

from objtransport import Message, NetworkTransport

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", README, re.S)]
WHOLE = ("asyncio.run(", "from objtransport.sync import")  # the scripts other tests run
SNIPPETS = [b for b in BLOCKS if not any(w in b for w in WHOLE)]


def _name(code: str) -> str:
    found = re.search(r'transport="(\w+)"', code)
    return found.group(1) if found else "tcp"


def test_the_snippets_are_found() -> None:
    assert len(BLOCKS) == len(SNIPPETS) + 2, [b[:40] for b in BLOCKS]
    assert {_name(s) for s in SNIPPETS} >= {"websocket", "udp", "grpc", "quic"}


def _free_port(code: str) -> str:
    """The snippet's fixed listener port -> port 0, its other uses -> ``listener.port``."""
    found = re.search(r'net\.listen\("127\.0\.0\.1", (\d+)', code)
    if found is None or found.group(1) == "0":
        return code
    port = found.group(1)
    code = code.replace(f'net.listen("127.0.0.1", {port}', 'net.listen("127.0.0.1", 0', 1)
    return re.sub(rf"\b{port}\b", "listener.port", code)


@pytest.mark.parametrize("code", SNIPPETS, ids=[_name(s) for s in SNIPPETS])
def test_the_readme_snippet_runs(code: str) -> None:
    pytest.importorskip({"websocket": "websockets", "grpc": "grpc", "quic": "aioquic"}
                        .get(_name(code), "asyncio"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    env: dict[str, Any] = {
        "Message": Message,
        "chain_pem": b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        "key_pem": cert.private_key_pem.bytes(),
        "ca_pem": ca.cert_pem.bytes(),
    }
    body = "async def snippet(net, echo):\n" + textwrap.indent(_free_port(code), "    ")
    exec(compile(body + "\n    return locals()\n", "README.md", "exec"), env)

    async def main() -> dict[str, Any]:
        async with NetworkTransport() as net:
            async def echo(msg: Message) -> None:
                await net.send_data(msg.conn_id, b"echo: " + msg.data)

            names: dict[str, Any] = await asyncio.wait_for(env["snippet"](net, echo), 20)
            for name in ("conn", "plain"):  # what the snippet's connections got back
                if name in names and "send_data(" + name in code:
                    names[name + "_got"] = (await net.receive(names[name], timeout=5)).data
            assert net.get_metrics().errors == 0
            return names

    names = asyncio.run(main())
    for name in ("conn", "plain"):
        if name + "_got" in names:
            assert names[name + "_got"].startswith(b"echo: "), names
    if "reply" in names:
        assert names["reply"].data == b"Alice Liddell"


def _command_lines() -> list[str]:
    """Every ``objtransport ...`` line of the README's and docs/cli.md's shell blocks."""
    docs = README + (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", docs, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].split("|")[-1].strip().rstrip("&").strip()
            if line.startswith("objtransport "):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", _command_lines())
def test_the_documented_command_lines_parse(line: str) -> None:
    """Each documented command line is accepted by the parser as printed (not run)."""
    import shlex

    from objtransport.cli import build_parser

    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.command == shlex.split(line)[1]
