"""Start a coroutine at once, in the caller's step, and drive it without a task.

``Eager.start(coro)`` runs ``coro`` up to its first real suspension right away (as Python
3.12's eager tasks do) and resumes it from a done-callback of each future it then waits on,
until it returns. Nothing awaits it and the caller's task cannot cancel it: it ends when
what it waits on ends, or when its owner (the :class:`Eager` of the link that started it)
is closed (:meth:`Eager.aclose`: the coroutine is closed where it waits).

The gRPC link writes a lone message this way (see :class:`~.grpc.GrpcLink`): handing it to
the writer task would cost a task hop (a wake-up, a loop turn and a task step) per message,
and awaiting ``call.write()`` in the sender's own task is not safe, as grpc.aio cancels the
whole call when the task awaiting a write is cancelled (a cancelled ``send_data`` would
drop the connection and everything queued on it).

Python 3.11 has no public way to do this (``loop.create_task`` always waits a loop turn
before the first step; eager tasks, ``asyncio.eager_task_factory`` and
``Task(eager_start=True)``, came in 3.12), so this drives the coroutine by hand, with the
coroutine protocol (``send``/``throw``) and the public ``Future`` API
(``add_done_callback``) only. What it relies on is how an ``await`` of an asyncio future
suspends: the future itself comes out of ``send()``, as ``Task`` expects it to. Whatever
else comes out, it does not guess: a bare yield (``asyncio.sleep(0)``) resumes the
coroutine in the next loop turn, as a task would; anything but a ``Future`` of this loop (a
future of another loop, another kind of awaitable, a bad yield) hands the coroutine to an
ordinary task (:func:`_hand_to_task`), which waits on that object exactly as if it had run
the coroutine from its start (or throws its ``RuntimeError`` into it). A task started that
way is the owner's (:attr:`Eager.tasks`) until it ends: ``aclose`` cancels and awaits it.

The coroutine must catch what it can raise (an exception escaping it is logged, a
``CancelledError`` is dropped). It runs outside any task until it is handed to one, so
nothing in it may need the current task (``asyncio.timeout``, ``asyncio.current_task()``):
its first step runs inside the caller's task, the others in no task at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from functools import partial
from typing import Any

__all__ = ["Eager"]

log = logging.getLogger("objtransport.drivers")

#: seconds ``aclose`` waits for the cancelled tasks to end (a task that ignores its
#: cancellation does not hold its link's end for ever)
CLOSE_WAIT = 5.0


class Eager:
    """The coroutines one owner (a link) started at once: those still driven by hand
    (``running``) and the tasks some were handed to (``tasks``); :meth:`aclose` ends them
    all when the owner stops."""

    __slots__ = ("loop", "running", "tasks", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: set[Coroutine[Any, Any, None]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now until it waits, then on from the futures it waits on."""
        if self.closed:  # the owner stopped: nothing starts any more
            coro.close()
            return
        self.running.add(coro)
        self._step(coro, None)

    def _step(self, coro: Coroutine[Any, Any, None], _: object) -> None:
        if coro not in self.running:  # closed by aclose while it waited
            return
        try:
            waited = coro.send(None)
        except StopIteration:
            self.running.discard(coro)
            return
        except asyncio.CancelledError:
            self.running.discard(coro)
            return
        except Exception:
            self.running.discard(coro)
            log.exception("a write started at once failed")
            return
        loop = self.loop
        if isinstance(waited, asyncio.Future) and waited.get_loop() is loop:
            waited.add_done_callback(partial(self._step, coro))
        elif waited is None:  # a bare yield (asyncio.sleep(0)): the next loop turn
            loop.call_soon(self._step, coro, None)
        else:
            self.running.discard(coro)
            self._hand_to_task(coro, waited)

    def _hand_to_task(self, coro: Coroutine[Any, Any, None], waited: object) -> None:
        """``coro`` yielded something other than a future of the loop: a task goes on with
        it, starting with what it yielded."""
        task = self.loop.create_task(_finish(_Rest(coro, waited)), name="objtransport-eager")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a write started at once failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """The owner stops: close the coroutines still waiting (``GeneratorExit`` where
        they wait: their ``finally`` blocks run), cancel the tasks and wait for them; what
        is started later is closed at once."""
        self.closed = True
        running, self.running = self.running, set()
        for coro in running:
            coro.close()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # cancelled: they end at their next step (bounded all the same)
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)


async def _finish(rest: _Rest) -> None:
    await rest


class _Rest:
    """What is left of a started coroutine, for a task: the object it yielded (the task
    waits on it, or throws its error in), then the coroutine itself, step by step."""

    __slots__ = ("coro", "waited")

    def __init__(self, coro: Coroutine[Any, Any, None], waited: object) -> None:
        self.coro = coro
        self.waited = waited

    def __await__(self) -> Generator[Any, None, None]:
        coro = self.coro
        waited = self.waited
        while True:
            try:
                yield waited
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task: pass it on
                step = partial(coro.throw, exc)
            else:
                step = partial(coro.send, None)
            try:
                waited = step()
            except StopIteration:
                return
