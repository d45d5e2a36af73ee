"""Fixtures: a real Plexicorn server on 127.0.0.1:<ephemeral>, and TLS material from trustme."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import trustme

from plexicorn import Config, Server

START_TIMEOUT = 10.0
# The HTTP/1.1 parser of the servers tests start (`--http1-parser`): h11, the reference, unless
# PLEXICORN_TEST_HTTP=python or httptools (CI runs the HTTP/1.1 tests once more with each).
HTTP1_PARSER = os.environ.get("PLEXICORN_TEST_HTTP", "h11")


class RunningServer:
    """A Plexicorn server running its own event loop in a background thread."""

    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config
        self.server = Server(app, config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plexicorn-test-server", daemon=True)

    def start(self) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError("server did not start")
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(self.server.serve())
            started = asyncio.ensure_future(self.server.started.wait())
            await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test through start()/stop()
            self.error = exc
        finally:
            self._ready.set()

    @property
    def port(self) -> int:
        return self.server.addresses[0][1][1]

    @property
    def tls(self) -> bool:
        return self.config.tls

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def call(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the server's loop and return its result (for inspecting state)."""
        assert self.loop is not None
        async def wrapper() -> Any:
            return function()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(5)

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread.is_alive():
            self.server.request_shutdown()
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.server.request_shutdown()  # second request: stop at once
                self._thread.join(5)
        assert not self._thread.is_alive(), "server thread did not stop"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certfile, keyfile) for localhost, 127.0.0.1 and ::1, signed by the session CA."""
    directory = tmp_path_factory.mktemp("tls")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def verify(ca: trustme.CA) -> ssl.SSLContext:
    """For httpx's `verify=`: trusts the session CA (httpx sets ALPN itself)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> Callable[..., ssl.SSLContext]:
    def make(alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.set_alpn_protocols(list(alpn))
        return context
    return make


@pytest.fixture
def serve(tls_files: tuple[str, str]) -> Iterator[Callable[..., RunningServer]]:
    """Start servers: `serve(app, tls=True, root_path="/api")`; all are stopped after the test."""
    servers: list[RunningServer] = []

    def start(app: Any, *, tls: bool = False, **settings: Any) -> RunningServer:
        settings.setdefault("bind", ("127.0.0.1:0",))
        settings.setdefault("access_log", False)
        settings.setdefault("http1_parser", HTTP1_PARSER)
        if tls:
            settings.setdefault("certfile", tls_files[0])
            settings.setdefault("keyfile", tls_files[1])
        running = RunningServer(app, Config(**settings))
        servers.append(running)
        return running.start()

    yield start
    for running in servers:
        running.stop()


def connect(running: RunningServer, ssl_context: ssl.SSLContext | None = None,
            timeout: float = 10.0) -> socket.socket:
    """A raw client socket to the server (TLS-wrapped when a context is given)."""
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=timeout)
    if ssl_context is not None:
        sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
    return sock


# Ports free_port() hands out: below the kernel's ephemeral range (32768 and up on Linux), so
# that no client socket's local port takes one before the server binds it, and a block per
# pytest-xdist worker, so that two workers never hand out the same one.
_PORT_BASE, _PORT_BLOCK = 16000, 1500


def _port_numbers() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... under xdist
    index = int(worker[2:]) + 1 if worker[:2] == "gw" and worker[2:].isdigit() else 0
    start = _PORT_BASE + index % 10 * _PORT_BLOCK
    while True:
        yield from range(start, start + _PORT_BLOCK)


_PORTS = _port_numbers()


def free_port() -> int:
    """A port on 127.0.0.1 nothing is bound to now, and that no other test of this run gets."""
    for _ in range(_PORT_BLOCK):
        port = next(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken, or still in TIME_WAIT from an earlier test
            return port
    raise RuntimeError(f"no free port in {_PORT_BLOCK} tries")


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """The access-log lines so far (plexicorn.access at INFO, from the server's thread)."""
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("plexicorn.access"), "disabled", False)
    caplog.set_level(logging.INFO, logger="plexicorn.access")
    return lambda: [record.getMessage() for record in caplog.records if record.name == "plexicorn.access"]
