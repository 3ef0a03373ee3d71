"""The ``objtransport`` command, driven as a user would: subprocesses, exit codes, output,
and a pseudo-terminal for the live view and the progress bar."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from objtransport.cli import build_parser
from objtransport.cli_common import Parser

from .cli_helpers import background, one_error_line, run, run_here, server

COMMANDS = ["demo", "serve", "send", "bench", "proxy", "stats"]


# -- help and errors -----------------------------------------------------------------------

def test_help_is_plain_text_and_lists_every_command() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", proc.stdout, re.M), name
    for markup in ("``", ":class:", ":func:", ".. ", ":meth:"):
        assert markup not in proc.stdout


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return dict(build_parser().commands)


def test_every_option_of_every_command_has_help_and_shows_its_default() -> None:
    parsers = _subparsers()
    assert sorted(parsers) == sorted(COMMANDS)
    for name, p in parsers.items():
        text = " ".join(p.format_help().split())
        assert isinstance(p, Parser)
        for action in p.arguments:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False):
                shown = action.default if not isinstance(action.default, list) else None
                if shown is not None:
                    assert f"(default: {shown})" in text, (name, action.option_strings)


@pytest.mark.parametrize("command, option, default", [
    ("serve", "--port PORT, -p PORT", "7000"), ("serve", "--framing", "auto"),
    ("send", "--chunk-size SIZE", "256KiB"), ("bench", "--count COUNT, -n COUNT", "10000"),
    ("proxy", "--latency DURATION", "0ms"), ("stats", "--path PATH", "/metrics"),
])
def test_help_shows_defaults(command: str, option: str, default: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process (what a subprocess prints is checked once, below)."""
    monkeypatch.setenv("COLUMNS", "140")
    _help_shows(run_here(command, "--help"), option, default)


def test_help_in_a_subprocess_shows_defaults() -> None:
    _help_shows(run("serve", "--help"), "--port PORT, -p PORT", "7000")


def _help_shows(proc: subprocess.CompletedProcess[str], option: str, default: str) -> None:
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "``" not in text and ":class:" not in text
    after = text[text.rindex(option):]
    assert f"(default: {default})" in after[:400]


def test_python_m_and_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and re.match(r"\d+\.\d+", proc.stdout)


@pytest.mark.parametrize("args", [
    ["send", "127.0.0.1:1", "hello", "--timeout", "2"],  # nothing listens on port 1
    ["send", "not-an-endpoint", "x"],
    ["serve", "--port", "70000"],
    ["serve", "--transport", "tls", "--port", "0"],  # no certificate
    ["send", "127.0.0.1:7000", "--file", "/nonexistent/file"],
    ["proxy", "127.0.0.1:7000", "--latency", "fast"],
    ["stats", "127.0.0.1:1"],
    ["bench", "--transport", "carrier-pigeon"],
    ["no-such-command"],
])
def test_errors_are_one_line_with_a_non_zero_status(args: list[str]) -> None:
    """In this process: main() returns the status the process exits with (below)."""
    line = one_error_line(run_here(*args))
    assert len(line) < 300


@pytest.mark.parametrize("args", [
    ["send", "127.0.0.1:1", "hello", "--timeout", "2"],  # an error while running
    ["no-such-command"],  # a usage error
])
def test_errors_in_a_subprocess_are_one_line_with_a_non_zero_status(args: list[str]) -> None:
    line = one_error_line(run(*args))
    assert len(line) < 300


# -- serve and send --------------------------------------------------------------------------

def test_serve_runs_on_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    with server() as (bg, port):
        assert "uvloop loop)" in bg.out, bg.out
        for framing in ("native", "raw"):
            proc = run("send", f"127.0.0.1:{port}", "hello", "--framing", framing)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.splitlines() == ["hello"]


@pytest.mark.parametrize("transport", ["tcp", "udp", "websocket", "grpc"])
def test_send_arguments_and_stdin_lines_to_an_echo_server(transport: str) -> None:
    with server("--transport", transport, "--framing", "native") as (_, port):
        proc = run("send", f"127.0.0.1:{port}", "hello", "wörld", "--transport", transport)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["hello", "wörld"]
        proc = run("send", f"127.0.0.1:{port}", "--transport", transport, input="a\nb c\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["a", "b c"]


def test_raw_framing_and_a_sink(tmp_path: Path) -> None:
    with server("--framing", "raw", "--mode", "sink") as (_, port):
        proc = run("send", f"127.0.0.1:{port}", "x", "--framing", "raw", "--timeout", "1")
        assert "no reply within 1 s" in one_error_line(proc)
    with server("--framing", "native", "--mode", "sink") as (_, port):
        proc = run("send", f"127.0.0.1:{port}", "x", "y", "--no-reply")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "sent 2 message(s)"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("pem")
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.private_key_pem.write_to_path(paths["key"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize("transport", [["--transport", "tls"],
                                       ["--transport", "websocket", "--tls"],
                                       ["--transport", "quic"]])
def test_tls_with_a_ca_and_with_insecure(pem: dict[str, str], transport: list[str]) -> None:
    with server(*transport, "--framing", "native", "--cert", pem["cert"], "--key",
                pem["key"]) as (_, port):
        ok = run("send", f"127.0.0.1:{port}", "secret", *transport, "--ca", pem["ca"])
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "secret"
        insecure = run("send", f"127.0.0.1:{port}", "x", *transport, "--insecure")
        assert insecure.returncode == 0, insecure.stderr
        refused = run("send", f"127.0.0.1:{port}", "x", *transport, "--timeout", "3")
        assert "certificate" in one_error_line(refused)


def test_send_file_verified_end_to_end_without_a_terminal(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    with server() as (_, port):
        proc = run("send", f"127.0.0.1:{port}", "--file", str(path), "--chunk-size", "64KiB")
    assert proc.returncode == 0, proc.stderr
    assert f"verified: sha256 {hashlib.sha256(data).hexdigest()}" in proc.stdout
    assert f"sent {len(data)} bytes in 49 message(s)" in proc.stdout
    assert "ETA" not in proc.stdout  # no progress bar without a terminal


def test_send_file_to_a_sink_fails_verification_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(b"abc" * 1000)
    with server("--mode", "sink") as (_, port):
        proc = run("send", f"127.0.0.1:{port}", "--file", str(path), "--timeout", "1")
    assert "echo stopped after 0 of 3000 bytes" in one_error_line(proc)


def test_send_file_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with server() as (_, port), background(
            "send", f"127.0.0.1:{port}", "--file", str(path), "--chunk-size", "128KiB",
            tty=True) as client:
        client.wait_for(r"verified: sha256 [0-9a-f]{64}", timeout=40)
        assert client.proc.wait(10) == 0
    out = client.out
    assert hashlib.sha256(data).hexdigest() in out
    assert "ETA" in out and "verified" in out
    assert re.search(r"\d+(\.\d+)?/8\.4 MB", out), out[-2000:]  # bytes done / total
    assert re.search(r"[\d.]+ [kMG]?B/s", out)  # the bar's rate column


# -- the live view ---------------------------------------------------------------------------

def test_serve_live_on_a_terminal_shows_connections_rates_rtt_and_events() -> None:
    with server("--live", "--framing", "native", tty=True) as (srv, port):
        client = run("send", f"127.0.0.1:{port}", "ping", "pong")
        assert client.returncode == 0, client.stderr
        srv.wait_for(r"connections", timeout=10)
        table = srv.wait_for(r"(?s)msg/s in.*RTT p50 ms.*last events", timeout=10)
        assert table
        srv.wait_for(r"breaker", timeout=5)
        srv.wait_for(r"Accepted conn \d+ tcp://127\.0\.0\.1:\d+", timeout=5)  # net.events()
        assert srv.stop() == 0


def test_serve_live_without_a_terminal_prints_a_line_per_second() -> None:
    with server("--live", "--framing", "native") as (srv, port):
        assert run("send", f"127.0.0.1:{port}", "hi").returncode == 0
        # lines printed while the client ran may show 0; one printed after shows it
        m = srv.wait_for(r"conns \d+/([1-9]\d*) .*in \S+ msg/s.*rtt p50", timeout=10)
        assert int(m.group(1)) == 1
        assert srv.stop() == 0


def test_serve_stops_cleanly_on_sigterm_with_status_0() -> None:
    with server() as (srv, _):
        assert srv.stop() == 0


# -- proxy ------------------------------------------------------------------------------------

def test_proxy_adds_latency_and_counts_what_it_did() -> None:
    with server("--framing", "native") as (_, port), background(
            "proxy", f"127.0.0.1:{port}", "--latency", "100ms", "--jitter", "5ms") as px:
        pport = int(px.wait_for(r"proxy on 127\.0\.0\.1:(\d+) -> ").group(1))
        t = time.monotonic()
        proc = run("send", f"127.0.0.1:{pport}", "slow")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "slow"
        # handshake + message + reply: at least two crossings each way, 100 ms each
        assert time.monotonic() - t >= 0.4
        px.wait_for(r"connections 1 +forwarded \d+ B +resets 0", timeout=5)


def test_proxy_blackhole_after_makes_a_client_fail_in_one_line() -> None:
    with server("--framing", "native") as (_, port), background(
            "proxy", f"127.0.0.1:{port}", "--blackhole-after", "0s") as px:
        pport = int(px.wait_for(r"proxy on 127\.0\.0\.1:(\d+)").group(1))
        proc = run("send", f"127.0.0.1:{pport}", "lost", "--timeout", "1")
        one_error_line(proc)
        px.wait_for(r"BLACK HOLE", timeout=5)


def test_proxy_reset_every_resets_and_the_client_recovers(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(600_000)
    path.write_bytes(data)
    with server("--framing", "native") as (_, port), background(
            "proxy", f"127.0.0.1:{port}", "--reset-every", "200KB") as px:
        pport = int(px.wait_for(r"proxy on 127\.0\.0\.1:(\d+)").group(1))
        proc = run("send", f"127.0.0.1:{pport}", "--file", str(path), "--chunk-size", "50KB",
                   "--timeout", "10")
        assert proc.returncode == 0, proc.stderr
        assert hashlib.sha256(data).hexdigest() in proc.stdout
        px.wait_for(r"resets [1-9]", timeout=5)


# -- stats --------------------------------------------------------------------------------------

def test_stats_reads_a_serve_metrics_port() -> None:
    with server("--framing", "native", "--metrics-port", "0") as (srv, port):
        mport = int(srv.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        assert run("send", f"127.0.0.1:{port}", "one", "two", "three").returncode == 0
        proc = run("stats", f"127.0.0.1:{mport}")
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert re.search(r"objtransport_received_messages_total.*[│ ]3\b", out), proc.stdout
    assert "objtransport_opened_connections_total" in out
    assert "python_gc" not in out  # only objtransport_* without --all
