"""Start a coroutine at once, in the caller's step, and drive it without a task.

``start(coro)`` runs ``coro`` up to its first real suspension right away (as Python 3.12's
eager tasks do) and resumes it from a done-callback of each future it then waits on, until
it returns. Nothing awaits it and nothing can cancel it from outside: it ends when what it
waits on ends.

The gRPC link writes a lone message this way (see :class:`~.grpc.GrpcLink`): handing it to
the writer task would cost a task hop (a wake-up, a loop turn and a task step) per message,
and awaiting ``call.write()`` in the sender's own task is not safe, as grpc.aio cancels the
whole call when the task awaiting a write is cancelled (a cancelled ``send_data`` would
drop the connection and everything queued on it).

The coroutine must catch what it can raise (an exception escaping it is logged, a
``CancelledError`` is dropped) and must only await asyncio futures (or ``await`` nothing:
a bare yield resumes it in the next loop turn). It runs outside any task, so nothing in it
may need the current task (``asyncio.timeout``, ``asyncio.current_task()``): its first step
runs inside the caller's task, the others in no task at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any

__all__ = ["start"]

log = logging.getLogger("objtransport.drivers")


def start(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
    """Run ``coro`` now until it waits, then on from the futures it waits on."""
    _step(coro, loop, None)


def _step(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop,
          _: object) -> None:
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        return
    except Exception:
        log.exception("a write started at once failed")
        return
    resume = partial(_step, coro, loop)
    if waited is None:  # a bare yield (asyncio.sleep(0)): the next loop turn
        loop.call_soon(resume, None)
    else:
        waited.add_done_callback(resume)
