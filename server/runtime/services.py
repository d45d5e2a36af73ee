"""The event-loop services connections use, handed to them instead of taken from asyncio.

Protocol objects never call `asyncio.get_running_loop()`: they get a `Runtime` through their
`ServerContext`. Production uses `Runtime` over the running loop; a test can pass a runtime
whose timers it fires by hand and drive a protocol with a fake transport, no socket involved.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from typing import Any, Callable, Coroutine

logger = logging.getLogger("plexicorn.error")

# Python 3.12+ can run a new task's first step inside the call that creates it (`eager_start`):
# a handler that never waits is done before the call returns, with no loop iteration between.
EAGER_TASKS = sys.version_info >= (3, 12)


class Runtime:
    """Timers, callbacks, futures and tracked tasks on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        # Running tasks, so that a shutdown can wait for or cancel them (the loop keeps only
        # weak references).
        self.tasks: set[asyncio.Task[Any]] = set()
        # Each task starts in a copy of the context the runtime was made in, never in that of
        # the callback that spawns it: a pipelined request is started from a callback the
        # previous app's task scheduled, and would otherwise see that app's context variables.
        self._base_context = contextvars.copy_context()
        self._on_done = self._task_done  # bound once: spawn() runs for every request
        # The loop's own methods stand in for those a subclass (a test's) does not replace:
        # these run several times per request, and uvloop's are C calls a wrapper would double.
        for name in ("call_soon", "call_later", "create_future", "time"):
            if getattr(type(self), name) is getattr(Runtime, name):
                setattr(self, name, getattr(self.loop, name))
        if not EAGER_TASKS and type(self).spawn_eager is Runtime.spawn_eager:
            self.spawn_eager = self.spawn  # type: ignore[method-assign]  # what it would call, without the call

    def time(self) -> float:
        return self.loop.time()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return self.loop.call_soon(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback, *args)

    def create_future(self) -> asyncio.Future[Any]:
        return self.loop.create_future()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a task the runtime tracks; an exception it ends with is logged, never left for
        asyncio's 'exception was never retrieved'."""
        task = self.loop.create_task(coroutine, context=self._base_context.copy())
        self.tasks.add(task)
        task.add_done_callback(self._on_done)
        return task

    def spawn_eager(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """`spawn`, but the coroutine runs at once, in this call, up to its first real wait
        (Python 3.12+; before, and under an app's own task factory, exactly `spawn`).

        The caller must be at a point where the coroutine may run: its state settled as after
        a return to the loop (the connections call it at the end of a read, never while
        handling one's events)."""
        loop = self.loop
        if not EAGER_TASKS or loop.get_task_factory() is not None:
            return self.spawn(coroutine)
        task = asyncio.Task(coroutine, loop=loop, eager_start=True,  # type: ignore[call-arg]
                            context=self._base_context.copy())
        if task.done():
            self._task_done(task)  # nothing to track, nor to wait for at shutdown
        else:
            self.tasks.add(task)
            task.add_done_callback(self._on_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("task %s failed", task.get_name(), exc_info=exc)
