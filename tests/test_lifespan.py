"""The ASGI lifespan protocol: startup before serving, shutdown on stop, state, failures, modes."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import httpx
import pytest

from conftest import free_port
from plexicorn import Config, LifespanFailure, Server


async def _respond(send, body: bytes = b"ok"):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _serve_in_foreground(app, **settings) -> Server:
    """Run `Server.serve()` in asyncio.run on this thread, so its exception reaches the test."""
    server = Server(app, Config(**settings))
    asyncio.run(server.serve())
    return server


@pytest.fixture
def errors(caplog, monkeypatch):
    # An in-process CLI test may have configured `plexicorn` not to propagate to the root.
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="plexicorn.error")
    return lambda: [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR]


# -- the normal life of an app -------------------------------------------------------------------

def test_startup_and_shutdown_messages_come_in_order_around_the_requests(serve):
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            events.append("http")
            await _respond(send)

    running = serve(app)
    assert events == ["lifespan.startup"]
    assert httpx.get(running.url + "/").status_code == 200
    assert events == ["lifespan.startup", "http"]
    running.stop()
    assert events == ["lifespan.startup", "http", "lifespan.shutdown"]
    assert running.error is None


def test_request_that_arrives_during_startup_is_served_only_after_startup_completes():
    port = free_port()
    in_startup = threading.Event()
    release = threading.Event()
    seen: list[object] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            in_startup.set()
            await asyncio.to_thread(release.wait, 10)
            scope["state"]["ready"] = True
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        else:
            seen.append(scope["state"].get("ready"))
            await _respond(send)

    server = Server(app, Config(bind=(f"127.0.0.1:{port}",), access_log=False))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert in_startup.wait(5)
        assert not server.started.is_set()
        # The kernel may queue the connection, but no app call may happen before startup is done.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            release.set()
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert seen == [True]
    finally:
        release.set()
        server.request_shutdown()
        thread.join(10)
    assert not thread.is_alive()
    assert failure == []


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_startup_state_is_in_every_request_and_request_changes_do_not_leak(serve, h2c):
    database = object()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = database
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        assert state["db"] is database
        before = sorted(state)
        state["added_by_request"] = scope["path"]
        await _respond(send, ",".join(before).encode())

    running = serve(app)
    with httpx.Client(http1=not h2c, http2=h2c) as client:
        bodies = [client.get(running.url + f"/{i}") for i in range(3)]
    assert [(r.status_code, r.text) for r in bodies] == [(200, "db")] * 3
    assert running.server.context.state == {"db": database}


# -- failures ------------------------------------------------------------------------------------

def test_startup_failed_raises_lifespan_failure_with_the_apps_message_and_nothing_listens():
    port = free_port()
    received: list[str] = []

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        received.append((await receive())["type"])
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(LifespanFailure, match="no database"):
        _serve_in_foreground(app, bind=(f"127.0.0.1:{port}",))
    assert received == ["lifespan.startup"]  # and no lifespan.shutdown after a failed startup
    assert _refused(port)


def test_startup_failed_leaves_the_server_with_no_addresses():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    server = Server(app, Config(bind=("127.0.0.1:0",)))
    with pytest.raises(LifespanFailure, match="no database"):
        asyncio.run(server.serve())
    assert server.addresses == []
    assert not server.started.is_set()


def test_lifespan_on_with_an_app_that_raises_is_a_lifespan_failure():
    port = free_port()

    async def app(scope, receive, send):
        raise RuntimeError("lifespan not implemented here")

    with pytest.raises(LifespanFailure, match="lifespan not implemented here"):
        _serve_in_foreground(app, bind=(f"127.0.0.1:{port}",), lifespan="on")
    assert _refused(port)


def test_lifespan_on_with_an_app_that_returns_without_answering_is_a_lifespan_failure():
    async def app(scope, receive, send):
        return

    with pytest.raises(LifespanFailure, match="startup failed"):
        _serve_in_foreground(app, bind=("127.0.0.1:0",), lifespan="on")


def test_lifespan_auto_with_an_app_that_rejects_lifespan_serves_normally(serve, errors):
    calls: list[str] = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        assert scope["type"] == "http"
        await _respond(send)

    running = serve(app, lifespan="auto")
    response = httpx.get(running.url + "/")
    assert (response.status_code, response.text) == (200, "ok")
    running.stop()
    assert running.error is None
    assert calls == ["lifespan", "http"]  # tried once, never again (no shutdown either)
    assert errors() == []


def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope(serve):
    calls: list[str] = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        await _respond(send)

    running = serve(app, lifespan="off")
    assert httpx.get(running.url + "/").status_code == 200
    running.stop()
    assert calls == ["http"]


def test_shutdown_failed_is_logged_as_an_error_and_the_server_still_stops(serve, errors):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.failed", "message": "cannot close the pool"})
            return
        await _respond(send)

    running = serve(app)
    assert httpx.get(running.url + "/").status_code == 200
    port = running.port
    running.stop()  # asserts the server thread ended
    assert running.error is None
    [record] = errors()
    assert "cannot close the pool" in record.getMessage()
    assert _refused(port)


def test_startup_failed_in_a_looping_app_is_reported_once_without_a_cancellation_traceback(errors):
    # The ASGI spec's lifespan example loops on receive(); after startup.failed it waits for
    # a message that never comes, and the server cancels it when it gives up.
    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(LifespanFailure, match="no database"):
        _serve_in_foreground(app, bind=("127.0.0.1:0",))
    assert errors() == []  # the failure is the exception; nothing else is an error


def test_shutdown_that_hangs_is_abandoned_after_graceful_timeout_with_one_error(serve, errors):
    shutdown_started = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            shutdown_started.set()
            await asyncio.Event().wait()  # never answers
        else:
            await _respond(send)

    running = serve(app, graceful_timeout=0.3)
    running.stop()
    assert shutdown_started.is_set()
    assert running.error is None
    [record] = errors()
    assert "shutdown did not finish within 0.3 s" in record.getMessage()
    assert record.exc_info is None


async def _starlette_style_lifespan(scope, receive, send, *, fail_in: str):
    """Like Starlette's router: report the failure with its traceback, then re-raise."""
    await receive()
    if fail_in == "startup":
        await send({"type": "lifespan.startup.failed", "message": "Traceback...\nRuntimeError: no database"})
        raise RuntimeError("no database")
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.failed", "message": "Traceback...\nRuntimeError: pool stuck"})
    raise RuntimeError("pool stuck")


def test_startup_failure_reported_and_reraised_by_the_app_is_not_logged_twice(errors):
    async def app(scope, receive, send):
        await _starlette_style_lifespan(scope, receive, send, fail_in="startup")

    with pytest.raises(LifespanFailure, match="no database"):
        _serve_in_foreground(app, bind=("127.0.0.1:0",))
    assert errors() == []


def test_shutdown_failure_reported_and_reraised_by_the_app_is_logged_once(serve, errors):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await _starlette_style_lifespan(scope, receive, send, fail_in="shutdown")
        else:
            await _respond(send)

    running = serve(app)
    running.stop()
    assert running.error is None
    [record] = errors()
    assert "pool stuck" in record.getMessage()
