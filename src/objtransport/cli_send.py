"""``objtransport send``: messages from the arguments, stdin or a file; replies printed.

A ``--file`` goes in chunks, one message each; the listener (``serve``, echo mode) sends
every chunk back and the command checks that what came back is the file, byte for byte
(SHA-256 and length): the transfer is verified end to end. With a terminal and a file of
at least ``--progress-min`` bytes, a rich progress bar shows bytes/s and the time left.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .cli_common import CliError, Parser, TransportArgs, parse_endpoint, parse_size
from .service import NetworkTransport

__all__ = ["add_parser", "send"]

DESCRIPTION = """\
Connect to HOST:PORT and send messages, then print the replies (one per message).

The messages are the MESSAGE arguments, else the lines of stdin, else --file.

--file PATH sends the file in chunks of --chunk-size bytes, one message each, and
checks the echo of every chunk against the file (SHA-256 and length): the transfer is
verified end to end, so the far side must echo (objtransport serve --mode echo). With
--no-reply nothing is awaited but the peer's acknowledgements (native framing), for a
sink. A file of --progress-min bytes or more shows a progress bar (bytes/s, time left)
when stdout is a terminal.

examples:
  objtransport send 127.0.0.1:7000 hello world
  printf 'a\\nb\\n' | objtransport send 127.0.0.1:7000
  objtransport send 127.0.0.1:7000 --file big.iso
  objtransport send --transport tls --ca ca.pem [::1]:7443 hello
"""


def add_parser(sub: argparse._SubParsersAction[Parser],
               common: list[Parser],
               formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("send", help="send messages or a file, print the replies",
                       description=DESCRIPTION, parents=common, formatter_class=formatter)
    p.add_argument("endpoint", metavar="HOST:PORT", type=parse_endpoint,
                   help="the listener, e.g. 127.0.0.1:7000 or [::1]:7000")
    p.add_argument("messages", metavar="MESSAGE", nargs="*",
                   help="messages to send (default: the lines of stdin)")
    p.add_argument("--file", "-f", type=Path, default=None, metavar="PATH",
                   help="send this file in chunks and verify its echo")
    p.add_argument("--chunk-size", type=parse_size, default="256KiB", metavar="SIZE",
                   help="bytes per message with --file")
    p.add_argument("--no-reply", action="store_true",
                   help="do not wait for replies (a sink); wait for acknowledgements only")
    p.add_argument("--progress-min", type=parse_size, default="1MiB", metavar="SIZE",
                   help="smallest --file that shows a progress bar on a terminal")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="connect timeout, and the longest wait for any one reply")


async def send(args: argparse.Namespace) -> int:
    targs = TransportArgs.from_args(args)
    host, port = args.endpoint
    if args.file is not None and args.messages:
        raise CliError("give MESSAGE arguments or --file, not both")
    if args.chunk_size < 1:
        raise CliError("--chunk-size must be at least 1 byte")
    async with NetworkTransport(timeout=args.timeout) as net:
        conn = await net.connect(host, port, timeout=args.timeout, **targs.connect_kwargs())
        if args.file is not None:
            return await _send_file(net, conn, args)
        messages = args.messages or [line.rstrip("\n") for line in sys.stdin]
        for text in messages:
            await net.send_data(conn, text.encode())
        if args.no_reply:
            await net.flush(conn, timeout=args.timeout)
            print(f"sent {len(messages)} message(s)")
            return 0
        for _ in messages:
            try:
                msg = await net.receive(conn, timeout=args.timeout)
            except TimeoutError:
                raise CliError(f"no reply within {args.timeout:g} s") from None
            print(msg.data.decode("utf-8", "replace"), flush=True)
    return 0


def _progress(total: int | None, show: bool) -> tuple[Any, Callable[[int], None]]:
    """A started rich Progress (or None) and the function that advances it."""
    if not show:
        return None, lambda n: None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        DownloadColumn(), TransferSpeedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn())
    task = progress.add_task("verified", total=total)
    progress.start()
    return progress, lambda n: progress.advance(task, n)


def _open(path: Path) -> tuple[int | None, BinaryIO]:
    """The file's size (None for a pipe or a device: read to its end) and the open file."""
    st = path.stat()
    return (st.st_size if stat.S_ISREG(st.st_mode) else None), path.open("rb")


async def _send_file(net: NetworkTransport, conn: int, args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        size, fh = await asyncio.to_thread(_open, path)
    except OSError as exc:
        raise CliError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    show = sys.stdout.isatty() and (size is None or size >= args.progress_min)
    if show:
        try:
            import rich  # noqa: F401
        except ImportError:
            show = False
    sent_hash, back_hash = hashlib.sha256(), hashlib.sha256()
    sent = back = chunks = echoed = 0
    all_sent = asyncio.Event()
    more = asyncio.Event()  # set by the sender after each chunk and at the end
    progress, advance = _progress(size, show)
    started = time.perf_counter()

    async def pump_replies() -> None:
        nonlocal back, echoed
        while True:
            if echoed == chunks:  # nothing outstanding: wait for the sender
                if all_sent.is_set():
                    return
                more.clear()
                await more.wait()
                continue
            try:
                msg = await net.receive(conn, timeout=args.timeout)
            except TimeoutError:
                raise CliError(f"the echo stopped after {back} of {sent} bytes (nothing for "
                               f"{args.timeout:g} s): is the far side `serve --mode echo`?"
                               ) from None
            back_hash.update(msg.data)
            back += len(msg.data)
            echoed += 1
            advance(len(msg.data))

    try:
        with fh:
            replies = None if args.no_reply else asyncio.create_task(pump_replies())
            try:
                while True:
                    data = fh.read(args.chunk_size)
                    if not data and chunks:
                        break
                    sent_hash.update(data)
                    sent += len(data)
                    chunks += 1
                    await net.send_data(conn, data)
                    more.set()
                    if args.no_reply:
                        advance(len(data))
                    if not data:  # an empty file: one empty message
                        break
                all_sent.set()
                more.set()
                if replies is None:
                    await net.flush(conn, timeout=max(args.timeout, sent / 1e6))
                else:
                    await replies
            finally:
                if replies is not None and not replies.done():
                    replies.cancel()
    finally:
        if progress is not None:
            progress.stop()
    elapsed = max(1e-9, time.perf_counter() - started)
    rate = sent / elapsed / 1e6
    if args.no_reply:
        print(f"sent {sent} bytes in {chunks} message(s), {elapsed:.2f} s, {rate:.1f} MB/s "
              "(acknowledged, not verified)")
        return 0
    if back != sent or back_hash.digest() != sent_hash.digest():
        raise CliError(f"verification FAILED: sent {sent} bytes (sha256 "
                       f"{sent_hash.hexdigest()[:16]}), echoed {back} (sha256 "
                       f"{back_hash.hexdigest()[:16]})")
    print(f"sent {sent} bytes in {chunks} message(s), {elapsed:.2f} s, {rate:.1f} MB/s; "
          f"verified: sha256 {sent_hash.hexdigest()}")
    return 0
