"""Running a server: start-up, serving, graceful shutdown; `serve()` and `run()`."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import threading
from typing import Any

from .asgi import ASGIApp
from .config import Config
from .context import ServerContext
from .errors import StartupError
from .importer import load_app
from .lifespan import Lifespan
from .listener import bind_socket, start_listening

logger = logging.getLogger("plexicorn.error")


class Server:
    """One Plexicorn server: its listeners, connections and lifespan.

    `await server.serve()` runs until `request_shutdown()` (or SIGINT/SIGTERM when
    it owns the main thread), then shuts down gracefully.
    """

    def __init__(self, app: ASGIApp | str, config: Config | None = None) -> None:
        self.config = config or Config()
        self.app = app
        self.context: ServerContext | None = None
        self.addresses: list[tuple[str, Any]] = []  # (scheme, sockname) per listening socket
        self.started = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._lifespan: Lifespan | None = None
        self._stop: asyncio.Event | None = None
        self._force = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        restore = self._install_signal_handlers()
        try:
            await self.startup()
            try:
                await self._stop.wait()
            finally:
                await self.shutdown()
        finally:
            restore()

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown; a second call stops at once. Safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_stop_request()
        else:
            loop.call_soon_threadsafe(self._on_stop_request)

    def _on_stop_request(self) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            logger.info("stopping now")
            self._force = True
            self._abort_all()
        self._stop.set()

    async def startup(self) -> None:
        config = self.config
        app = self.app
        if isinstance(app, str):
            app = load_app(app, app_dir=config.app_dir, factory=config.factory)
        ssl_context = build_ssl_context(config)
        state: dict[str, Any] = {}
        self.context = ServerContext(app=app, config=config, state=state)
        self._lifespan = Lifespan(app, config.lifespan, state)
        sockets = [sock for bind in config.binds for sock in bind_socket(bind, config.backlog)]
        try:
            await self._lifespan.startup()
            for sock in sockets:
                self._servers.append(await start_listening(self.context, sock, ssl_context))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        scheme = "https" if ssl_context is not None else "http"
        protocols = "h2, http/1.1" if ssl_context is not None else "http/1.1, h2c"
        for sock in sockets:
            name = sock.getsockname()
            self.addresses.append((scheme, name))
            logger.info("Listening on %s (%s)", _url(scheme, sock.family, name), protocols)
        self.started.set()

    async def shutdown(self) -> None:
        context = self.context
        for server in self._servers:
            server.close()
        if context is not None:
            context.shutting_down = True
            if context.connections:
                logger.info("Shutting down: %d open connection(s), up to %.0f s to finish",
                            len(context.connections), self.config.graceful_timeout)
            else:
                logger.info("Shutting down")
            for connection in list(context.connections):
                connection.shutdown()
            try:
                await asyncio.wait_for(self._drained(context), self.config.graceful_timeout)
            except TimeoutError:
                logger.warning("graceful timeout: closing %d connection(s)", len(context.connections))
            self._abort_all()
            await asyncio.sleep(0)  # let aborted transports report connection_lost
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._lifespan is not None and not self._force:
            await self._lifespan.shutdown(self.config.graceful_timeout)

    async def _drained(self, context: ServerContext) -> None:
        while context.connections or context.tasks:
            if context.tasks:
                await asyncio.wait(list(context.tasks), timeout=0.1)
            else:
                await asyncio.sleep(0.01)

    def _abort_all(self) -> None:
        context = self.context
        if context is None:
            return
        for connection in list(context.connections):
            connection.abort()
        for task in list(context.tasks):
            task.cancel()

    def _install_signal_handlers(self):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_shutdown)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)
        return restore


def build_ssl_context(config: Config) -> ssl.SSLContext | None:
    # Imported here so that cleartext-only servers never load cryptography.
    from .tls import TLSConfigError, create_server_context, ensure_dev_certificate, trust_hint
    try:
        if config.dev_cert:
            dev = ensure_dev_certificate(config.certs_dir)
            if dev.ca_created:
                logger.info("Created a development CA: %s", dev.ca_cert)
            if dev.leaf_created:
                logger.info("Issued a development certificate for localhost: %s", dev.cert)
            port = next((bind.port for bind in config.binds if bind.port), 8443)
            logger.info("Development CA: %s; %s", dev.ca_cert,
                        trust_hint(dev.ca_cert, url=f"https://localhost:{port}/"))
            return create_server_context(dev.cert, dev.key)
        if config.certfile:
            return create_server_context(config.certfile, config.keyfile)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None
    return None


def _url(scheme: str, family: int, name: Any) -> str:
    if family == socket.AF_UNIX:
        return f"{scheme}+unix:{name}"
    host, port = name[0], name[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(app: ASGIApp | str, config: Config | None = None) -> None:
    """Serve `app` until SIGINT/SIGTERM (or cancellation). For use inside a running loop."""
    await Server(app, config).serve()


def run(app: ASGIApp | str, config: Config | None = None, **settings: Any) -> None:
    """Serve `app` in a new event loop until interrupted: `plexicorn.run("main:app", dev_cert=True)`."""
    if config is None:
        config = Config(**settings)
    elif settings:
        raise TypeError("pass either a Config or keyword settings, not both")
    loop_factory = _loop_factory(config.loop)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(app, config))


def _loop_factory(name: str):  # type: ignore[no-untyped-def]
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise StartupError("--loop uvloop: uvloop is not installed (pip install 'plexicorn[uvloop]')") from None
        return None
    return uvloop.new_event_loop
