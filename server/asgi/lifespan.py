"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import LifespanFailure
from .http import ASGIApp

logger = logging.getLogger("plexicorn.error")


class Lifespan:
    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.supported = False
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._startup_failure: str | None = None
        self._shutdown_failure: str | None = None
        self._task: asyncio.Task | None = None
        self._app_error: BaseException | None = None

    async def startup(self) -> None:
        """Run the app's startup; raise LifespanFailure if it reports failure."""
        if self.mode == "off":
            return
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._startup_failure is not None:
            raise LifespanFailure(f"application startup failed: {self._startup_failure}")
        if not self.supported:
            if self.mode == "on":
                error = self._app_error
                detail = f"{type(error).__name__}: {error}" if error else "the app returned without answering"
                raise LifespanFailure(f"application startup failed: {detail}")
            logger.info("ASGI lifespan not supported by the app; going on without it")

    async def shutdown(self, timeout: float) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._shutdown_done.wait(), timeout)
        except TimeoutError:
            logger.error("application shutdown did not finish within %.1f s", timeout)
            self._task.cancel()
            return
        if self._shutdown_failure is not None:
            logger.error("application shutdown failed: %s", self._shutdown_failure)

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            # The server gave up on the app (shutdown timeout, loop closing after a failed
            # startup) and has already said so; a traceback of its own cancel is noise.
            raise
        except BaseException as exc:
            self._app_error = exc
            if self._startup_failure is not None or self._shutdown_failure is not None:
                # The app reported this failure itself (Starlette re-raises after doing so);
                # it reaches the user once, as LifespanFailure or the shutdown error.
                logger.debug("lifespan raised after reporting failure", exc_info=True)
            elif self.supported or self.mode == "on":
                logger.exception("Exception in ASGI lifespan")
            else:
                logger.debug("lifespan raised before startup completed", exc_info=True)
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.supported = True
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self.supported = True
            self._startup_failure = message.get("message", "") or "(no message)"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_failure = message.get("message", "") or "(no message)"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
