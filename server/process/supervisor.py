"""The supervisor: binds the listening sockets once, runs the worker processes that serve them,
and keeps them running. It serves no request itself.

- A worker that exits unexpectedly is replaced (with a back-off when they keep dying); one that
  leaves the heartbeat unanswered for --worker-healthcheck-timeout is killed and replaced.
- A worker that fails at the first start-up stops everything with its error (exit 2 or 3).
- SIGHUP, and a worker past --max-requests, replace workers one at a time: the new worker must
  be ready (imported, lifespan done, accepting) before the old one is told to drain, and a new
  worker that fails to start leaves the old ones serving.
- SIGTERM/SIGINT drain every worker, a second one stops them at once, as does SIGQUIT.
  SIGTTIN/SIGTTOU add/remove a worker. SIGHUP, SIGTTIN and SIGTTOU wait until the first
  start-up is over, and are ignored once stopping. --reload restarts the workers on file changes.
- --metrics-bind: the supervisor serves the sum of its workers' reports (observe/aggregate.py)
  and counts the workers it replaces.

A module longer than 400 lines: start-up, replacement, rolling restarts, scaling and shutdown all
act on the same set of workers under one lock, and read best together (the per-worker channel
is in handle.py).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from ..config import Config
from ..errors import LifespanFailure, StartupError
from ..observe.aggregate import Aggregate
from ..observe.metrics import NULL_METRICS, Counting, Metrics
from . import sdnotify
from .handle import Worker, describe_exit, messages
from .sockets import acquire_listeners

logger = logging.getLogger("plexicorn.error")

HEARTBEATS_PER_TIMEOUT = 4
# Back-off before replacing a worker, once more than one died within CRASH_WINDOW seconds.
CRASH_WINDOW = 30.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
# Beyond its graceful timeout (for requests, then for the lifespan shutdown), a draining worker is killed.
STOP_MARGIN = 5.0
# Once a worker exited, how long its last messages may take to be read.
EXIT_READ_GRACE = 0.5


class Supervisor:
    def __init__(self, app: str, config: Config) -> None:
        self.app = app
        self.config = config
        self.target = config.workers
        self.workers: list[Worker] = []
        self._lock = asyncio.Lock()  # one change of the set of workers at a time
        self._changed = asyncio.Event()  # a worker went: the keeper checks the count
        self._stop = asyncio.Event()
        self._stopping = False
        self._force = False
        self._crashes: collections.deque[float] = collections.deque()
        self._announced = False
        self._broken = False  # --reload: the code does not start; wait for the next change
        self._restart_again = False
        self._restarting = False
        self._deferred: list[Any] | None = []  # signal handlers held until the first start-up is over
        self._tasks: set[asyncio.Task] = set()
        self._env = {name: value for name, value in os.environ.items() if name not in sdnotify.SYSTEMD_VARIABLES}
        self._watcher: Any = None
        self.metrics: Metrics = Counting() if config.metrics_bind else NULL_METRICS  # worker restarts
        self._aggregate = Aggregate(self.metrics)
        self._metrics_endpoint: Any = None

    async def run(self) -> None:
        config = self.config
        if config.metrics_bind:
            # Before any worker starts: without prometheus_client, one ConfigError line.
            from ..observe.exposition import MetricsEndpoint
        if config.reload:
            from .reload import ReloadWatcher
            self._watcher = ReloadWatcher(config, self._files_changed)
        self.listeners = acquire_listeners(config)
        if config.metrics_bind:
            try:
                self._metrics_endpoint = await MetricsEndpoint.start(config, self._aggregate.snapshot)
            except BaseException:
                self.listeners.close()
                raise
        self._install_signal_handlers()
        try:
            logger.info("Supervisor (pid %d) starting %d worker(s)", os.getpid(), self.target)
            if self._watcher is not None:
                self._watcher.start()
            starting = asyncio.ensure_future(self._start_workers(self.target, initial=True))
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():  # stopped while starting: the workers are stopped below
                starting.cancel()
                return
            stop.cancel()
            starting.result()  # the first start-up error, if any
            sdnotify.notify("READY=1", f"STATUS={len(self.workers)} worker(s) serving")
            deferred, self._deferred = self._deferred or [], None
            for handler in deferred:
                handler()
            for job in (self._keep(), self._heartbeat(), sdnotify.keep_watchdog_fed()):
                self._spawn_task(job)
            await self._stop.wait()
        finally:
            await self._shutdown()

    # -- starting and stopping workers ------------------------------------------------------
    async def _spawn(self, slot: int) -> Worker:
        roles = self.listeners.roles()
        try:
            parent, child = socket.socketpair()
        except OSError as exc:  # out of file descriptors (EMFILE): the caller retries later
            raise StartupError(f"cannot start a worker process: {exc}") from None
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "plexicorn.process.worker", str(child.fileno()),
                pass_fds=[child.fileno(), *(fd for _, fd in roles)], stdin=subprocess.DEVNULL,
                env=self._env, process_group=0)  # terminal signals (Ctrl-C) reach the supervisor only
        except OSError as exc:
            parent.close()
            raise StartupError(f"cannot start a worker process: {exc}") from None
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = Worker(slot, process, writer, asyncio.get_running_loop().create_future())
        # Whoever waited for it has the error already (or was cancelled): no "never retrieved".
        worker.ready.add_done_callback(lambda ready: ready.cancelled() or ready.exception())
        announce, self._announced = not self._announced, True
        worker.send(app=self.app, config=dataclasses.asdict(self.config), listeners=roles, announce=announce)
        worker.watcher = self._spawn_task(self._watch(worker, reader, announce))
        self.workers.append(worker)
        return worker

    async def _watch(self, worker: Worker, reader: asyncio.StreamReader, announced: bool) -> None:
        """Follow one worker: its messages until it exits."""
        reading = asyncio.ensure_future(self._read(worker, reader))
        status = await worker.process.wait()
        # Its end of the socket may outlive it, held by a process it started: what it wrote
        # before exiting is read at once, the end of the stream is not waited for.
        await asyncio.wait({reading}, timeout=EXIT_READ_GRACE)
        reading.cancel()
        worker.channel.close()
        self.workers.remove(worker)
        self._aggregate.retire(worker)
        if not worker.ready.done():
            if announced:
                self._announced = False  # the next worker tells the start-up story
            worker.ready.set_exception(worker.failure or StartupError(
                f"worker {worker.slot} {describe_exit(status)} during start-up"))
        elif worker.stopping:
            logger.info("%s stopped", worker)
        elif not self._stopping:
            logger.error("%s %s: starting another", worker, describe_exit(status))
            self.metrics.worker_restarted("unresponsive" if worker.hung else "exited")
            self._crashes.append(time.monotonic())
        self._changed.set()

    async def _read(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        try:
            async for message in messages(reader):
                worker.unanswered = None
                if message.get("ready"):
                    logger.info("%s ready", worker)
                    worker.ready.set_result(None)
                elif "failed" in message:
                    error = LifespanFailure if message["failed"] == "lifespan" else StartupError
                    worker.failure = error(message["message"])
                elif "recycle" in message and not worker.replacing:
                    logger.info("%s served %d requests (--max-requests): replacing it", worker, message["recycle"])
                    self._spawn_task(self._replace(worker, "max_requests"))
                elif "metrics" in message and not self._aggregate.update(worker, message["metrics"]):
                    raise ValueError("metrics that are not a snapshot")
        except ValueError as exc:  # not JSON, or a line beyond the reader's limit: no worker of ours
            logger.error("%s sent a malformed message (%s): killing it", worker, exc)
            worker.hung = True
            worker.signal(signal.SIGKILL)

    async def _start_workers(self, count: int, *, initial: bool = False) -> bool:
        """Start `count` workers at once and wait until all serve. On a failure the others are
        stopped; the error is raised at the first start-up (or logged and False returned)."""
        slots = self._free_slots(count)
        workers: list[Worker] = []
        error: BaseException | None
        try:
            workers.append(await self._spawn(slots[0]))
            if self.config.dev_cert:
                # The first one creates the development certificates; the others would race it.
                await asyncio.wait({asyncio.shield(workers[0].ready)})
            for slot in slots[1:]:
                workers.append(await self._spawn(slot))
        except (OSError, StartupError) as exc:  # a process could not be started: as if it failed
            error = exc
        else:
            error = await self._first_failure(workers)
            if error is None:
                return True
        for worker in workers:
            self._retire(worker)
        await self._wait_exits(workers)
        if initial and not self.config.reload:
            raise error
        if self.config.reload:
            logger.error("%s; waiting for the next change (--reload)", error)
            self._broken = True
        else:
            logger.error("a new worker failed to start: %s", error)
        return False

    @staticmethod
    async def _first_failure(workers: list[Worker]) -> BaseException | None:
        """Wait until every worker serves or one fails to start; its error. One the supervisor
        stopped meanwhile (SIGTTOU, --reload) failed nothing."""
        pending = {asyncio.ensure_future(asyncio.shield(worker.ready)): worker for worker in workers}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.exception() is not None and not pending[task].stopping:
                        return task.exception()
                    del pending[task]
            return None
        finally:
            for task in pending:
                task.cancel()

    def _retire(self, worker: Worker, signum: int = signal.SIGTERM) -> None:
        """Tell a worker to drain (SIGTERM) or stop at once (SIGQUIT); kill it if it overstays."""
        worker.stopping = True
        worker.signal(signum)
        limit = 2 * self.config.graceful_timeout + STOP_MARGIN
        asyncio.get_running_loop().call_later(limit, worker.signal, signal.SIGKILL)

    async def _wait_exits(self, workers: list[Worker]) -> None:
        watchers = [worker.watcher for worker in workers if worker.watcher is not None]
        if watchers:
            await asyncio.wait(watchers)

    async def _replace(self, old: Worker, reason: str) -> bool:
        """Start old's successor, and drain old once the successor serves (`reason`: for the metrics)."""
        old.replacing = True
        async with self._lock:
            if old.stopping or old not in self.workers:
                return True
            try:
                new = await self._spawn(old.slot)
                await asyncio.shield(new.ready)
            except (OSError, StartupError, LifespanFailure) as exc:
                logger.error("%s keeps serving: its replacement failed to start: %s", old, exc)
                old.replacing = False
                return False
            self._retire(old)
            self.metrics.worker_restarted(reason)
            return True

    def _free_slots(self, count: int) -> list[int]:
        taken = {worker.slot for worker in self.workers if not worker.stopping}
        return [slot for slot in range(1, len(taken) + count + 1) if slot not in taken][:count]

    def _serving_count(self) -> int:
        return sum(1 for worker in self.workers if not worker.stopping)

    # -- keeping them running ------------------------------------------------------------------
    async def _keep(self) -> None:
        """Replace workers that went, until there are `target` again."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            while not self._broken and self._serving_count() < self.target:
                await asyncio.sleep(self._backoff())
                async with self._lock:
                    missing = self.target - self._serving_count()
                    if missing > 0 and not self._broken and not await self._start_workers(missing):
                        self._crashes.append(time.monotonic())

    def _backoff(self) -> float:
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > CRASH_WINDOW:
            self._crashes.popleft()
        return 0.0 if len(self._crashes) <= 1 else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(self._crashes) - 2))

    async def _heartbeat(self) -> None:
        timeout = self.config.worker_healthcheck_timeout
        interval = timeout / HEARTBEATS_PER_TIMEOUT
        beat = 0
        while True:
            planned = time.monotonic() + interval
            await asyncio.sleep(interval)
            beat += 1
            now = time.monotonic()
            if now - planned > interval:
                # This process was paused (SIGSTOP, a frozen container): the answers wait unread,
                # so nothing is timed across the pause.
                for worker in self.workers:
                    worker.unanswered = None
                continue
            for worker in list(self.workers):
                if not worker.serving:
                    continue  # starting (the import may take long) or draining (killed if it overstays)
                if worker.hung:
                    continue  # killed; its exit is on its way
                if worker.unanswered is not None and now - worker.unanswered >= timeout:
                    logger.error("%s did not answer the heartbeat for %.1f s: killing it", worker, now - worker.unanswered)
                    worker.hung = True
                    worker.signal(signal.SIGKILL)
                else:
                    if worker.unanswered is None:
                        worker.unanswered = now
                    worker.send(ping=beat)

    # -- signals --------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGTERM: self._request_stop, signal.SIGINT: self._request_stop,
                    signal.SIGQUIT: self._stop_now, signal.SIGHUP: self._settled("SIGHUP", self._request_restart),
                    signal.SIGTTIN: self._settled("SIGTTIN", lambda: self._scale(+1)),
                    signal.SIGTTOU: self._settled("SIGTTOU", lambda: self._scale(-1))}
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)

    def _settled(self, name: str, handler: Any) -> Any:
        """`handler`, run once the first start-up is over (it would change the workers being
        started), and not once stopping (the stopping server replaces none)."""
        def settled() -> None:
            if self._stop.is_set():
                logger.warning("%s ignored: the server is stopping", name)
            elif self._deferred is not None:
                self._deferred.append(handler)
            else:
                handler()
        return settled

    def _request_stop(self) -> None:
        if self._stop.is_set():
            self._stop_now()
        self._stop.set()

    def _stop_now(self) -> None:
        logger.info("stopping now")
        self._force = True
        self._stop.set()
        for worker in self.workers:
            self._retire(worker, signal.SIGQUIT)

    def _request_restart(self) -> None:
        if self._restarting:
            self._restart_again = True  # after the one under way: a release may have landed meanwhile
        else:
            self._spawn_task(self._rolling_restart())

    def _scale(self, change: int) -> None:
        if self.target + change < 1:
            logger.warning("SIGTTOU ignored: the last worker stays")
            return
        self.target += change
        logger.info("%s a worker: %d wanted", "Adding" if change > 0 else "Removing", self.target)
        if change < 0:
            serving = [worker for worker in self.workers if not worker.stopping]
            if len(serving) > self.target:
                self._retire(serving[-1])
        self._changed.set()

    async def _rolling_restart(self) -> None:
        self._restarting = True
        try:
            while True:
                self._restart_again = False
                sdnotify.reloading()
                old = [worker for worker in self.workers if not worker.stopping]
                logger.info("Rolling restart: replacing %d worker(s) one at a time", len(old))
                for replaced, worker in enumerate(old):
                    if not await self._replace(worker, "restart"):
                        logger.error("Rolling restart stopped after %d of %d worker(s)", replaced, len(old))
                        break
                else:
                    logger.info("Rolling restart complete: %d worker(s) replaced", len(old))
                sdnotify.notify("READY=1", f"STATUS={self._serving_count()} worker(s) serving")
                if not self._restart_again:
                    return
        finally:
            self._restarting = False

    def _files_changed(self, paths: list[str]) -> None:
        logger.info("Changed: %s; restarting the workers", ", ".join(os.path.relpath(path) for path in paths[:3])
                    + (f" and {len(paths) - 3} more" if len(paths) > 3 else ""))
        self._spawn_task(self._reload())

    async def _reload(self) -> None:
        """--reload: stop the workers, then start fresh ones (a broken edit leaves none running)."""
        async with self._lock:
            old = [worker for worker in self.workers if not worker.stopping]
            for worker in old:
                self._retire(worker)
                self.metrics.worker_restarted("reload")
            await self._wait_exits(old)
            self._broken = False
            await self._start_workers(self.target)

    # -- the end --------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stopping = True
        sdnotify.notify("STOPPING=1")
        if self._watcher is not None:
            self._watcher.stop()
        for task in list(self._tasks):
            if task not in {worker.watcher for worker in self.workers}:
                task.cancel()
        self.listeners.close()  # the workers hold their own copies until they stop accepting
        workers = list(self.workers)
        for worker in workers:
            if not worker.stopping:
                self._retire(worker, signal.SIGQUIT if self._force else signal.SIGTERM)
        await self._wait_exits(workers)
        if self._metrics_endpoint is not None:
            await self._metrics_endpoint.close()

    def _spawn_task(self, job: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervisor task failed", exc_info=task.exception())


def supervise(app: str, config: Config) -> None:
    """Run the supervisor until SIGTERM/SIGINT; raise the first worker's start-up error."""
    asyncio.run(Supervisor(app, config).run())
