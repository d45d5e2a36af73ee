"""A misbehaving app costs one exchange, never the server: 500, reset or close, and one error log."""

from __future__ import annotations

import logging
import threading

import h2.events
import httpx
import pytest
from h2.errors import ErrorCodes

from conftest import connect
from h2client import H2Client

HTTP_VERSIONS = {"h2": "HTTP/2", "http1": "HTTP/1.1"}


async def _start(send, status=200, headers=()):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})


async def raise_before_start(send):
    raise RuntimeError("boom before start")


async def raise_after_start(send):
    await _start(send)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom after start")


async def return_without_response(send):
    return


async def return_mid_body(send):
    await _start(send)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def body_before_start(send):
    await send({"type": "http.response.body", "body": b"too early"})


async def start_twice(send):
    await _start(send)
    await _start(send)


async def text_body(send):
    # The last body as str: refused before the response counts as complete, so it is cut short
    # (the client must not wait for a body that never comes).
    await _start(send)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    await send({"type": "http.response.body", "body": "the rest"})


async def string_status(send):
    await send({"type": "http.response.start", "status": "200", "headers": []})


async def ok(send):
    await _start(send, headers=[(b"content-length", b"2")])
    await send({"type": "http.response.body", "body": b"ok"})


BEHAVIOURS = {f.__name__: f for f in (raise_before_start, raise_after_start, return_without_response,
                                      return_mid_body, body_before_start, start_twice, text_body, string_status,
                                      ok)}


async def app(scope, receive, send):
    """Dispatch on the path's first segment: /<behaviour>."""
    if scope["type"] != "http":
        return
    await BEHAVIOURS[scope["path"].strip("/")](send)


@pytest.fixture
def errors(caplog, monkeypatch):
    """ERROR records of plexicorn.error, from any thread (logging is process-wide)."""
    # An in-process CLI test may have configured `plexicorn` not to propagate to the root.
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="plexicorn.error")

    def records(path: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR
                and path in r.getMessage()]
    return records


def _client(protocol: str, verify) -> httpx.Client:
    return httpx.Client(http2=protocol == "h2", verify=verify)


def _get_ok(client: httpx.Client, running) -> None:
    response = client.get(running.url + "/ok")
    assert (response.status_code, response.text) == (200, "ok")


# -- before http.response.start: the server can still answer 500 --------------------------------

@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_exception_before_response_start_gives_500_and_one_logged_traceback(serve, verify, errors, protocol):
    running = serve(app, tls=True)
    with _client(protocol, verify) as client:
        response = client.get(running.url + "/raise_before_start")
        assert response.http_version == HTTP_VERSIONS[protocol]
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert response.headers["content-length"] == str(len(response.content))
        _get_ok(client, running)  # same connection: a 500 does not end keep-alive or the h2 connection
    [record] = errors("/raise_before_start")
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "boom before start"


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_app_returning_without_a_response_gives_500_and_an_error_log(serve, verify, errors, protocol):
    running = serve(app, tls=True)
    with _client(protocol, verify) as client:
        response = client.get(running.url + "/return_without_response")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        _get_ok(client, running)
    [record] = errors("/return_without_response")
    assert "without starting a response" in record.getMessage()


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_body_before_start_gives_500_and_names_the_expected_message(serve, verify, errors, protocol):
    running = serve(app, tls=True)
    with _client(protocol, verify) as client:
        response = client.get(running.url + "/body_before_start")
        assert response.status_code == 500
        _get_ok(client, running)
    [record] = errors("/body_before_start")
    assert record.exc_info is not None
    assert "expected 'http.response.start'" in str(record.exc_info[1])


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_status_given_as_a_string_gives_500(serve, verify, errors, protocol):
    running = serve(app, tls=True)
    with _client(protocol, verify) as client:
        response = client.get(running.url + "/string_status")
        assert response.status_code == 500
        _get_ok(client, running)
    [record] = errors("/string_status")
    assert record.exc_info is not None
    assert "'200'" in str(record.exc_info[1])


# -- after http.response.start: the response can only be cut short -------------------------------

@pytest.mark.parametrize("path", ["/raise_after_start", "/return_mid_body", "/start_twice", "/text_body"])
@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_started_response_is_aborted_and_the_client_sees_an_error(serve, verify, errors, protocol, path):
    running = serve(app, tls=True)
    with _client(protocol, verify) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(running.url + path)
        _get_ok(client, running)
    [record] = errors(path)
    if path == "/return_mid_body":
        assert "before completing its response" in record.getMessage()
    else:
        assert record.exc_info is not None
    if path == "/start_twice":
        assert "'http.response.start'" in str(record.exc_info[1])
    if path == "/text_body":
        assert "must be a byte string, not str" in str(record.exc_info[1])


@pytest.mark.parametrize("path", ["/raise_after_start", "/return_mid_body", "/start_twice", "/text_body"])
def test_h2_started_response_is_reset_with_internal_error_and_the_connection_lives_on(
        serve, client_ssl_context, errors, path):
    running = serve(app, tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        stream_id = client.request("GET", path)
        response = client.response(stream_id)
        assert response["status"] == 200  # the first response's headers went out
        assert response["reset"] == ErrorCodes.INTERNAL_ERROR
        assert not response["ended"]
        assert not client.events_of(h2.events.ConnectionTerminated)
        second = client.request("GET", "/ok")
        assert client.response(second)["status"] == 200
    assert len(errors(path)) == 1


@pytest.mark.parametrize("path", ["/raise_after_start", "/return_mid_body", "/start_twice", "/text_body"])
def test_http1_started_response_is_cut_short_by_closing_the_connection(
        serve, client_ssl_context, errors, path):
    running = serve(app, tls=True)
    with connect(running, client_ssl_context(alpn=("http/1.1",))) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # ends only when the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n"), "the chunked body must not look complete"
    if path != "/start_twice":
        assert body == b"7\r\npartial\r\n"
    assert len(errors(path)) == 1


def test_server_still_serves_new_connections_after_every_kind_of_app_error(serve, verify, errors):
    running = serve(app, tls=True)
    for protocol in HTTP_VERSIONS:
        with _client(protocol, verify) as client:
            for name in BEHAVIOURS:
                if name == "ok":
                    continue
                try:
                    client.get(running.url + "/" + name)
                except httpx.RemoteProtocolError:
                    pass  # a started response was aborted
    for protocol in HTTP_VERSIONS:
        with _client(protocol, verify) as client:  # a fresh connection
            response = client.get(running.url + "/ok")
            assert response.http_version == HTTP_VERSIONS[protocol]
            assert (response.status_code, response.text) == (200, "ok")
    # One error per failed request, none for anything else.
    assert len(errors("")) == 2 * (len(BEHAVIOURS) - 1)
    assert running.call(lambda: len(running.server.context.tasks)) == 0


# -- response headers neither protocol may carry --------------------------------------------------

INVALID_HEADERS = {
    "crlf-in-value": (b"x-injected", b"a\r\nset-cookie: stolen=1"),
    "nul-in-value": (b"x-nul", b"a\x00b"),
    "space-in-name": (b"x bad", b"v"),
    "empty-name": (b"", b"v"),
    "pseudo-header": (b":status", b"204"),
}


@pytest.mark.parametrize("header", INVALID_HEADERS.values(), ids=INVALID_HEADERS)
@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_invalid_response_header_gives_500_and_the_connection_stays_usable(
        serve, verify, errors, protocol, header):
    async def bad_header_app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            return await ok(send)
        await _start(send, headers=[(b"content-type", b"text/plain"), header])
        await send({"type": "http.response.body", "body": b"never sent"})

    running = serve(bad_header_app, tls=True)
    with _client(protocol, verify) as client:
        response = client.get(running.url + "/bad", timeout=5)
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert "x-injected" not in response.headers and "set-cookie" not in response.headers
        _get_ok(client, running)  # on HTTP/2, proves the HPACK state is still in step
    [record] = errors("/bad")
    assert record.exc_info is not None


@pytest.mark.parametrize("value", [b"a\x0bb", b"a\x0cb", b" leading", b"trailing\t"])
def test_http1_values_h11_refuses_still_give_500_though_h11_is_asked_to_trust_the_rest(
        serve, verify, errors, value):
    """http1/h11lib.py's `response` lets h11 skip its own checks only for fields that pass the
    same checks: a field that would not still reaches h11's, as before."""
    async def header_app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            return await ok(send)
        await _start(send, headers=[(b"x-fine", b"\x01ctl ok"), (b"x-value", value)])
        await send({"type": "http.response.body", "body": b"never sent"})

    running = serve(header_app, tls=True)
    with _client("http1", verify) as client:
        assert client.get(running.url + "/bad", timeout=5).status_code == 500
        _get_ok(client, running)
    [record] = errors("/bad")
    assert record.exc_info is not None


def test_http1_fields_h11_accepts_are_sent_as_given(serve, verify):
    async def header_app(scope, receive, send):
        if scope["type"] == "http":
            await _start(send, headers=[(b"X-Upper", b"a\tb  c"), (b"x-ctl", b"\x01"), (b"x-empty", b"")])
            await send({"type": "http.response.body", "body": b"ok"})

    running = serve(header_app, tls=True)
    with _client("http1", verify) as client:
        response = client.get(running.url + "/")
    assert response.status_code == 200
    assert response.headers["x-upper"] == "a\tb  c" and response.headers["x-ctl"] == "\x01"
    assert response.headers["x-empty"] == ""


def test_te_response_header_is_dropped_on_http2_like_other_connection_specific_fields(
        serve, client_ssl_context):
    app_done = threading.Event()

    async def te_app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await _start(send, headers=[(b"te", b"gzip"), (b"content-length", b"2")])
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            app_done.set()

    running = serve(te_app, tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        stream_id = client.request("GET", "/")
        assert app_done.wait(5)
        # Whatever the server did when the app finished, it queued before answering this PING.
        client.conn.ping(b"12345678")
        client.flush()
        client.wait_for(lambda: bool(client.events_of(h2.events.PingAckReceived)))
        response = client.responses[stream_id]
        assert (response["status"], response["ended"], bytes(response["body"])) == (200, True, b"ok")
        assert b"te" not in dict(response["headers"])


def test_a_bad_body_after_the_client_left_is_a_disconnect_not_an_app_error(serve, client_ssl_context, errors):
    # The client's reset comes first: the app's send() raises ClientDisconnected, as for any
    # body once the client is gone, and nothing is logged as an app error.
    raised: list[str] = []
    sent = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await _start(send)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        try:
            await send({"type": "http.response.body", "body": "the rest"})
        except Exception as exc:
            raised.append(type(exc).__name__)
            raise
        finally:
            sent.set()

    running = serve(app, tls=True)
    with H2Client(running.port, ssl_context=client_ssl_context()) as client:
        stream_id = client.request("GET", "/bad-after-reset")
        client.wait_for(lambda: bytes(client.responses[stream_id]["body"]) == b"partial")
        client.reset(stream_id)
        assert sent.wait(5)
    assert raised == ["ClientDisconnected"]
    assert errors("/bad-after-reset") == []
