"""Driving ``python -m objtransport`` as a user would: subprocesses, pipes, a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CMD = [sys.executable, "-m", "objtransport"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "140", "NO_COLOR": "1"}
ENV.pop("FORCE_COLOR", None)


def run(*args: str, input: str | None = None, timeout: float = 30.0,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command to its end; stdout and stderr are pipes (not a terminal)."""
    return subprocess.run([*CMD, *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd)


def run_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``main(args)`` in this process, seen as :func:`run` sees a process: exit status,
    stdout, stderr. For what is not about the process (parsing, help, one-line errors): no
    interpreter to start and no package to import each time."""
    from objtransport.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return subprocess.CompletedProcess([*CMD, *args], code, out.getvalue(), err.getvalue())


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The command failed with one clean line on stderr; return it."""
    assert proc.returncode != 0, proc
    lines = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("objtransport"), lines[0]
    return lines[0]


class Background:
    """A long-running command (serve, proxy) whose stdout we read line by line."""

    def __init__(self, *args: str, tty: bool = False) -> None:
        self.master: int | None = None
        if tty:
            self.master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
            env = {**ENV, "TERM": "xterm-256color"}
            env.pop("COLUMNS")
            self.proc = subprocess.Popen([*CMD, *args], stdin=subprocess.DEVNULL,
                                         stdout=slave, stderr=slave, env=env)
            os.close(slave)
        else:
            self.proc = subprocess.Popen([*CMD, *args], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=ENV)
        self.out = ""

    def _fd(self) -> int:
        if self.master is not None:
            return self.master
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read output until ``pattern`` (a regex) appears in it; fail after ``timeout``."""
        end = time.monotonic() + timeout
        fd = self._fd()
        while True:
            m = re.search(pattern, self.out)
            if m:
                return m
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; output:\n"
                                     f"{self.out}\nstderr: {self._stderr()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the pty closes when the process ends
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"exited {self.proc.returncode} before {pattern!r}:"
                                         f"\n{self.out}\nstderr: {self._stderr()}")
                self.out += chunk.decode("utf-8", "replace")

    def _stderr(self) -> str:
        if self.master is None and self.proc.poll() is not None and self.proc.stderr:
            return self.proc.stderr.read().decode()
        return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit status (the command stops cleanly on SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            if self.master is not None:
                os.close(self.master)
                self.master = None
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
        return code


@contextmanager
def background(*args: str, tty: bool = False) -> Iterator[Background]:
    bg = Background(*args, tty=tty)
    try:
        yield bg
    finally:
        bg.stop()


@contextmanager
def server(*args: str, tty: bool = False) -> Iterator[tuple[Background, int]]:
    """``serve --port 0 ARGS``; yields it and its port."""
    with background("serve", "--port", "0", *args, tty=tty) as bg:
        m = bg.wait_for(r"listener on 127\.0\.0\.1:(\d+)")
        yield bg, int(m.group(1))
