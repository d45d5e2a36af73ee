"""Misbehaving or hostile clients cost bounded resources, and well-behaved edge cases still work."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
import time

import h2.events
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame, SettingsFrame

from conftest import connect
from h2client import H2Client

from plexicorn import Config, Server, StartupError

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MB = 1024 * 1024


class Gate:
    """An asyncio.Event living on the server's loop, created there lazily, opened from the test."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def _get(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def wait(self) -> None:
        await self._get().wait()

    def open(self, running) -> None:
        running.loop.call_soon_threadsafe(lambda: self._get().set())


@pytest.fixture
def errors(caplog, monkeypatch):
    """ERROR records from any logger (asyncio's 'exception was never retrieved' included)."""
    # An in-process CLI test may have configured `plexicorn` not to propagate to the root.
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR)
    return lambda: [r for r in caplog.records if r.levelno >= logging.ERROR]


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def write_buffer_size(running) -> int:
    return running.call(lambda: sum(c.transport.get_write_buffer_size() for c in running.server.context.connections
                                    if getattr(c, "transport", None) is not None))


def small_window_socket(running) -> socket.socket:
    """A client socket whose receive buffer is set before connecting, so its TCP window stays tiny."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", running.port))
    return sock


def send_without_reading(sock: socket.socket, unit: bytes, limit: int, timeout: float = 4.0,
                         stall: float = 1.0) -> tuple[int, bool]:
    """Send `unit` repeatedly on a non-blocking socket, never reading, until `limit` bytes are
    sent, `timeout` passes, or the peer stops taking data (no room for `stall` seconds: longer
    than the server needs to process one read). Returns (bytes sent, whether it stalled)."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout
    pending = memoryview(unit)
    while sent < limit and time.monotonic() < deadline:
        try:
            count = sock.send(pending)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:
                return sent, True
            continue
        sent += count
        pending = pending[count:] or memoryview(unit)
    return sent, False


def send_until_the_server_stops_reading(running, sock: socket.socket, unit: bytes, limit: int) -> int:
    """Send `unit` repeatedly on a non-blocking socket, never reading, until the socket takes
    nothing for a while and the server has stopped reading because its answers pile up unread
    (its transport paused, with bytes waiting in it: not just a turn's backlog of frames); fails
    once `limit` bytes went through (the server never stopped). Returns the bytes sent."""

    def held_by_the_peer() -> bool:
        return any(not c.transport.is_reading() and c.transport.get_write_buffer_size() > 0
                   for c in running.server.context.connections if getattr(c, "transport", None) is not None)

    sock.setblocking(False)
    sent = 0
    pending = memoryview(unit)
    deadline = time.monotonic() + 40  # within pytest's 60 s timeout, so that this message shows
    while True:
        assert time.monotonic() < deadline, f"the server still reads after {sent} bytes sent"
        try:
            count = sock.send(pending)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], 0.2)
            if not writable and running.call(held_by_the_peer):
                return sent
            continue
        sent += count
        pending = pending[count:] or memoryview(unit)
        assert sent < limit, f"the server read all {sent} bytes sent"


# -- 1. a graceful GOAWAY from the client lets in-flight streams finish ------------------------

def test_h2_client_goaway_no_error_still_gets_the_in_flight_response(serve, errors):
    gate, reached = Gate(), threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        reached.set()
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished after goaway"})

    running = serve(app)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/")
        assert reached.wait(5)
        # Raw: h2 on the client side would refuse to receive anything after its own GOAWAY.
        client.sock.sendall(GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR).serialize())
        assert wait_until(lambda: running.call(
            lambda: all(not c.lifecycle.accepting for c in running.server.context.connections)))
        gate.open(running)
        response = client.response(stream_id, timeout=5)
        assert response["status"] == 200
        assert bytes(response["body"]) == b"finished after goaway"
        assert response["ended"] and response["reset"] is None
        client.wait_closed(5)  # nothing left in flight: the server ends the connection
    assert errors() == []


def test_h2_frames_after_a_graceful_goaway_in_the_same_read_keep_the_connection(serve, errors):
    gate, reached = Gate(), threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        reached.set()
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"still answered"})

    running = serve(app)
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/")
        assert reached.wait(5)
        # GOAWAY(NO_ERROR) and a PING in one write: the server reads them in one go.
        client.sock.sendall(GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR).serialize()
                            + PingFrame(0, opaque_data=b"afterGA!").serialize())
        client.wait_for(lambda: any(e.ping_data == b"afterGA!"
                                    for e in client.events_of(h2.events.PingAckReceived)))
        gate.open(running)
        response = client.response(stream_id, timeout=5)
        assert bytes(response["body"]) == b"still answered" and response["reset"] is None
        assert not client.events_of(h2.events.ConnectionTerminated) or \
            client.events_of(h2.events.ConnectionTerminated)[0].error_code == ErrorCodes.NO_ERROR
    assert errors() == []


# -- 2. rapid reset ------------------------------------------------------------------------------

def test_h2_rapid_reset_flood_never_runs_more_handlers_than_the_stream_limit(serve, errors):
    gate = Gate()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await gate.wait()  # a slow handler that never looks at receive()

    running = serve(app)
    try:
        with H2Client(running.port) as client:
            conn = client.conn
            block = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"localhost")]
            for index in range(1000):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, block, end_stream=True)
                conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                if index % 250 == 249:  # HEADERS and their RST_STREAM arrive in the same read
                    client.flush()
            client.flush()
            client.ping_barrier()
            running_tasks = running.call(lambda: len(running.server.context.tasks))
            assert 0 < running_tasks <= 100
            assert not client.events_of(h2.events.ConnectionTerminated)
    finally:
        gate.open(running)
    assert errors() == []


# -- 3. clients that send but never read -------------------------------------------------------

def test_http1_pipelining_client_that_never_reads_keeps_the_write_buffer_bounded(serve):
    chunk = b"x" * 65536

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(chunk)).encode())]})
        await send({"type": "http.response.body", "body": chunk})

    running = serve(app)
    with small_window_socket(running) as sock:
        request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        sent, _ = send_without_reading(sock, request * 100, 2 * MB)
        # Each request asks for 64 KiB: unbounded, a few hundred KB of requests are gigabytes.
        assert sent > 100 * len(request)
        assert write_buffer_size(running) < 4 * MB


def test_h2_ping_flood_from_a_client_that_never_reads_keeps_the_write_buffer_bounded(serve):
    async def app(scope, receive, send):
        pass

    # The write bound alone, with a PING budget the flood never exhausts (test_flood_h2 has the budget).
    # A connection of PINGs alone opens no stream: on a loaded machine, filling the kernel's
    # buffers can outlast --keep-alive-timeout, whose GOAWAY would end the connection (and its
    # lingering close reads everything sent): that timer is kept out of this test.
    running = serve(app, h2_max_control_frames=10**9, keep_alive_timeout=300)
    with small_window_socket(running) as sock:
        sock.sendall(H2_PREFACE + SettingsFrame(0).serialize())
        pings = PingFrame(0, opaque_data=b"12345678").serialize() * 1000
        # Every PING asks for a PING ACK of the same size: unbounded, the acks pile up as fast
        # as the server can read (about as fast as h2 parses PINGs: slowly).
        # Sending stops only if the server stops reading while its answers go unread.
        send_until_the_server_stops_reading(running, sock, pings, 256 * MB)
        assert write_buffer_size(running) < 4 * MB


# -- 4. app body not matching its content-length ------------------------------------------------

@pytest.mark.parametrize("body", [b"hello world", b"hi"], ids=["longer", "shorter"])
def test_http1_body_not_matching_content_length_closes_the_connection(serve, body):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    running = serve(app)
    with connect(running, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # socket.timeout here means the client was left hanging
            received += chunk
    # Whatever went out, it must not pass for a complete 5-byte response.
    head, _, sent_body = received.partition(b"\r\n\r\n")
    assert len(sent_body) < 5 or not head
    response = httpx.get(running.url + "/ok", timeout=5)
    assert (response.status_code, response.text) == (200, "ok")


# -- 5. CONNECT over HTTP/2 ------------------------------------------------------------------------

def test_h2_connect_gets_501_and_its_stream_is_closed_on_both_sides(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    running = serve(app)
    with H2Client(running.port) as client:
        # More CONNECTs than the 100 concurrent streams: a stream left half-open would count
        # against the limit (on both sides) and the later ones would fail.
        for _ in range(120):
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
                                     end_stream=False)
            client.flush()
            client.responses[stream_id] = entry = {"status": None, "headers": [], "body": bytearray(),
                                                   "ended": False, "reset": None}
            # The response ends the stream; the request side, still open, is closed by RST_STREAM(NO_ERROR).
            client.wait_for(lambda: entry["reset"] is not None, timeout=5)
            assert entry["status"] == 501
            assert entry["ended"]
            assert entry["reset"] == ErrorCodes.NO_ERROR
        assert running.call(lambda: sum(c.conn.open_inbound_streams for c in running.server.context.connections)) == 0
        stream_id = client.request("GET", "/")
        response = client.response(stream_id, timeout=5)
        assert (response["status"], bytes(response["body"])) == (200, b"ok")
        assert not client.events_of(h2.events.ConnectionTerminated)


# -- 6. header list size limit -------------------------------------------------------------------

def test_h2_header_block_over_the_limit_is_refused_before_settings_are_acknowledged(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"accepted"})

    running = serve(app, h2_max_header_list_size=4096)
    # H2Client sends its preface and, right after, the request: nothing is read in between,
    # so the server sees the request before our SETTINGS ACK.
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/", headers=[(b"x-big", b"a" * 20_000)])
        entry = client.responses[stream_id]

        def refused() -> bool:
            return bool(client.events_of(h2.events.ConnectionTerminated)) or entry["reset"] is not None \
                or entry["ended"]
        try:
            client.wait_for(refused, timeout=5)
        except ConnectionError:
            pass  # closed straight after its GOAWAY: the events are still recorded
        assert entry["status"] is None and not entry["ended"]
        terminated = client.events_of(h2.events.ConnectionTerminated)
        if terminated:
            assert terminated[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
        else:
            assert entry["reset"] in (ErrorCodes.REFUSED_STREAM, ErrorCodes.ENHANCE_YOUR_CALM,
                                      ErrorCodes.PROTOCOL_ERROR)


# -- 7. redirect_http needs an HTTPS host:port ------------------------------------------------------

def test_redirect_http_with_only_unix_binds_is_a_startup_error(tls_files, tmp_path):
    async def app(scope, receive, send):
        pass

    config = Config(bind=(f"unix:{tmp_path / 'https.sock'}",), certfile=tls_files[0], keyfile=tls_files[1],
                    redirect_http="127.0.0.1:0", lifespan="off")
    server = Server(app, config)
    with pytest.raises(StartupError) as caught:
        asyncio.run(server.startup())
    message = str(caught.value)
    assert "--redirect-http" in message
    assert "\n" not in message
