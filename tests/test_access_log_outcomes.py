"""Exactly one access line per exchange, whatever ends it: an app that fails after starting its
response (`aborted`, the status as sent), and a request a body limit ends (the server's 413,
not a `reset` as well). Lines are counted after the server has stopped, when every connection's
end has been seen."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from conftest import connect
from h2client import H2Client

TIMEOUT = 10.0


class FailsMidBody:
    """Starts a 200, sends part of its body, then raises."""

    def __init__(self) -> None:
        self.done = threading.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("the database went away")
        finally:
            self.done.set()


class ReadsBody:
    """Reads its request body to the end (or the disconnect a limit makes), then answers."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.messages: list[str] = []
        self.send_error: BaseException | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                self.messages.append(message["type"])
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            except OSError as exc:
                self.send_error = exc
                return
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.done.set()


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(TIMEOUT)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_http1_app_failing_after_the_start_is_one_aborted_line(serve: Any, access_lines: Any) -> None:
    app = FailsMidBody()
    running = serve(app, lifespan="off", access_log=True)
    with connect(running) as sock:
        sock.sendall(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_until_closed(sock)  # the only way to cut an HTTP/1.1 response short
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"partial")
    assert app.done.wait(TIMEOUT)
    running.stop()
    lines = access_lines()
    assert len(lines) == 1, lines
    assert '"GET /fails HTTP/1.1" 200 7 ' in lines[0] and lines[0].endswith(" aborted"), lines


def test_http2_app_failing_after_the_start_is_one_aborted_line(serve: Any, access_lines: Any) -> None:
    app = FailsMidBody()
    running = serve(app, lifespan="off", access_log=True)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/fails")
        response = client.response(stream_id)
        assert response["status"] == 200 and response["reset"] == 2  # INTERNAL_ERROR
        other = client.request("GET", "/fails")  # the connection goes on: one more, then stop
        assert client.response(other)["reset"] == 2
    assert app.done.wait(TIMEOUT)
    running.stop()
    lines = access_lines()
    assert len(lines) == 2, lines
    assert all('"GET /fails HTTP/2" 200 7 ' in line and line.endswith(" aborted") for line in lines), lines


def test_http1_request_over_the_body_limit_is_one_413_line(serve: Any, access_lines: Any) -> None:
    app = ReadsBody()
    running = serve(app, lifespan="off", access_log=True, max_request_body_size=10)
    with connect(running) as sock:
        # Chunked: no declared length to refuse up front, the limit is met mid-stream.
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n" + b"x" * 50)
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413 ")
    assert app.done.wait(TIMEOUT)
    assert app.messages == ["http.disconnect"] and app.send_error is not None
    running.stop()
    lines = access_lines()
    assert len(lines) == 1, lines
    assert '"POST /upload HTTP/1.1" 413 ' in lines[0] and "reset" not in lines[0], lines


def test_http2_request_over_the_body_limit_is_one_413_line(serve: Any, access_lines: Any) -> None:
    app = ReadsBody()
    running = serve(app, lifespan="off", access_log=True, max_request_body_size=10)
    with H2Client(running.port) as client:
        stream_id = client.request("POST", "/upload", body=b"x" * 50, end_stream=False)
        response = client.response(stream_id)
        assert response["status"] == 413
        assert app.done.wait(TIMEOUT)
        assert app.messages == ["http.disconnect"] and app.send_error is not None
        other = client.request("GET", "/after")  # the connection goes on
        assert client.response(other)["status"] == 200
    running.stop()
    lines = access_lines()
    assert len(lines) == 2, lines
    assert '"POST /upload HTTP/2" 413 ' in lines[0] and "reset" not in lines[0], lines
    assert '"GET /after HTTP/2" 200 ' in lines[1], lines


def test_http2_request_over_the_body_limit_after_the_start_is_one_reset_line(serve: Any, access_lines: Any) -> None:
    class RespondsFirst(ReadsBody):
        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            self.done.set()

    app = RespondsFirst()
    running = serve(app, lifespan="off", access_log=True, max_request_body_size=10)
    with H2Client(running.port) as client:
        stream_id = client.request("POST", "/upload", end_stream=False)
        response = client.responses[stream_id]
        client.wait_for(lambda: response["status"] == 200)
        client.send_body(stream_id, b"x" * 50, end_stream=False)
        client.response(stream_id)
        assert response["reset"] == 8  # CANCEL: cut short
    assert app.done.wait(TIMEOUT)
    running.stop()
    lines = access_lines()
    assert len(lines) == 1, lines
    assert '"POST /upload HTTP/2" 200 7 ' in lines[0] and lines[0].endswith(" reset"), lines


class EndsAfterTheClientLeft:
    """Declares and sends 5 bytes, waits for the disconnect, then sends its final empty message."""

    def __init__(self) -> None:
        self.done = threading.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"hello", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.done.set()


class LargeBody:
    """At /large a whole 100 kB response in one message (within the stream's 64 KiB send buffer
    once a window's worth is out): complete for the app, its rest queued behind the window."""

    def __init__(self) -> None:
        self.done = threading.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x" * 100_000 if scope["path"] == "/large" else b"ok"})
        finally:
            self.done.set()


def test_http2_client_resetting_after_the_whole_body_is_one_line(serve: Any, access_lines: Any) -> None:
    app = EndsAfterTheClientLeft()
    running = serve(app, lifespan="off", access_log=True)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/late")
        client.wait_for(lambda: bytes(client.responses[stream_id]["body"]) == b"hello")
        client.reset(stream_id)
        assert app.done.wait(TIMEOUT)
    running.stop()
    lines = access_lines()
    assert len(lines) == 1, lines
    assert '"GET /late HTTP/2" 200 5 ' in lines[0] and not lines[0].endswith(" reset"), lines


def test_http2_complete_response_reset_while_queued_is_one_reset_line(serve: Any, access_lines: Any) -> None:
    app = LargeBody()
    running = serve(app, lifespan="off", access_log=True)
    with H2Client(running.port, auto_window=False) as client:
        stream_id = client.request("GET", "/large")
        # The default 65,535-byte window: the rest of the body waits in the server's queue.
        client.wait_for(lambda: len(client.responses[stream_id]["body"]) == 65_535)
        assert app.done.wait(TIMEOUT)
        assert not client.responses[stream_id]["ended"]
        client.reset(stream_id)
        client.conn.increment_flow_control_window(65_535)  # the connection's window, used up
        other = client.request("GET", "/small")  # the connection goes on
        assert client.response(other)["body"] == b"ok"
    running.stop()
    lines = access_lines()
    assert len(lines) == 2, lines
    assert '"GET /large HTTP/2" 200 100000 ' in lines[0] and lines[0].endswith(" reset"), lines
    assert '"GET /small HTTP/2" 200 2 ' in lines[1] and not lines[1].endswith(" reset"), lines


async def hello_with_length(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_head_response_is_logged_with_the_size_sent_none_on_either_protocol(serve: Any, access_lines: Any) -> None:
    running = serve(hello_with_length, lifespan="off", access_log=True)
    with connect(running) as sock:
        sock.sendall(b"HEAD /h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\n")
    assert b"content-length: 5" in received.lower()
    with H2Client(running.port) as client:
        head = client.response(client.request("HEAD", "/h2"))
        get = client.response(client.request("GET", "/h2"))
    assert (head["status"], bytes(head["body"]), bytes(get["body"])) == (200, b"", b"hello")
    running.stop()
    lines = access_lines()
    assert len(lines) == 3, lines
    assert '"HEAD /h1 HTTP/1.1" 200 0 ' in lines[0], lines
    assert '"HEAD /h2 HTTP/2" 200 0 ' in lines[1], lines
    assert '"GET /h2 HTTP/2" 200 5 ' in lines[2], lines


async def raises_or_reads(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/raises":
        raise RuntimeError("no response at all")
    while (await receive()).get("more_body"):  # a body over the limit: the server answers 413
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read"})


def test_the_servers_own_answer_to_a_head_request_is_logged_with_size_0(serve: Any, access_lines: Any) -> None:
    running = serve(raises_or_reads, lifespan="off", access_log=True, max_request_body_size=10)
    with H2Client(running.port) as client:
        failed = client.response(client.request("HEAD", "/raises"))
        limited = client.response(client.request("HEAD", "/limited", body=b"x" * 50, end_stream=False))
    assert (failed["status"], bytes(failed["body"])) == (500, b"")
    assert (limited["status"], bytes(limited["body"])) == (413, b"")
    with connect(running) as sock:
        sock.sendall(b"HEAD /raises HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 500 ")
    running.stop()
    lines = access_lines()
    assert len(lines) == 3, lines
    assert any('"HEAD /raises HTTP/2" 500 0 ' in line for line in lines), lines
    assert any('"HEAD /limited HTTP/2" 413 0 ' in line for line in lines), lines
    assert any('"HEAD /raises HTTP/1.1" 500 0 ' in line for line in lines), lines
