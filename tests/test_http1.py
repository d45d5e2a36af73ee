"""HTTP/1.1 on the wire: keep-alive, pipelining, body framing, 100-continue, disconnects,
connection closing, malformed input, idle timeout, read backpressure, HEAD and errors."""

from __future__ import annotations

import asyncio
import hashlib
import random
import select
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from conftest import connect
from rawhttp import Reader

MiB = 1024 * 1024
HOST = b"Host: 127.0.0.1\r\n"
PAYLOAD = random.Random(1234).randbytes(8 * MiB)


# -- helpers --------------------------------------------------------------------------------

class Gate:
    """An asyncio.Event on the server's loop that the test thread opens."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def _get(self) -> asyncio.Event:
        # Created lazily so it belongs to the server's loop.
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def wait(self) -> None:
        await asyncio.wait_for(self._get().wait(), 10)

    def open(self, running: Any) -> None:
        running.loop.call_soon_threadsafe(lambda: self._get().set())


def assert_closed(reader: Reader) -> None:
    """Nothing more arrives and the server has closed (FIN or reset) within the socket timeout."""
    assert not reader.buffer, f"unexpected bytes after the response: {bytes(reader.buffer[:200])!r}"
    try:
        data = reader.sock.recv(65536)
    except ConnectionResetError:
        return
    except TimeoutError:
        pytest.fail("the server kept the connection open")
    assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"


def open_connection(running: Any, client_ssl_context: Any, tls: bool, timeout: float = 5.0) -> socket.socket:
    if not tls:
        return connect(running, timeout=timeout)
    sock = connect(running, client_ssl_context(alpn=("http/1.1",)), timeout=timeout)
    assert sock.selected_alpn_protocol() == "http/1.1"
    return sock


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def respond(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- keep-alive and pipelining ---------------------------------------------------------------

async def client_port_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await read_body(receive)
    await respond(send, 200, str(scope["client"][1]).encode())


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_keep_alive_serves_consecutive_requests_on_one_connection(serve, client_ssl_context, tls):
    running = serve(client_port_app, tls=tls)
    with open_connection(running, client_ssl_context, tls) as sock:
        reader = Reader(sock)
        port = str(sock.getsockname()[1]).encode()
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
            response = reader.response()
            assert response.status == 200
            assert response.header(b"connection") is None
            assert response.body == port


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_pipelined_requests_are_answered_in_order_behind_a_slow_first_one(serve, client_ssl_context, tls):
    gate = Gate()
    slow_started = threading.Event()
    started: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        started.append(scope["path"])
        body = await read_body(receive)
        if scope["path"] == "/slow":
            slow_started.set()
            await gate.wait()
        await respond(send, 200, scope["path"].encode() + b":" + body)

    running = serve(app, tls=tls)
    with open_connection(running, client_ssl_context, tls) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\n" + HOST + b"\r\n"
                     + b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello"
                     + b"GET /last HTTP/1.1\r\n" + HOST + b"\r\n")
        assert slow_started.wait(5)
        gate.open(running)
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(3)]
    assert bodies == [b"/slow:", b"/echo:hello", b"/last:"]
    assert started == ["/slow", "/echo", "/last"]


# -- chunked bodies --------------------------------------------------------------------------

def test_chunked_request_body_reaches_the_app_intact(serve):
    messages: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body", False):
                break
        await respond(send, 200, b"".join(m["body"] for m in messages))

    running = serve(app)
    parts = [b"first part|", b"x" * 5000 + b"|", b"", b"last"]
    with connect(running, timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            if part:  # an empty chunk would end the body
                sock.sendall(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        response = Reader(sock).response()
    assert response.status == 200
    assert response.body == b"".join(parts)
    assert all(m["type"] == "http.request" for m in messages)
    assert [m.get("more_body", False) for m in messages] == [True] * (len(messages) - 1) + [False]


def test_streamed_response_without_length_is_sent_chunked(serve):
    parts = [b"alpha ", b"beta " * 1000, b"gamma"]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = serve(app)
    with connect(running, timeout=5) as sock:
        reader = Reader(sock)
        for _ in range(2):  # chunked framing ends the response, so the connection stays usable
            sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
            response = reader.response()
            assert response.header(b"transfer-encoding") == b"chunked"
            assert response.header(b"content-length") is None
            assert response.body == b"".join(parts)


# -- large bodies ----------------------------------------------------------------------------

def test_eight_mebibyte_upload_is_echoed_back_while_streaming(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["body"]:
                await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b""})

    running = serve(app)
    errors: list[BaseException] = []
    with connect(running, timeout=10) as sock:
        def upload() -> None:
            # Sent from a thread while the main thread reads: the echo is full duplex.
            try:
                sock.sendall(b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % len(PAYLOAD))
                view = memoryview(PAYLOAD)
                for offset in range(0, len(view), 64 * 1024):
                    sock.sendall(view[offset:offset + 64 * 1024])
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=upload)
        sender.start()
        response = Reader(sock).response()
        sender.join(10)
    assert not errors
    assert response.status == 200
    assert len(response.body) == len(PAYLOAD)
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(PAYLOAD).digest()


def test_eight_mebibyte_streamed_download_arrives_complete(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(PAYLOAD)).encode())]})
        for offset in range(0, len(PAYLOAD), 64 * 1024):
            await send({"type": "http.response.body", "body": PAYLOAD[offset:offset + 64 * 1024], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = serve(app)
    digest = hashlib.sha256()
    size = 0
    with httpx.Client(timeout=10) as client, client.stream("GET", running.url + "/download") as response:
        assert response.http_version == "HTTP/1.1"
        for chunk in response.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    assert size == len(PAYLOAD)
    assert digest.digest() == hashlib.sha256(PAYLOAD).digest()


# -- Expect: 100-continue --------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_100_continue_is_sent_when_the_app_reads_the_body(serve, client_ssl_context, tls):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await respond(send, 200, b"got:" + await read_body(receive))

    running = serve(app, tls=tls)
    with open_connection(running, client_ssl_context, tls) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        reader = Reader(sock)
        assert reader.line() == b"HTTP/1.1 100 Continue"
        assert reader.line() == b""  # an interim response without headers
        sock.sendall(b"hello world")
        response = reader.response()
    assert response.status_line == b"HTTP/1.1 200 OK"
    assert response.body == b"got:hello world"


def test_no_100_continue_when_the_app_answers_without_reading_the_body(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await respond(send, 403, b"not for you")

    running = serve(app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        assert response.status_line == b"HTTP/1.1 403 Forbidden"
        assert response.body == b"not for you"
        # The unsent body would be read as the next request: the connection must end instead.
        assert response.header(b"connection") == b"close"
        assert_closed(reader)


# -- disconnects -----------------------------------------------------------------------------

def test_app_receives_http_disconnect_when_the_client_closes_after_its_body(serve):
    body_read = threading.Event()
    got_message = threading.Event()
    seen: list[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append(await read_body(receive))
        body_read.set()
        seen.append(await receive())
        got_message.set()

    running = serve(app)
    sock = connect(running, timeout=5)
    sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n\r\nbody")
    assert body_read.wait(5)
    sock.close()
    assert got_message.wait(5)
    assert seen == [b"body", {"type": "http.disconnect"}]


def test_app_receives_http_disconnect_when_the_client_closes_mid_body(serve):
    got_body = threading.Event()
    got_disconnect = threading.Event()
    seen: list[Any] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            seen.append(message)
            got_body.set()
            if message["type"] == "http.disconnect":
                got_disconnect.set()
                return

    running = serve(app)
    sock = connect(running, timeout=5)
    sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 100\r\n\r\n0123456789")
    assert got_body.wait(5)  # the partial body reached the app
    sock.close()
    assert got_disconnect.wait(5)
    assert b"".join(m.get("body", b"") for m in seen) == b"0123456789"
    assert all(m.get("more_body") for m in seen[:-1])


def test_endless_streaming_app_stops_once_the_client_closes(serve):
    stopped = threading.Event()
    outcome: list[BaseException] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            stopped.set()

    running = serve(app)
    sock = connect(running, timeout=5)
    sock.sendall(b"GET /stream HTTP/1.1\r\n" + HOST + b"\r\n")
    reader = Reader(sock)
    assert reader.head()[1] == 200
    reader.exact(100_000)  # the stream is flowing
    sock.close()
    assert stopped.wait(5)
    assert isinstance(outcome[0], OSError), outcome
    assert wait_until(lambda: running.call(lambda: len(running.server.context.tasks)) == 0)
    assert wait_until(lambda: running.call(lambda: len(running.server.context.connections)) == 0)


# -- closing ---------------------------------------------------------------------------------

def test_connection_close_from_the_client_closes_after_the_response(serve):
    running = serve(client_port_app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 200
        assert response.header(b"connection") == b"close"
        assert_closed(reader)


def test_http10_request_without_keep_alive_is_closed_after_a_close_delimited_response(serve):
    parts = [b"one ", b"two ", b"three"]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        assert scope["http_version"] == "1.0"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = serve(app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        response = Reader(sock).response()  # reads to EOF: no length, and chunked is not HTTP/1.0
    assert response.status == 200
    assert response.header(b"transfer-encoding") is None
    assert response.body == b"".join(parts)


# -- malformed requests ----------------------------------------------------------------------

MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "header line without a colon": b"GET / HTTP/1.1\r\n" + HOST + b"NoColonHere\r\n\r\n",
    "invalid content-length": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 12abc\r\n\r\n",
    # Read as chunked the body is empty and `GET /second` is a request; read by length it is not:
    # the request-smuggling ambiguity RFC 9112 §6.3 forbids serving on.
    "content-length and transfer-encoding":
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_gets_400_and_the_connection_closes(serve, request_bytes):
    paths: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        paths.append(scope["path"])
        await read_body(receive)
        await respond(send, 200, b"ok")

    running = serve(app)
    with connect(running, timeout=5) as sock:
        # A valid request pipelined behind the bad one must never be served.
        sock.sendall(request_bytes + b"GET /second HTTP/1.1\r\n" + HOST + b"\r\n")
        reader = Reader(sock)
        response = reader.response()
        assert response.status_line == b"HTTP/1.1 400 Bad Request"
        assert response.header(b"connection") == b"close"
        assert_closed(reader)
    assert paths == []
    assert httpx.get(running.url + "/after").text == "ok"  # other connections are still served


@pytest.mark.parametrize("headers", [
    b"X-Big: " + b"a" * 70_000 + b"\r\n",
    b"".join(b"X-Header-%d: %s\r\n" % (index, b"b" * 100) for index in range(700)),
], ids=["one huge header", "many headers"])
def test_request_headers_over_64_kib_get_431(serve, headers):
    running = serve(client_port_app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + headers + b"\r\n")
        reader = Reader(sock)
        response = reader.response()
        assert response.status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert_closed(reader)
    assert httpx.get(running.url + "/").status_code == 200


# -- idle timeout ----------------------------------------------------------------------------

def test_idle_keep_alive_connection_is_closed_after_the_timeout(serve):
    running = serve(client_port_app, keep_alive_timeout=0.5)
    with connect(running, timeout=5) as sock:
        # Timed from before the request: the idle timer starts after the response, so a slow test
        # thread cannot make a correct server look early.
        asked = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        reader = Reader(sock)
        assert reader.response().status == 200
        assert_closed(reader)
        # Closed by the idle timer, not right after the response.
        assert time.monotonic() - asked > 0.4  # 0.5 s at least; a little slack for timer rounding


def test_connection_that_never_sends_a_request_is_closed_after_the_timeout(serve):
    running = serve(client_port_app, keep_alive_timeout=0.5)
    with connect(running, timeout=5) as sock:
        assert_closed(Reader(sock))


# -- backpressure ----------------------------------------------------------------------------

def test_server_stops_reading_a_body_the_app_does_not_read(serve):
    total = 200 * MiB
    gate = Gate()
    app_waiting = threading.Event()
    received: list[int] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        app_waiting.set()
        await gate.wait()
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        received.append(size)
        await respond(send, 200, str(size).encode())

    running = serve(app)
    chunk = memoryview(bytes(MiB))
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % total)
        assert app_waiting.wait(5)
        sock.setblocking(False)
        sent = 0
        while sent < total:
            try:
                sent += sock.send(chunk[:min(len(chunk), total - sent)])
            except BlockingIOError:
                # No room for a whole second: the server has stopped reading.
                if not select.select([], [sock], [], 1.0)[1]:
                    break
        assert sent < 32 * MiB, f"the server kept reading ({sent} bytes) while the app did not"
        gate.open(running)
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(chunk[:min(len(chunk), total - sent)])
        response = Reader(sock).response()
    assert received == [total]
    assert response.body == str(total).encode()


# -- HEAD, status lines, errors --------------------------------------------------------------

async def hello_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/missing":
        await respond(send, 404, b"no such thing")
    else:
        await respond(send, 200, b"hello world", [(b"content-type", b"text/plain")])


def test_head_response_has_content_length_but_no_body_and_keeps_the_connection(serve):
    running = serve(hello_app)
    with connect(running, timeout=5) as sock:
        reader = Reader(sock)
        sock.sendall(b"HEAD / HTTP/1.1\r\n" + HOST + b"\r\n")
        head = reader.response(method=b"HEAD")
        assert head.status == 200
        assert head.header(b"content-length") == b"11"
        # Any body bytes sent for the HEAD would be parsed here as a broken status line.
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        response = reader.response()
    assert response.status == 200
    assert response.body == b"hello world"


@pytest.mark.parametrize("path, status_line", [
    (b"/", b"HTTP/1.1 200 OK"),
    (b"/missing", b"HTTP/1.1 404 Not Found"),
])
def test_responses_carry_reason_phrase_and_date(serve, path, status_line):
    running = serve(hello_app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\n" + HOST + b"\r\n")
        response = Reader(sock).response()
    assert response.status_line == status_line
    date = response.header(b"date")
    assert date is not None and date.endswith(b" GMT")
    assert abs(parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 60


def test_app_error_before_start_gives_500_and_the_connection_keeps_working(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await respond(send, 200, b"fine")

    running = serve(app)
    with connect(running, timeout=5) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /boom HTTP/1.1\r\n" + HOST + b"\r\n")
        error = reader.response()
        assert error.status_line == b"HTTP/1.1 500 Internal Server Error"
        assert error.header(b"connection") is None
        sock.sendall(b"GET /ok HTTP/1.1\r\n" + HOST + b"\r\n")
        response = reader.response()
    assert response.status == 200
    assert response.body == b"fine"


def test_max_requests_per_connection_closes_after_the_nth_response(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    running = serve(app, max_requests_per_connection=2)
    with connect(running) as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # the server closes after the second response
            data += chunk
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"connection: close" not in first.lower()
    assert b"connection: close" in second.lower() and second.endswith(b"ok")
