"""--header-timeout and --body-timeout on the wire.

A request head must arrive whole within the header timeout from its first byte (HTTP/1.1: 408,
then close; HTTP/2: a header block left open ends the connection with ENHANCE_YOUR_CALM); a body
the app waits for must not stall longer than the body timeout (HTTP/1.1: 408 then close; HTTP/2:
408 and RST_STREAM on that stream, or RST_STREAM(CANCEL) once the response started). The timeouts
are small and the keep-alive timeout long, so that only the limit under test can end anything;
the tests wait for the server's answer, never for time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from conftest import connect
from interop import h2raw
from interop.h2raw import ErrorCode
from plexicorn.asgi.http import ClientDisconnected
from rawhttp import Reader
from test_http1 import assert_closed

HOST = b"Host: 127.0.0.1\r\n"
SHORT = 0.3
LONG = 30.0


@pytest.fixture
def errors(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR)
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


class Reading:
    """Reads the request body; `/respond-first` starts the response first. Records how it ended."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.last_message = ""
        self.send_error: BaseException | None = None
        self.done = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        try:
            if scope["path"] == "/respond-first":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"started", "more_body": True})
            while True:
                message = await receive()
                self.last_message = message["type"]
                if message["type"] == "http.disconnect":
                    try:
                        await send({"type": "http.response.body", "body": b"late"}
                                   if scope["path"] == "/respond-first" else
                                   {"type": "http.response.start", "status": 200, "headers": []})
                    except ClientDisconnected as exc:
                        self.send_error = exc
                    return
                self.body += message["body"]
                if not message["more_body"]:
                    break
            if scope["path"] != "/respond-first":
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"got %d" % len(self.body)})
        finally:
            self.done.set()


def h2_connection(running) -> h2raw.Connection:
    conn = h2raw.Connection(running.port, None, timeout=10.0)
    conn.handshake()
    return conn


def goaway(conn: h2raw.Connection) -> GoAwayFrame:
    while True:
        frame = conn.read_frame()
        assert frame is not None, "closed without GOAWAY"
        if isinstance(frame, GoAwayFrame):
            conn.expect_closed()
            return frame


# -- --header-timeout, HTTP/1.1 ---------------------------------------------------------------------

def test_http1_incomplete_head_gets_408_then_close(serve, errors):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST)  # the blank line never comes
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 408 and response.header(b"connection") == b"close"
        assert b"request head took longer than 0.3 s" in response.body
        assert_closed(reader)
    assert running.server.counters.limit_hits == {"header timeout": 1}
    assert errors() == []


def test_http1_a_head_dripping_byte_by_byte_is_still_timed_from_its_first_byte(serve):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    stop = threading.Event()

    def drip(sock) -> None:
        # Slowloris: a header line byte after byte, each well within any per-read timeout.
        for byte in b"X-Padding: " + b"a" * 10_000:
            if stop.wait(0.02):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return

    with connect(running, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST)
        dripper = threading.Thread(target=drip, args=(sock,))
        dripper.start()
        try:
            assert Reader(sock).response().status == 408
        finally:
            stop.set()
            dripper.join()


def test_http1_keep_alive_next_head_is_timed_from_its_first_byte(serve):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        assert reader.response().status == 200
        sock.sendall(b"GET /next HTTP/1.1\r\n")
        response = reader.response()
        assert response.status == 408
        assert_closed(reader)


def test_http1_heads_sent_whole_and_slow_apps_are_not_affected(serve):
    async def slow(scope, receive, send):
        if scope["type"] != "http":
            return
        import asyncio
        await asyncio.sleep(2 * SHORT)  # longer than the header timeout: the head is long done
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})

    running = serve(slow, header_timeout=SHORT, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
            assert reader.response().body == b"slow"
    assert running.server.counters.limit_hits == {}


def test_http1_silent_connection_is_still_the_keep_alive_timeouts(serve):
    # No byte of a request: not a head being sent, so the keep-alive timeout closes it, silently.
    running = serve(Reading(), header_timeout=LONG, keep_alive_timeout=SHORT)
    with connect(running, timeout=10) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        assert reader.response().status == 200
        assert_closed(reader)
    assert running.server.counters.limit_hits == {}


# -- --header-timeout, HTTP/2 --------------------------------------------------------------------------

def test_http2_header_block_left_open_by_continuation_ends_the_connection(serve, errors):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    with h2_connection(running) as conn:
        conn.request(1)  # a whole request first: it is served and named in the GOAWAY
        assert conn.read_response(1).status == 200
        block = conn.header_block(path=b"/slow", extra=[(b"x-padding", b"a" * 200)])
        conn.send(h2raw.headers(3, block[:50], end_headers=False))
        conn.send(h2raw.continuation(3, block[50:100], end_headers=False))  # END_HEADERS never comes
        frame = goaway(conn)
    assert frame.error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert frame.last_stream_id == 1
    assert running.server.counters.limit_hits == {"header timeout": 1}
    assert errors() == []


def test_http2_headers_frame_whose_bytes_stop_coming_ends_the_connection(serve):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    with h2_connection(running) as conn:
        frame = h2raw.headers(1, conn.header_block(path=b"/"))
        conn.send(frame[:len(frame) - 3])  # the frame header announces bytes that never come
        assert goaway(conn).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_http2_whole_header_blocks_start_no_timer(serve):
    running = serve(Reading(), header_timeout=SHORT, keep_alive_timeout=LONG)
    with h2_connection(running) as conn:
        block = conn.header_block(path=b"/", extra=[(b"x-padding", b"a" * 200)])
        # One block in two frames, sent together: whole as soon as it is read.
        conn.send(h2raw.headers(1, block[:50], end_headers=False), h2raw.continuation(1, block[50:]))
        assert conn.read_response(1).status == 200
        conn.expect_alive()
    assert running.server.counters.limit_hits == {}


# -- --body-timeout -------------------------------------------------------------------------------------

def test_http1_stalled_upload_gets_408_then_close_and_the_app_sees_a_disconnect(serve, errors):
    app = Reading()
    running = serve(app, body_timeout=SHORT, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc")
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 408 and response.header(b"connection") == b"close"
        assert b"no request body for 0.3 s" in response.body
        assert_closed(reader)
    assert app.done.wait(10)
    assert bytes(app.body) == b"abc" and app.last_message == "http.disconnect"
    assert isinstance(app.send_error, ClientDisconnected)
    assert running.server.counters.limit_hits == {"body timeout": 1}
    assert errors() == []


def test_http1_stalled_upload_after_the_response_started_closes_the_connection(serve, errors):
    app = Reading()
    running = serve(app, body_timeout=SHORT, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST /respond-first HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        reader = Reader(sock)
        _, status, _ = reader.head()
        assert status == 200
        rest = reader.until_closed()
        assert b"started" in rest and not rest.endswith(b"0\r\n\r\n")
    assert app.done.wait(10)
    assert app.last_message == "http.disconnect"
    assert errors() == []


def test_http1_a_slow_but_steady_upload_is_served(serve):
    app = Reading()
    running = serve(app, body_timeout=2.0, keep_alive_timeout=LONG)
    with connect(running, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n")
        for byte in b"0123456789":  # ten pieces, each far within the timeout of the one before
            time.sleep(0.05)
            sock.sendall(bytes([byte]))
        response = Reader(sock).response()
        assert (response.status, response.body) == (200, b"got 10")
    assert running.server.counters.limit_hits == {}


def test_http2_stalled_upload_gets_408_and_a_reset_of_that_stream_only(serve, errors):
    app = Reading()
    running = serve(app, body_timeout=SHORT, keep_alive_timeout=LONG)
    with h2_connection(running) as conn:
        conn.request(1, method=b"POST", end_stream=False, body=b"abc")
        reset = conn.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1, "the reset")
        assert reset.error_code == ErrorCode.NO_ERROR
        response = conn.responses[1]
        assert response.status == 408 and response.ended
        assert b"no request body for 0.3 s" in bytes(response.body)
        assert app.done.wait(10)
        assert bytes(app.body) == b"abc" and app.last_message == "http.disconnect"
        assert isinstance(app.send_error, ClientDisconnected)
        conn.request(3)  # the connection goes on
        assert conn.read_response(3).status == 200
    assert running.server.counters.limit_hits == {"body timeout": 1}
    assert errors() == []


def test_http2_upload_is_not_timed_while_the_server_holds_reading(serve, errors):
    """A client that leaves a big response unread makes the connection stop reading it; an upload
    on another stream whose app waits meanwhile is not the client's stall: no 408 (the body
    timer starts again), and the upload completes once the client reads again."""
    go = threading.Event()  # the test saw the connection stop reading: the upload's app waits now
    first_piece = threading.Event()
    big_sent = bytearray()

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/big":  # far more than the socket buffers hold: the transport fills up
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunk = b"x" * 65536
            try:
                for _ in range(512):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    big_sent.extend(b".")
                await send({"type": "http.response.body", "body": b""})
            except ClientDisconnected:
                pass
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            if not first_piece.is_set():
                first_piece.set()
                await asyncio.to_thread(go.wait, 10)  # then wait in receive() during the hold
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got %d" % len(body)})

    running = serve(app, body_timeout=SHORT, keep_alive_timeout=LONG)
    with h2raw.Connection(running.port, None, timeout=10.0) as conn:
        conn.handshake({h2raw.Setting.INITIAL_WINDOW_SIZE: 2**31 - 1})
        conn.send(h2raw.window_update(0, 2**31 - 1 - 65535))  # nothing but TCP holds the response back
        conn.request(1, b"/upload", method=b"POST", end_stream=False, body=b"abc")
        assert first_piece.wait(10)
        conn.request(3, b"/big")

        def reading() -> list[bool]:
            return [protocol.transport.is_reading() for protocol in running.server.context.connections]

        deadline = time.monotonic() + 10
        while reading() != [False]:
            assert time.monotonic() < deadline, "the server never stopped reading"
            time.sleep(0.01)
        go.set()
        # The upload's app now waits in receive() while nothing can arrive: several timeouts pass.
        time.sleep(SHORT * 4)
        assert running.server.counters.limit_hits == {}
        conn.send(h2raw.data(1, b"def", end_stream=True))
        response = conn.read_response(1)  # reading the big response lets the server read again
        assert response.status == 200 and bytes(response.body) == b"got 6"
        conn.send(h2raw.rst_stream(3))
        conn.expect_alive()
    assert running.server.counters.limit_hits == {}
    assert errors() == []


def test_http2_stalled_upload_after_the_response_started_is_reset_with_cancel(serve, errors):
    app = Reading()
    running = serve(app, body_timeout=SHORT, keep_alive_timeout=LONG)
    with h2_connection(running) as conn:
        conn.request(1, b"/respond-first", method=b"POST", end_stream=False, body=b"abc")
        reset = conn.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1, "the reset")
        assert reset.error_code == ErrorCode.CANCEL
        assert conn.responses[1].status == 200 and not conn.responses[1].ended
        conn.expect_alive()
    assert app.done.wait(10)
    assert app.last_message == "http.disconnect"
    assert errors() == []
