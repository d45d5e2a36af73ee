"""A response whose body was fully written is complete: when the client leaves before the app's
final empty `http.response.body`, that send does not raise and the response is logged."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conftest import connect
from h2client import H2Client


class LateEnd:
    """Declares 5 bytes, sends them, waits for the client to leave, then ends the body (a2wsgi's way)."""

    def __init__(self) -> None:
        self.outcome: list[str] = []
        self.done = threading.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        try:
            await send({"type": "http.response.body", "body": b""})
            self.outcome.append("ok")
        except OSError as exc:
            self.outcome.append(type(exc).__name__)
        finally:
            self.done.set()


def test_http1_response_fully_written_before_the_client_left_is_logged(serve: Any, access_lines: Any) -> None:
    app = LateEnd()
    running = serve(app, lifespan="off", access_log=True)
    sock = connect(running)
    sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while not received.endswith(b"hello"):
        received += sock.recv(4096)
    sock.close()
    assert app.done.wait(5)
    assert app.outcome == ["ok"]
    assert [line for line in access_lines() if '"GET /late HTTP/1.1" 200 5' in line]


def test_http1_response_cut_short_still_raises_on_send(serve: Any) -> None:
    class Short(LateEnd):
        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await super().__call__(scope, receive, _skip_start(send))

    app = Short()
    running = serve(app, lifespan="off")
    sock = connect(running)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while not received.endswith(b"hello"):
        received += sock.recv(4096)
    sock.close()
    assert app.done.wait(5)
    assert app.outcome == ["ClientDisconnected"]  # 5 of 10 bytes: the client did not get it all


def _skip_start(send: Any) -> Any:
    async def wrapped(message: dict) -> None:
        if message["type"] != "http.response.start":
            await send(message)
    return wrapped


def test_http2_final_empty_send_after_the_client_left_does_not_raise(serve: Any) -> None:
    app = LateEnd()
    running = serve(app, lifespan="off")
    client = H2Client(running.port)
    stream_id = client.request("GET", "/late")
    client.wait_for(lambda: bytes(client.responses[stream_id]["body"]) == b"hello")
    client.close()
    assert app.done.wait(5)
    assert app.outcome == ["ok"]


def test_http2_response_fully_written_before_the_client_left_is_logged(serve: Any, access_lines: Any) -> None:
    app = LateEnd()
    running = serve(app, lifespan="off", access_log=True)
    client = H2Client(running.port)
    stream_id = client.request("GET", "/late")
    client.wait_for(lambda: bytes(client.responses[stream_id]["body"]) == b"hello")
    client.close()
    assert app.done.wait(5)
    assert [line for line in access_lines() if '"GET /late HTTP/2" 200 5' in line]
