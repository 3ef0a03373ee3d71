"""The app a WorkerPool runs in each worker in tests/test_workers.py: answers with its pid,
then the message. A module of its own, importing objtransport only: each spawned worker
imports it (the test module would bring pytest, trustme and the fixtures along)."""

from __future__ import annotations

import os

from objtransport import Message, NetworkTransport


def pid_echo(net: NetworkTransport) -> object:
    """Each worker answers with its pid, then the message (module level: it is pickled)."""
    pid = b"%d:" % os.getpid()

    def handler(msg: Message) -> None:
        net.send_nowait(msg.conn_id, pid + msg.data)
    return handler
