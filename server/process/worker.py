"""A worker process: `python -m plexicorn.process.worker FD`, started by the supervisor.

FD is one end of a socket pair to the supervisor. Over it, one JSON object per line: first the
supervisor sends the spec (app, settings, listening sockets' file descriptors); then the worker
answers `{"ready": true}` once serving, or `{"failed": ..., "message": ...}` and exits with the
status the single-process server would (2, or 3 for a failed lifespan startup); it answers each
`{"ping": N}` with `{"pong": N}` from its event loop, so that a blocked loop goes unanswered;
it asks `{"recycle": N}` after --max-requests; with --metrics-bind it reports `{"metrics": {...}}`
(its snapshot, observe/metrics.py) every second while it changes, and once more as it stops. SIGTERM drains it (as a single server),
SIGQUIT stops it at once, and the supervisor's end closing (the supervisor died) drains it too.

Each worker imports the app itself, fresh, so a release switched under the same path is served
by the workers started after the switch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import sys
from typing import Any, NoReturn

from ..asgi.http import ASGIApp
from ..config import Config, ConfigError
from ..errors import LifespanFailure, StartupError
from ..importer import load_app
from ..logs import configure_logging
from ..observe.aggregate import REPORT_INTERVAL
from ..server import Server, _loop_factory
from .sockets import Listeners

logger = logging.getLogger("plexicorn.error")

EXIT_STARTUP = 2
EXIT_LIFESPAN = 3


class Worker:
    def __init__(self, spec: dict[str, Any], control: socket.socket) -> None:
        self.spec = spec
        self.config = Config(**spec["config"])
        self.control = control
        self.writer: asyncio.StreamWriter | None = None
        self.requests = 0

    def send(self, **message: Any) -> None:
        assert self.writer is not None
        if not self.writer.is_closing():
            self.writer.write(json.dumps(message).encode() + b"\n")

    async def run(self) -> int:
        reader, self.writer = await asyncio.open_unix_connection(sock=self.control)
        try:
            server = Server(self._app(), self.config)
            server.listeners = Listeners.from_roles(self.spec["listeners"])
            server.serve_metrics = False  # the supervisor serves the sum of its workers' reports
            server.owns_process = True
            serving = asyncio.ensure_future(server.serve())
            started = asyncio.ensure_future(server.started.wait())
            await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                started.cancel()
                await serving  # raises what stopped the start-up
                return 0  # stopped before it served (SIGTERM while starting)
        except StartupError as exc:
            return await self._failed("startup", str(exc), EXIT_STARTUP)
        except LifespanFailure as exc:
            return await self._failed("lifespan", str(exc), EXIT_LIFESPAN)
        logging.getLogger("plexicorn.error").setLevel(logging.NOTSET)  # start-up over: log as usual
        self.send(ready=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self._stop_now, server)
        commands = loop.create_task(self._commands(reader, server))
        reports = loop.create_task(self._report(server)) if server.metrics.enabled else None
        try:
            await serving
        finally:
            commands.cancel()
            if reports is not None:
                reports.cancel()
        if reports is not None:  # the last numbers, drained ones included
            self.send(metrics=server.metrics.snapshot())
            try:
                await self.writer.drain()  # type: ignore[union-attr]
            except ConnectionError:
                pass  # the supervisor is gone: nobody to tell
        return 0

    async def _report(self, server: Server) -> None:
        last: dict[str, float] = {}
        while True:
            snapshot = server.metrics.snapshot()
            if snapshot != last:
                self.send(metrics=snapshot)
                last = snapshot
            await asyncio.sleep(REPORT_INTERVAL)

    def _app(self) -> ASGIApp:
        config = self.config
        app = load_app(self.spec["app"], app_dir=config.app_dir, factory=config.factory)
        if not config.max_requests:
            return app
        limit = config.max_requests + random.randint(0, config.max_requests_jitter)

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "lifespan":
                self.requests += 1
                if self.requests == limit:
                    self.send(recycle=self.requests)  # the supervisor starts a replacement, then drains us
            await app(scope, receive, send)
        return counted

    @staticmethod
    def _stop_now(server: Server) -> None:
        if not server.stopping:
            server.request_shutdown()
        server.request_shutdown()  # the second request: at once

    async def _failed(self, kind: str, message: str, status: int) -> int:
        self.send(failed=kind, message=message)
        assert self.writer is not None
        await self.writer.drain()
        return status

    async def _commands(self, reader: asyncio.StreamReader, server: Server) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "ping" in message:
                    self.send(pong=message["ping"])
        except ConnectionError:  # our `ready` already met a closed end
            pass
        logger.warning("the supervisor is gone: stopping")
        if not server.stopping:  # a second request would cut short the draining under way
            server.request_shutdown()


def main() -> NoReturn:
    signal.signal(signal.SIGQUIT, lambda *_: os._exit(0))  # stop at once, even while importing
    control = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(control.fileno(), False)  # the app's children must not keep it open
    with control.makefile("rb") as stream:  # the spec: one line, before the event loop exists
        line = stream.readline()
    if not line:
        sys.exit(0)  # the supervisor went before it could tell us anything
    spec = json.loads(line)
    config = Config(**spec["config"])
    try:
        # Text lines name the worker's pid (every worker writes to the same stderr or file).
        configure_logging(config, worker=True)
    except ConfigError as exc:  # checked by the supervisor first; a file may have gone since
        control.sendall(json.dumps({"failed": "startup", "message": str(exc)}).encode() + b"\n")
        sys.exit(EXIT_STARTUP)
    if not spec["announce"]:
        # One worker tells the start-up story (listening addresses, certificates); the others
        # keep quiet unless something is wrong.
        logging.getLogger("plexicorn.error").setLevel(logging.WARNING)
    try:
        loop_factory = _loop_factory(config.loop)
    except StartupError as exc:  # `--loop uvloop` without uvloop
        control.sendall(json.dumps({"failed": "startup", "message": str(exc)}).encode() + b"\n")
        sys.exit(EXIT_STARTUP)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        sys.exit(runner.run(Worker(spec, control).run()))


if __name__ == "__main__":
    main()
