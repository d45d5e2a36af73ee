"""Running a server: start-up, serving, graceful shutdown; `serve()` and `run()`."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import threading
from typing import Any

from .asgi.asgi2 import ASGI2App
from .asgi.http import ASGIApp
from .asgi.lifespan import Lifespan
from .asgi.redirect import redirect_to_https
from .config import Config, ConfigError
from .errors import StartupError
from .importer import detect_interface, load_app
from .observe.metrics import NULL_METRICS, Counting, Metrics
from .logs import configure_unless_configured
from .process.collector import schedule_collections
from .process.sdnotify import keep_watchdog_fed, notify
from .process.sockets import Listeners, acquire_listeners
from .runtime.context import Counters, ServerContext
from .runtime.listener import start_listening
from .wsgi.app import WSGIApp

logger = logging.getLogger("plexicorn.error")

# Seconds between seeing certificate files change and reloading them.
RELOAD_SETTLE = 0.5


def adapt_app(app: Any, config: Config, *, name: str | None = None) -> tuple[ASGIApp, str]:
    """The app as the ASGI 3 callable the connections call, and the lifespan mode for it."""
    interface = detect_interface(app, config.interface, name=name, factory=config.factory)
    if interface == "asgi2":
        return ASGI2App(app), config.lifespan
    if interface == "wsgi":
        if config.lifespan == "on":
            raise StartupError("--lifespan on: a WSGI app has no lifespan protocol (use auto or off)")
        # PEP 3333's wsgi.multiprocess: whether other processes serve the same app.
        multiprocess = config.supervised
        return WSGIApp(app, threads=config.wsgi_threads, multiprocess=multiprocess), "off"
    return app, config.lifespan


class Server:
    """One Plexicorn server: its listeners, connections and lifespan.

    `await server.serve()` runs until `request_shutdown()` (or SIGINT/SIGTERM when
    it owns the main thread), then shuts down gracefully.
    """

    def __init__(self, app: ASGIApp | str, config: Config | None = None) -> None:
        self.config = config or Config()
        self.app = app
        self.context: ServerContext | None = None
        self._app: ASGIApp | None = None  # the app as served (a WSGI app wrapped)
        self.addresses: list[tuple[str, Any]] = []  # (scheme, sockname) per listening socket
        self.started = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._lifespan: Lifespan | None = None
        self._stop: asyncio.Event | None = None
        self._force = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._contexts: list[ServerContext] = []
        self._watch_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        # Sockets acquired elsewhere (a worker's, from its supervisor); else acquired at start-up.
        self.listeners: Listeners | None = None
        # What --metrics-bind exposes: counted here, served here unless a supervisor serves the
        # sum of its workers' (a worker sets serve_metrics to False and reports to it).
        self.metrics: Metrics = Counting() if self.config.metrics_bind else NULL_METRICS
        self.serve_metrics = True
        # Serving is the process's whole purpose (the command, run(), a worker): it may tune the
        # interpreter (--gc-threshold). Not so when embedded with serve() in someone's program.
        self.owns_process = False
        self._metrics_endpoint: Any = None

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        restore = self._install_signal_handlers()
        try:
            await self.startup()
            notify("READY=1")  # a no-op unless a service manager started this process
            watchdog = self._loop.create_task(keep_watchdog_fed())
            try:
                await self._stop.wait()
            finally:
                notify("STOPPING=1")
                watchdog.cancel()
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

    @property
    def stopping(self) -> bool:
        """Whether a shutdown was requested."""
        return self._stop is not None and self._stop.is_set()

    def _on_stop_request(self) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            logger.info("stopping now")
            self._force = True
            self._abort_all()
        self._stop.set()

    @property
    def counters(self) -> Counters:
        """Handshake failures, certificate reloads... (zeros before start-up)."""
        return self.context.counters if self.context is not None else Counters()

    async def startup(self) -> None:
        config = self.config
        app = self.app
        serve_metrics = config.metrics_bind is not None and self.serve_metrics
        if serve_metrics:
            # Before anything starts: without prometheus_client, one ConfigError line.
            from .observe.exposition import MetricsEndpoint
        name = app if isinstance(app, str) else None
        if isinstance(app, str):
            app = load_app(app, app_dir=config.app_dir, factory=config.factory)
        app, lifespan = adapt_app(app, config, name=name)
        self._app = app
        tls = build_tls(config)
        state: dict[str, Any] = {}
        self.context = ServerContext(app=app, config=config, state=state, tls=tls, metrics=self.metrics)
        # The fields every response gets, computed once (asgi/headers.py adds them).
        self.context.response_headers = config.default_headers
        self.context.tls_response_headers = list(self.context.response_headers)
        if tls is not None and config.hsts:
            self.context.tls_response_headers.append((b"strict-transport-security", b"max-age=%d" % config.hsts))
        self._contexts = [self.context]
        self._lifespan = Lifespan(app, lifespan, state)
        listeners = self.listeners if self.listeners is not None else acquire_listeners(config)
        sockets = [(self.context, sock) for sock in listeners.app]
        try:
            if config.redirect_http is not None:
                https_port = next((sock.getsockname()[1] for _, sock in sockets
                                   if sock.family != socket.AF_UNIX), None)
                if https_port is None:
                    raise StartupError("--redirect-http needs an HTTPS --bind HOST:PORT to redirect to")
                redirect = ServerContext(app=redirect_to_https(https_port), config=config, metrics=self.metrics,
                                         admission=self.context.admission,  # one limit per process
                                         response_headers=self.context.response_headers)
                self._contexts.append(redirect)
                sockets += [(redirect, sock) for sock in listeners.redirect]
            if serve_metrics:
                self._metrics_endpoint = await MetricsEndpoint.start(config, self.metrics.snapshot)
            await self._lifespan.startup()
            if self.owns_process:
                schedule_collections(config.gc_threshold)
            for context, sock in sockets:
                self._servers.append(await start_listening(context, sock))
        except BaseException:
            listeners.close()
            if self._metrics_endpoint is not None:
                await self._metrics_endpoint.close()
                self._metrics_endpoint = None
            raise
        for context, sock in sockets:
            scheme = "https" if context.tls is not None else "http"
            if context is not self.context:
                protocols = "redirects to https"
            elif context.tls is not None:
                protocols = ", ".join(config.alpn)
            else:
                protocols = "h2c" if config.http == "2" else "http/1.1, h2c" if config.h2c else "http/1.1"
            name = sock.getsockname()
            self.addresses.append((scheme, name))
            logger.info("Listening on %s (%s)", _url(scheme, sock.family, name), protocols)
        if tls is not None and config.tls_reload_interval > 0:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_certificates(tls))
        self.started.set()

    async def reload_tls(self) -> bool:
        """Read the certificate files again (SIGHUP does this); on error keep serving the current ones."""
        context = self.context
        if context is None or context.tls is None:
            return False
        from .tls import TLSConfigError

        def reload() -> None:  # file and OpenSSL work: off the event loop
            if self.config.dev_cert:
                refresh_dev_certificate(self.config)
            context.tls.reload()  # builds the new contexts, then swaps them in at once

        try:
            await asyncio.to_thread(reload)
        except TLSConfigError as exc:
            context.counters.tls_reload_failures += 1
            logger.error("TLS reload failed, still serving the previous certificates: %s", exc)
            return False
        context.counters.tls_reloads += 1
        logger.info("TLS certificates reloaded: new connections use them")
        return True

    def _reload_tls_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_tls())
        self._background.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._background.discard)

    async def _watch_certificates(self, tls: Any) -> None:
        while True:
            await asyncio.sleep(self.config.tls_reload_interval)
            if tls.files_changed():
                # A renewal replaces the certificate and the key one after the other: give the
                # second file a moment, rather than reload a mismatched pair and log a false error.
                await asyncio.sleep(min(self.config.tls_reload_interval, RELOAD_SETTLE))
                await self.reload_tls()

    async def shutdown(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        for server in self._servers:
            server.close()
        contexts = self._contexts
        open_connections = sum(len(context.connections) for context in contexts)
        if open_connections:
            logger.info("Shutting down: %d open connection(s), up to %.0f s to finish",
                        open_connections, self.config.graceful_timeout)
        else:
            logger.info("Shutting down")
        for context in contexts:
            context.shutting_down = True
            for connection in list(context.connections):
                connection.shutdown()
        try:
            await asyncio.wait_for(self._drained(), self.config.graceful_timeout)
        except TimeoutError:
            logger.warning("graceful timeout: closing %d connection(s)",
                           sum(len(context.connections) for context in contexts))
        self._abort_all()
        await asyncio.sleep(0)  # let aborted transports report connection_lost
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._lifespan is not None and not self._force:
            await self._lifespan.shutdown(self.config.graceful_timeout)
        if isinstance(self._app, WSGIApp):
            self._app.shutdown()
        if self._metrics_endpoint is not None:  # last: the shutdown's own numbers can be scraped
            await self._metrics_endpoint.close()
            self._metrics_endpoint = None

    async def _drained(self) -> None:
        while any(context.connections or context.tasks for context in self._contexts):
            tasks = [task for context in self._contexts for task in context.tasks]
            if tasks:
                await asyncio.wait(tasks, timeout=0.1)
            else:
                await asyncio.sleep(0.01)

    def _abort_all(self) -> None:
        for context in self._contexts:
            for connection in list(context.connections):
                connection.abort()
            for task in list(context.tasks):
                task.cancel()

    def _install_signal_handlers(self):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        installed = []
        handlers = {signal.SIGINT: self.request_shutdown, signal.SIGTERM: self.request_shutdown}
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = self._reload_tls_soon
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)
        return restore


def build_tls(config: Config) -> Any:
    """The server's `plexicorn.tls.ServerTLS`, or None for cleartext; errors as StartupError."""
    if not config.tls:
        return None
    # Imported here so that cleartext-only servers never load cryptography.
    from .tls import CertificatePair, ServerTLS, TLSConfigError
    try:
        default = None
        if config.dev_cert:
            dev = refresh_dev_certificate(config)
            default = CertificatePair(str(dev.cert), str(dev.key))
        elif config.certfile:
            default = CertificatePair(config.certfile, config.keyfile)
        return ServerTLS(
            default=default,
            by_name={name: CertificatePair(*files) for name, files in config.sni_certificates.items()},
            sni_dir=config.sni_dir, password=config.keyfile_password, alpn_protocols=config.alpn,
            min_version=ssl.TLSVersion.TLSv1_3 if config.tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2,
            ciphers=config.tls_ciphers, ca_certs=config.ca_certs, client_cert=config.client_cert)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None


def refresh_dev_certificate(config: Config) -> Any:
    """Create the development CA and leaf, or reuse them, renewing the leaf when due."""
    from .tls import ensure_dev_certificate, trust_hint
    dev = ensure_dev_certificate(config.certs_dir)
    if dev.ca_created:
        logger.info("Created a development CA: %s", dev.ca_cert)
    if dev.leaf_created:
        logger.info("Issued a development certificate for localhost: %s", dev.cert)
    port = next((bind.port for bind in config.binds if bind.port), 8443)
    logger.info("Development CA: %s; %s", dev.ca_cert, trust_hint(dev.ca_cert, url=f"https://localhost:{port}/"))
    return dev


def _url(scheme: str, family: int, name: Any) -> str:
    if family == socket.AF_UNIX:
        return f"{scheme}+unix:{name}"
    host, port = name[0], name[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(app: ASGIApp | str, config: Config | None = None) -> None:
    """Serve `app` until SIGINT/SIGTERM (or cancellation). For use inside a running loop.
    Sets up logging as the command does unless the process has handlers already."""
    config = config or Config()
    configure_unless_configured(config)
    await Server(app, config).serve()


def run(app: ASGIApp | str, config: Config | None = None, **settings: Any) -> None:
    """Serve `app` in a new event loop until interrupted: `plexicorn.run("main:app", dev_cert=True)`."""
    if config is None:
        config = Config(**settings)
    elif settings:
        raise TypeError("pass either a Config or keyword settings, not both")
    configure_unless_configured(config)  # as the command does: "Listening on ...", the dev CA's path
    if config.supervised:
        if not isinstance(app, str):
            raise ConfigError("--workers, --reload and --max-requests need APP as MODULE:ATTRIBUTE: "
                              "each worker process imports it")
        from .process.supervisor import supervise
        supervise(app, config)
        return
    loop_factory = _loop_factory(config.loop)
    server = Server(app, config)
    server.owns_process = True
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(server.serve())


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
