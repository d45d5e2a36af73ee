"""ASGI HTTP extensions: response trailers, 103 Early Hints and HTTP/2 server push.

Each is advertised in scope["extensions"] only where the connection can carry it, and
checked on the wire with clients that show the frames or bytes the server sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import h2.events
import h2.settings
import pytest

from conftest import connect
from h2client import H2Client

TRAILERS = "http.response.trailers"
EARLY_HINT = "http.response.early_hint"
PUSH = "http.response.push"
LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]


@pytest.fixture
def errors(caplog, monkeypatch):
    """ERROR records of plexicorn.error, from any thread (logging is process-wide)."""
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="plexicorn.error")
    return lambda: [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR]


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    return data


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


async def trailers_app(scope, receive, send):
    """A body in two chunks, then trailers in two messages."""
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"10")] if scope["path"] == "/sized" else []
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b"world"})
    await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abc")], "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False})


def test_http2_trailers_are_the_final_headers_after_the_data(serve):
    server = serve(trailers_app)
    with H2Client(server.port) as client:
        stream_id = client.request("GET", "/")
        response = client.response(stream_id)
        kinds = [type(e) for e in client.events if getattr(e, "stream_id", None) == stream_id]
    assert response["status"] == 200
    assert bytes(response["body"]) == b"helloworld"
    assert response["trailers"] == [(b"x-checksum", b"abc"), (b"grpc-status", b"0")]
    # The trailers come after every DATA frame and carry END_STREAM themselves.
    trailers_at = kinds.index(h2.events.TrailersReceived)
    assert h2.events.DataReceived not in kinds[trailers_at:]
    ended = client.events_of(h2.events.TrailersReceived)[0].stream_ended
    assert ended is not None and ended.stream_id == stream_id


def test_http11_chunked_response_ends_with_the_trailer_section(serve):
    server = serve(trailers_app)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = read_until_closed(sock)
    assert b"\r\ntransfer-encoding: chunked\r\n" in data.lower()
    assert data.endswith(b"\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\nx-checksum: abc\r\ngrpc-status: 0\r\n\r\n")


def test_trailers_are_dropped_on_a_content_length_response_which_still_completes(serve):
    server = serve(trailers_app)
    with connect(server) as sock:
        sock.sendall(b"GET /sized HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first = read_until(sock, b"helloworld")
        # The connection stays usable: the response was completed, not cut short.
        sock.sendall(b"GET /sized HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        second = read_until_closed(sock)
    for data in (first, second):
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"\r\n\r\nhelloworld")
        assert b"x-checksum" not in data


def test_trailers_without_the_start_flag_reset_the_stream_and_log_an_error(serve, errors):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-late", b"1")]})

    server = serve(app)
    with H2Client(server.port) as client:
        stream_id = client.request("GET", "/")
        response = client.response(stream_id)
    assert response["reset"] == 2  # INTERNAL_ERROR: the response cannot be completed
    assert "trailers" not in response
    assert any("Exception in ASGI application" in r.getMessage() and r.exc_info
               and "http.response.trailers" in str(r.exc_info[1]) for r in errors())


def test_body_after_the_trailers_is_refused(serve):
    refused: list[BaseException] = []
    done = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": [(b"x-done", b"1")]})
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            refused.append(exc)
        done.set()

    server = serve(app)
    with H2Client(server.port) as client:
        response = client.response(client.request("GET", "/"))
    assert done.wait(5)
    assert type(refused[0]).__name__ == "ASGIMessageError"
    assert bytes(response["body"]) == b"ok" and response["trailers"] == [(b"x-done", b"1")]


async def early_hint_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.early_hint", "links": LINKS})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.early_hint", "links": [b"</late.css>; rel=preload"]})  # ignored
    await send({"type": "http.response.body", "body": b"ok"})


def test_http2_early_hints_arrive_as_a_103_before_the_response(serve):
    server = serve(early_hint_app)
    with H2Client(server.port) as client:
        response = client.response(client.request("GET", "/"))
        heads = [e for e in client.events
                 if isinstance(e, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived))]
    assert response["status"] == 200 and bytes(response["body"]) == b"ok"
    assert [type(e) for e in heads] == [h2.events.InformationalResponseReceived, h2.events.ResponseReceived]
    assert heads[0].headers == [(b":status", b"103")] + [(b"link", link) for link in LINKS]


def test_http11_early_hints_arrive_as_a_103_before_the_response(serve):
    server = serve(early_hint_app)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = read_until_closed(sock)
    hint = (b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n"
            b"link: </app.js>; rel=preload; as=script\r\n\r\n")
    assert data.startswith(hint + b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nok")
    assert data.count(b" 103 ") == 1 and b"late.css" not in data


def test_http10_client_gets_no_early_hints(serve):
    server = serve(early_hint_app)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")


def _push_app(scopes: list[dict]):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        scopes.append(scope)
        if scope["path"] == "/style.css":
            assert await receive() == {"type": "http.request", "body": b"", "more_body": False}
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/css")]})
            await send({"type": "http.response.body", "body": b"body{}"})
            return
        # Pushed whether or not it is advertised: the server must ignore it when it cannot push.
        await send({"type": "http.response.push", "path": "/style.css", "headers": [(b"accept", b"text/css")]})
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"index"})
    return app


def test_http2_push_promises_and_serves_the_pushed_request(serve):
    scopes: list[dict] = []
    server = serve(_push_app(scopes))
    with H2Client(server.port) as client:
        stream_id = client.request("GET", "/")
        assert bytes(client.response(stream_id)["body"]) == b"index"
        promise = client.events_of(h2.events.PushedStreamReceived)[0]
        pushed = promise.pushed_stream_id
        client.wait_for(lambda: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == pushed
                                    for e in client.events))
        pushed_events = [e for e in client.events if getattr(e, "stream_id", None) == pushed]
    assert promise.parent_stream_id == stream_id
    assert promise.headers == [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                               (b":path", b"/style.css"), (b"accept", b"text/css")]
    assert dict(pushed_events[0].headers)[b":status"] == b"200"
    assert b"".join(e.data for e in pushed_events if isinstance(e, h2.events.DataReceived)) == b"body{}"
    parent, child = scopes
    assert PUSH in parent["extensions"]
    assert (child["path"], child["method"], child["http_version"]) == ("/style.css", "GET", "2")
    assert (b"accept", b"text/css") in child["headers"] and (b"host", b"localhost") in child["headers"]
    assert PUSH not in child["extensions"]  # a pushed stream cannot push (RFC 9113 §8.4)


def test_http2_push_is_not_offered_or_sent_when_the_client_disables_it(serve):
    scopes: list[dict] = []
    server = serve(_push_app(scopes))
    with H2Client(server.port, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0}) as client:
        stream_id = client.request("GET", "/")
        assert bytes(client.response(stream_id)["body"]) == b"index"
        # Barrier: anything the server sent for the request arrives before the PING's ACK.
        client.conn.ping(b"12345678")
        client.flush()
        client.wait_for(lambda: bool(client.events_of(h2.events.PingAckReceived)))
        assert client.events_of(h2.events.PushedStreamReceived) == []
    assert len(scopes) == 1
    assert PUSH not in scopes[0]["extensions"]
    assert {TRAILERS, EARLY_HINT} <= set(scopes[0]["extensions"])


def test_http2_push_over_the_running_handler_limit_is_skipped(serve):
    scopes: list[dict] = []
    server = serve(_push_app(scopes), h2_max_concurrent_streams=1)  # the pushing handler is the one
    with H2Client(server.port) as client:
        stream_id = client.request("GET", "/")
        assert bytes(client.response(stream_id)["body"]) == b"index"
        client.conn.ping(b"12345678")
        client.flush()
        client.wait_for(lambda: bool(client.events_of(h2.events.PingAckReceived)))
        assert client.events_of(h2.events.PushedStreamReceived) == []
    assert [scope["path"] for scope in scopes] == ["/"]


def test_extensions_are_advertised_where_the_connection_can_carry_them(serve):
    seen: dict[str, dict] = {}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen[scope["http_version"]] = scope["extensions"]
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    server = serve(app)
    with H2Client(server.port) as client:
        client.response(client.request("GET", "/"))
    for version in (b"1.1", b"1.0"):
        with connect(server) as sock:
            sock.sendall(b"GET / HTTP/" + version + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 204 ")
    ours = {TRAILERS, EARLY_HINT, PUSH}
    assert ours & set(seen["2"]) == {TRAILERS, EARLY_HINT, PUSH}
    assert ours & set(seen["1.1"]) == {TRAILERS, EARLY_HINT}
    assert ours & set(seen["1.0"]) == set()  # no chunked bodies, no 1xx for HTTP/1.0 (RFC 9110 §15.2)
    assert all(seen[version][name] == {} for version in seen for name in ours & set(seen[version]))


def test_http2_push_respects_the_clients_concurrent_stream_limit(serve):
    gate_events: list[asyncio.Event] = []
    promised: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/":
            for n in range(5):  # five pushes, while the client allows us one open stream
                await send({"type": "http.response.push", "path": f"/asset{n}", "headers": []})
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"page"})
            return
        promised.append(scope["path"])
        gate_events.append(asyncio.Event())
        await gate_events[-1].wait()  # pushed responses stay open: they count against the limit
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asset"})

    server = serve(app)
    with H2Client(server.port, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1}) as client:
        client.wait_for(lambda: client.events_of(h2.events.SettingsAcknowledged))
        page = client.request("GET", "/")
        assert bytes(client.response(page)["body"]) == b"page"
        client.conn.ping(b"pushlim!")
        client.flush()
        client.wait_for(lambda: client.events_of(h2.events.PingAckReceived))
        assert len(client.events_of(h2.events.PushedStreamReceived)) == 1  # RFC 9113 §5.1.2
        for event in gate_events:  # let the pushed handler finish
            server.loop.call_soon_threadsafe(event.set)
        client.wait_for(lambda: any(isinstance(e, h2.events.StreamEnded) and e.stream_id % 2 == 0
                                    for e in client.events))
    assert promised == ["/asset0"]
