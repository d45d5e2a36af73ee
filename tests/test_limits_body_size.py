"""--max-request-body-size: a declared content-length over the limit is answered 413 before the
app runs; a body growing past it (chunked, or HTTP/2 without content-length) ends its request
(HTTP/1.1: 413 then close; HTTP/2: 413 then RST_STREAM on that stream only, or a reset once the
response started), and the app's receive() returns http.disconnect.

The bound is measured where a server's memory would go: the bytes the app was handed. The app
buffers whole bodies, as naive apps do, so without the limit it would hold all 100 MiB.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import h2.exceptions
import pytest
from h2.errors import ErrorCodes
from websockets.asyncio.client import connect as ws_connect

from conftest import connect
from h2client import H2Client
from plexicorn.asgi.http import ClientDisconnected
from rawhttp import Reader
from test_http1 import assert_closed

HOST = b"Host: 127.0.0.1\r\n"
KIB = 1024
MIB = 1024 * KIB
LIMIT = 1 * MIB
UPLOAD = 100 * MIB


@pytest.fixture
def errors(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR)
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


class Buffering:
    """Reads each request body whole into memory before answering with its size; `/respond-first`
    starts its response before reading. Records what the app was handed and how it ended."""

    def __init__(self) -> None:
        self.calls = 0
        self.held = 0  # the most body bytes the app held at once
        self.last_message = ""
        self.send_error: BaseException | None = None
        self.done = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "bytes": b"%d" % len(message["bytes"])})
            return
        if scope["type"] != "http":
            return
        self.calls += 1
        try:
            if scope["path"] == "/respond-first":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"started", "more_body": True})
            body = bytearray()
            while True:
                message = await receive()
                self.last_message = message["type"]
                if message["type"] == "http.disconnect":
                    try:
                        await send({"type": "http.response.body", "body": b"too late"}
                                   if scope["path"] == "/respond-first" else
                                   {"type": "http.response.start", "status": 200, "headers": []})
                    except ClientDisconnected as exc:
                        self.send_error = exc
                        raise
                    return
                body += message["body"]
                self.held = max(self.held, len(body))
                if not message["more_body"]:
                    break
            if scope["path"] != "/respond-first":
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"%d" % len(body)})
        finally:
            self.done.set()


def send_chunked(sock: socket.socket, total: int) -> None:
    """Upload `total` bytes as a chunked body until done or the server closes."""
    chunk = b"%x\r\n" % (64 * KIB) + b"x" * (64 * KIB) + b"\r\n"
    try:
        for _ in range(total // (64 * KIB)):
            sock.sendall(chunk)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed after its 413: what a client sees


def upload_h2(client: H2Client, stream_id: int, total: int) -> int:
    """Send up to `total` body bytes as the windows allow, until done or the stream is ended."""
    piece = b"x" * 16384
    sent = 0
    response = client.responses[stream_id]
    try:
        while sent < total and response["reset"] is None and not response["ended"]:
            window = min(client.conn.local_flow_control_window(stream_id), len(piece), total - sent)
            if window <= 0:
                client.receive_once()
                continue
            client.conn.send_data(stream_id, piece[:window], end_stream=sent + window == total)
            client.flush()
            sent += window
    except h2.exceptions.StreamClosedError:
        pass
    return sent


# -- HTTP/1.1 -----------------------------------------------------------------------------------

def test_http1_declared_content_length_over_the_limit_is_413_before_the_app_runs(serve, errors):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1))
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 413 and response.header(b"connection") == b"close"
        assert b"larger than 1048576 bytes" in response.body
        assert_closed(reader)
    assert app.calls == 0
    # A body of exactly the limit is served.
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % LIMIT + b"y" * LIMIT)
        response = Reader(sock).response()
        assert (response.status, response.body) == (200, b"%d" % LIMIT)
    assert running.server.counters.limit_hits == {"request body size": 1}
    assert errors() == []


def test_http1_chunked_upload_of_100_mib_ends_at_the_1_mib_limit(serve, errors):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        sender = threading.Thread(target=send_chunked, args=(sock, UPLOAD))
        sender.start()
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 413 and response.header(b"connection") == b"close"
        reader.until_closed()
        sender.join(30)
    assert app.done.wait(10)
    # The app was handed no more than the limit (without it: 100 MiB), then a disconnect, and
    # its late response raised ClientDisconnected (an OSError), not an ASGI error.
    assert 0 < app.held <= LIMIT
    assert app.last_message == "http.disconnect"
    assert isinstance(app.send_error, ClientDisconnected)
    assert running.server.counters.limit_hits == {"request body size": 1}
    assert errors() == []


def test_http1_body_past_the_limit_after_the_response_started_closes_the_connection(serve, errors):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST /respond-first HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        sender = threading.Thread(target=send_chunked, args=(sock, 4 * LIMIT))
        sender.start()
        reader = Reader(sock)
        _, status, headers = reader.head()
        assert status == 200 and (b"transfer-encoding", b"chunked") in headers
        rest = reader.until_closed()  # the response is cut short: no last chunk
        assert b"started" in rest and not rest.endswith(b"0\r\n\r\n")
        sender.join(30)
    assert app.done.wait(10)
    assert app.held <= LIMIT and app.last_message == "http.disconnect"
    assert isinstance(app.send_error, ClientDisconnected)
    assert errors() == []


def test_http1_a_websocket_is_not_bounded_by_the_request_body_limit(serve):
    running = serve(Buffering(), max_request_body_size=1024)

    async def scenario() -> bytes:
        async with ws_connect(f"ws://127.0.0.1:{running.port}/", open_timeout=10, max_size=None) as ws:
            await ws.send(b"z" * 100_000)
            return await ws.recv()
    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == b"100000"
    assert running.server.counters.limit_hits == {}


# -- HTTP/2 -------------------------------------------------------------------------------------

def test_http2_upload_of_100_mib_without_content_length_ends_at_the_limit_on_its_stream_only(serve, errors):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    client = H2Client(running.port)
    stream_id = client.request("POST", "/x", end_stream=False)
    sent = upload_h2(client, stream_id, UPLOAD)
    client.wait_for(lambda: client.responses[stream_id]["reset"] is not None)
    response = client.responses[stream_id]
    assert response["status"] == 413 and b"larger than 1048576 bytes" in bytes(response["body"])
    assert response["reset"] == ErrorCodes.NO_ERROR  # RFC 9113 §8.1: the rest is not wanted
    # The stream's window was not re-opened past the limit: the client could send little more.
    assert sent < LIMIT + 2 * MIB
    assert app.done.wait(10)
    assert 0 < app.held <= LIMIT and app.last_message == "http.disconnect"
    assert isinstance(app.send_error, ClientDisconnected)
    # The connection goes on: another request on it is served.
    other = client.request("POST", "/x", body=b"small")
    client.wait_for(lambda: client.responses[other]["ended"])
    assert (client.responses[other]["status"], bytes(client.responses[other]["body"])) == (200, b"5")
    assert running.server.counters.limit_hits == {"request body size": 1}
    assert errors() == []


def test_http2_declared_content_length_over_the_limit_is_413_before_the_app_runs(serve):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    client = H2Client(running.port)
    stream_id = client.request("POST", "/x", end_stream=False,
                               headers=[(b"content-length", b"%d" % (LIMIT + 1))])
    client.wait_for(lambda: client.responses[stream_id]["reset"] is not None)
    assert client.responses[stream_id]["status"] == 413
    assert client.responses[stream_id]["reset"] == ErrorCodes.NO_ERROR
    assert app.calls == 0
    other = client.request("GET", "/x")
    client.wait_for(lambda: client.responses[other]["ended"])
    assert client.responses[other]["status"] == 200
    assert running.server.counters.limit_hits == {"request body size": 1}


def test_http2_body_past_the_limit_after_the_response_started_resets_that_stream(serve, errors):
    app = Buffering()
    running = serve(app, max_request_body_size=LIMIT)
    client = H2Client(running.port)
    stream_id = client.request("POST", "/respond-first", end_stream=False)
    upload_h2(client, stream_id, 4 * LIMIT)
    client.wait_for(lambda: client.responses[stream_id]["reset"] is not None)
    response = client.responses[stream_id]
    assert response["status"] == 200 and not response["ended"]
    assert response["reset"] == ErrorCodes.CANCEL
    assert app.done.wait(10)
    assert app.held <= LIMIT and isinstance(app.send_error, ClientDisconnected)
    other = client.request("GET", "/x")
    client.wait_for(lambda: client.responses[other]["ended"])
    assert client.responses[other]["status"] == 200
    assert errors() == []
