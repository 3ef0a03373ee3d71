"""The public API surface is deliberate: a change to it must change this test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import objtransport
from objtransport.info import KeptSessions

EXPECTED = {
    "AuthenticationError", "CircuitBreakerState", "CircuitOpenError", "ConnectError",
    "ConnectionClosed",
    "ConnectionInfo", "ConnectionNotFound", "ConnectionNotReady", "Framing", "Listener",
    "Message", "MessageTooLarge", "NetworkTransport", "NoAvailableConnection", "Options",
    "Priority", "ProtocolError", "SendTimeout", "ServiceNotRunning", "SessionLost",
    "TransportError", "TransportKind", "TransportMetrics", "UnsupportedTransport", "__version__",
    "Event", "events", "ListenError", "ReceiveTimeout", "WorkerPool", "serve",
    "NoResponder", "RequestCancelled", "RequestTimeout", "UnsupportedFeature",
    "Batch",  # issue 17: what a batch handler gets (listen(..., batch=True))
    "SendDataOptions",  # issue 17: send_data's **options, typed
}


def test_all_is_the_public_api() -> None:
    assert set(objtransport.__all__) == EXPECTED
    for name in objtransport.__all__:
        assert hasattr(objtransport, name), name


def test_every_error_is_a_transport_error() -> None:
    errors = [getattr(objtransport, n) for n in objtransport.__all__
              if isinstance(getattr(objtransport, n), type)
              and issubclass(getattr(objtransport, n), Exception)]
    assert len(errors) == 20
    assert all(issubclass(e, objtransport.TransportError) for e in errors)


def test_defaults_are_the_original_modules() -> None:
    o = objtransport.Options()
    assert (o.pool_size, o.timeout, o.reconnect_interval, o.max_reconnect_attempts, o.ssl) == (
        10, 5.0, 1.0, 5, False)
    assert (o.failure_threshold, o.reset_timeout) == (5, 30.0)
    assert o.max_message_size == 64 * 1024 * 1024


async def test_the_demo_runs_every_installed_transport_and_exits_0() -> None:
    """`make demo` runs `objtransport demo`: it must finish by itself, quickly, and succeed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "from objtransport.cli import main; raise SystemExit(main(['demo']))",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:  # timed out: no process or pipe left behind
            proc.kill()
            await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "received 1000 echoes in order" in text
    for transport in ("udp", "websocket", "grpc"):
        assert f"│ {transport}" in text or f"  {transport}" in text, text
    assert "WRONG" not in text
    assert "demo finished" in text


def test_the_readme_quick_start_runs_cleanly(tmp_path: Path) -> None:
    """The first example users copy works as printed: its reply, and no error or traceback
    (its echo handler's last reply races the service stopping: that is not an error)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "quick_start.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=30,
                          check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert out.startswith("b'echo: hello'"), out
    assert "Traceback" not in err and "ERROR" not in err.upper(), err


async def test_the_read_only_views_start_empty_and_name_a_live_connection() -> None:
    """``connection(id)``, ``kept_sessions()``, ``events_published`` and ``spare_chunks``:
    what the tests (and a user diagnosing) read instead of the service's private parts."""
    async with objtransport.NetworkTransport(max_spare_chunk_bytes=1 << 20) as net:
        assert net.connection(12345) is None
        assert net.kept_sessions() == KeptSessions(waiting=0, evicted=0)
        assert net.events_published == 0
        budget = net.spare_chunks
        assert budget is not None and (budget.limit, budget.held) == (1 << 20, 0)
        listener = await net.listen("127.0.0.1", 0)
        conn_id = await net.connect("127.0.0.1", listener.port)
        conn = net.connection(conn_id)
        assert conn is not None and conn.id == conn_id and conn.link is not None
        assert isinstance(conn.link.timer_armed, bool)
