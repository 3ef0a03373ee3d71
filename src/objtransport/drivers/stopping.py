"""Waiting for a link's own task to end, by one deadline: :func:`stop_by`.

A link that runs a task of its own (gRPC's client reader, which waits for grpc to report
the end of its call) is waited for by its owner after a close or a loss
(:class:`~.base.StoppableLink`). The owner passes one deadline, in loop time, for the whole
wait (a close's own ``timeout``, or the supervisor's ``LINK_STOP_WAIT``): the task is
given until then to end by itself, then cancelled and given a grace to run its ``finally``
blocks: ``CANCEL_GRACE`` seconds, then up to ``CANCEL_TURNS`` loop turns more (so at
least as long as both, whichever is later).
Seconds alone were not robust to load: on a loaded loop (each turn slowed by other work)
a reader that needs a few turns to end would see the seconds pass within two or three
turns and be counted as left behind. The turns cost nothing in the normal case: a task
that ends does so within a turn or two, before the seconds run out; a stubborn one costs
``CANCEL_TURNS`` idle turns (microseconds) on top. No fixed waits are added up past the
deadline. A task that is still running after that (it swallowed the cancellation, or its
``finally`` waits on something) is not waited for any longer: :func:`stop_by` says so
(False) and logs it once, and the owner counts it as an error of the connection.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["CANCEL_GRACE", "CANCEL_TURNS", "LINK_TASK_LEFT", "stop_by"]

log = logging.getLogger(__name__)

#: seconds a task still running at its deadline is given, once cancelled, to end: its
#: ``finally`` blocks take a loop turn or two (a grpc channel's close does not wait)
CANCEL_GRACE = 0.05
#: loop turns it is given at least, after those seconds: on a loop slowed by load the
#: seconds pass within a few turns, fewer than its ``finally`` blocks may need
CANCEL_TURNS = 16
#: what the owner records (``Connection.record_error``) when a link's task outlived that
LINK_TASK_LEFT = "the link's own task still ran after it was cancelled"


async def stop_by(task: asyncio.Task[None], deadline: float) -> bool:
    """Wait for ``task`` to end until ``deadline`` (loop time), then cancel it and wait at
    most ``CANCEL_GRACE`` s, then up to ``CANCEL_TURNS`` loop turns, more. True if it
    ended; False if it still runs (logged at WARNING, by the task's name). Cancelled
    meanwhile (our owner stops), it cancels ``task`` too and re-raises."""
    if task.done():
        return True
    loop = task.get_loop()
    try:
        left = deadline - loop.time()
        if left > 0:
            await asyncio.wait([task], timeout=left)
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_GRACE)
            for _ in range(CANCEL_TURNS):  # whichever is later: the turns too
                if task.done():
                    break
                await asyncio.sleep(0)
    except asyncio.CancelledError:  # our owner stops: the task stops with it
        task.cancel()
        raise
    if task.done():
        return True
    log.warning("task %s still runs %g s and %d loop turns after it was cancelled; no "
                "longer waited for", task.get_name(), CANCEL_GRACE, CANCEL_TURNS)
    return False
