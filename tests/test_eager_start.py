"""Request handlers start eagerly on Python 3.12+ (`Runtime.spawn_eager`), and as plain tasks before.

An app that never waits answers inside the read that brought its request, with no loop iteration
between; but only once every event of that read is handled, so a stream reset in the same read is
seen as reset. Whatever the start, the exchange behaves the same: 500 and one log line for an app
that raises at once, contextvars per request, `http.disconnect` for a waiting app whose client left.
The socket-free tests prove each Python's path (CI runs 3.11, 3.12, 3.13); the others use real
servers and clients.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import logging
import threading
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from fakes import FakeTransport, ManualTimers
from hyperframe.frame import HeadersFrame, RstStreamFrame
from test_h2_socketless import parse_frames

from conftest import HTTP1_PARSER
from h2client import H2Client
from plexicorn import Config
from plexicorn.asgi.http import ClientDisconnected
from plexicorn.http1.connection import HTTP1Protocol
from plexicorn.http2.connection import HTTP2Protocol
from plexicorn.runtime.context import ServerContext
from plexicorn.runtime.services import EAGER_TASKS

HELLO = [(b"content-length", b"5")]


class Recorder:
    """An app that answers `hello` at once, recording what it saw and when."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": HELLO})
        await send({"type": "http.response.body", "body": b"hello"})


def _context(app: Any, runtime: ManualTimers) -> ServerContext:
    return ServerContext(app=app, config=Config(access_log=False, http1_parser=HTTP1_PARSER), runtime=runtime)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# -- socket-free: which path each Python takes ----------------------------------------------------

def test_http1_handler_that_never_waits_runs_within_the_read_on_312_and_on_the_next_turn_before() -> None:
    async def scenario() -> None:
        app = Recorder()
        runtime = ManualTimers()
        protocol = HTTP1Protocol(_context(app, runtime))
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /now HTTP/1.1\r\nhost: test\r\n\r\n")
        # 3.12+: done inside data_received, and not tracked as a running task; 3.11: still to run.
        assert app.seen == (["/now"] if EAGER_TASKS else [])
        assert bool(runtime.tasks) is not EAGER_TASKS
        assert not transport.written  # either way the response leaves in the next turn's one write
        await _settle()
        assert app.seen == ["/now"]
        assert transport.written.startswith(b"HTTP/1.1 200 ") and transport.written.endswith(b"\r\n\r\nhello")
        assert not runtime.tasks
    asyncio.run(scenario())


class H2Peer:
    def __init__(self, app: Any) -> None:
        self.runtime = ManualTimers()
        self.protocol = HTTP2Protocol(_context(app, self.runtime))
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        self.send()

    def send(self) -> None:
        self.protocol.data_received(self.client.data_to_send())

    def headers(self, path: str, *, end_stream: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":authority", "test"),
                                             (":path", path)], end_stream=end_stream)
        return stream_id

    def frames(self) -> list:
        frames = parse_frames(bytes(self.transport.written))
        self.transport.written.clear()
        return frames


def test_http2_handlers_of_one_read_run_within_it_on_312_after_all_its_frames() -> None:
    async def scenario() -> None:
        app = Recorder()
        peer = H2Peer(app)
        await _settle()
        peer.frames()
        first, second = peer.headers("/a"), peer.headers("/b")
        peer.send()  # both HEADERS in one read
        assert app.seen == (["/a", "/b"] if EAGER_TASKS else [])
        assert bool(peer.runtime.tasks) is not EAGER_TASKS
        await _settle()
        answered = {f.stream_id for f in peer.frames() if isinstance(f, HeadersFrame)}
        assert answered == {first, second}
    asyncio.run(scenario())


def test_http2_stream_reset_in_the_read_of_its_headers_is_seen_reset_by_its_handler() -> None:
    # Were the handler started as its HEADERS is handled, it would answer a stream the RST_STREAM
    # later in the same read closes; started after the read, it finds its client gone.
    outcome: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/ok":
            await Recorder()(scope, receive, send)
            return
        outcome.append(await receive())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HELLO})
        except ClientDisconnected:
            outcome.append("disconnected")

    async def scenario() -> None:
        peer = H2Peer(app)
        await _settle()
        peer.frames()
        reset = peer.headers("/reset", end_stream=False)
        peer.client.reset_stream(reset, 8)
        peer.send()  # HEADERS and RST_STREAM in one read
        if EAGER_TASKS:
            assert outcome == [{"type": "http.disconnect"}, "disconnected"]
        await _settle()
        assert outcome == [{"type": "http.disconnect"}, "disconnected"]
        ok = peer.headers("/ok")
        peer.send()
        await _settle()
        frames = peer.frames()
        assert [f.stream_id for f in frames if isinstance(f, HeadersFrame)] == [ok]  # none for the reset one
        assert not [f for f in frames if isinstance(f, RstStreamFrame)]
    asyncio.run(scenario())


# -- real servers ---------------------------------------------------------------------------------

REQUEST_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("request_path")


async def context_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    inherited = REQUEST_PATH.get("fresh")
    REQUEST_PATH.set(scope["path"])
    for _ in range(3):
        await asyncio.sleep(0)  # the other streams' handlers run meanwhile
    body = f"{inherited} {REQUEST_PATH.get()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _get_all(client: H2Client, paths: list[str]) -> list[int]:
    """GET each path, every HEADERS in one write; the stream ids."""
    ids = []
    for path in paths:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path.encode()),
                                             (b":authority", b"localhost")], end_stream=True)
        client.responses[stream_id] = {"status": None, "headers": [], "body": bytearray(), "ended": False,
                                       "reset": None}
        ids.append(stream_id)
    client.flush()
    return ids


def test_contextvars_stay_per_request_across_concurrent_http2_streams(serve) -> None:
    running = serve(context_app)
    with H2Client(running.port) as client:
        for round_ in range(2):  # the second round on the same connection: nothing inherited
            paths = [f"/r{round_}-{index}" for index in range(8)]
            ids = _get_all(client, paths)
            assert [bytes(client.response(stream_id)["body"]).decode() for stream_id in ids] == [
                f"fresh {path}" for path in paths]


def test_contextvars_stay_per_request_across_http1_keep_alive_requests(serve) -> None:
    running = serve(context_app)
    with httpx.Client() as client:
        for index in range(4):
            assert client.get(f"{running.url}/k{index}").text == f"fresh /k{index}"


async def raise_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/raise":
        raise RuntimeError("boom at once")
    await send({"type": "http.response.start", "status": 200, "headers": HELLO})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def logged(caplog, monkeypatch):
    """Records of plexicorn.error at WARNING and above, from any thread."""
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="plexicorn.error")
    return lambda: [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.WARNING]


def test_http1_app_raising_before_its_first_wait_gets_500_and_one_log_line(serve, logged) -> None:
    running = serve(raise_at_once)
    with httpx.Client() as client:
        response = client.get(running.url + "/raise")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        assert client.get(running.url + "/a").text == "hello"  # same connection
    [record] = logged()
    assert record.getMessage() == "Exception in ASGI application (GET /raise)"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom at once"


def test_http2_app_raising_before_its_first_wait_gets_500_the_streams_of_its_read_are_served(serve, logged) -> None:
    running = serve(raise_at_once)
    with H2Client(running.port) as client:
        ids = _get_all(client, ["/a", "/raise", "/b"])
        assert [client.response(stream_id)["status"] for stream_id in ids] == [200, 500, 200]
    [record] = logged()
    assert record.getMessage() == "Exception in ASGI application (GET /raise)"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom at once"


def test_waiting_handler_sees_disconnect_when_its_stream_is_reset_later(serve) -> None:
    waiting, disconnected = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        waiting.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    running = serve(app)
    with H2Client(running.port) as client:
        stream_id = client.request("POST", "/upload", end_stream=False)  # the body never comes
        assert waiting.wait(5)
        client.reset(stream_id)
        assert disconnected.wait(5)


def test_contextvars_stay_per_request_across_pipelined_http1_requests(serve) -> None:
    # The next pipelined request is started from a callback the previous app's task scheduled:
    # it must not run in (a copy of) that task's context.
    running = serve(context_app)
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    with sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")
        received = b""
        while received.count(b"fresh /") < 2 and (chunk := sock.recv(65536)):
            received += chunk
    assert b"fresh /one" in received and b"fresh /two" in received, received
