"""WSGI (PEP 3333) apps over HTTP/1.1 and HTTP/2: environ, streamed input and output, errors.

Every app here is wrapped in `wsgiref.validate.validator`, so a PEP 3333 violation by the server
(a wrong environ type, a missing close(), a bad input stream) fails with an AssertionError in
the app's thread, which the client sees as a 500 or a cut response.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from wsgiref.validate import validator

import httpx
import pytest

from plexicorn import Config
from plexicorn.errors import StartupError
from plexicorn.server import adapt_app
from plexicorn.importer import detect_interface

from tests.h2client import H2Client

WAIT = 10.0
HTTP_VERSIONS = {"h1": "HTTP/1.1", "h2": "HTTP/2"}


def _client(protocol: str, running, verify) -> httpx.Client:
    """HTTP/1.1, or HTTP/2 (ALPN over TLS, prior knowledge over cleartext)."""
    if protocol == "h2":
        return httpx.Client(http1=not running.tls, http2=True, verify=verify, timeout=WAIT)
    return httpx.Client(verify=verify, timeout=WAIT)


@pytest.fixture
def errors(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="plexicorn.error")

    def records(text: str = "") -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR
                and text in r.getMessage()]
    return records


def wait_until(condition, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def serve_wsgi(serve, app, **settings):
    return serve(validator(app), interface="wsgi", **settings)


# -- environ -------------------------------------------------------------------------------------

def environ_app(environ, start_response):
    shown = {key: value for key, value in environ.items() if isinstance(value, (str, bool, tuple))}
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_environ_follows_pep_3333(serve, verify, protocol):
    running = serve_wsgi(serve, environ_app, tls=True, root_path="/api")
    with _client(protocol, running, verify) as client:
        response = client.post(running.url + "/caf%C3%A9/a%2Fb?x=1&y=%20", content=b"hello",
                               headers=[("content-type", "text/plain"), ("x-many", "a"), ("x-many", "b"),
                                        ("x_sneaky", "1")])
    assert response.status_code == 200
    environ = response.json()
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/api"
    # Percent-decoded bytes as latin-1: the app re-encodes to get UTF-8 back.
    assert environ["PATH_INFO"] == "/caf\xc3\xa9/a/b"
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a/b"
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_MANY"] == "a, b"
    assert environ["HTTP_HOST"] == f"localhost:{running.port}"
    assert "HTTP_X_SNEAKY" not in environ  # a name with "_" would be ambiguous with "x-sneaky"
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == str(running.port)
    assert environ["SERVER_PROTOCOL"] == HTTP_VERSIONS[protocol]
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"].isdigit()
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.multithread"] is True and environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False and environ["wsgi.input_terminated"] is True


def test_http2_cookies_sent_as_several_fields_are_joined_with_semicolons(serve):
    running = serve_wsgi(serve, environ_app)
    with H2Client(running.port) as client:
        stream = client.request("GET", "/", headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2"),
                                                     (b"accept", b"x"), (b"accept", b"y")])
        response = client.response(stream)
    environ = json.loads(bytes(response["body"]))
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_ACCEPT"] == "x, y"
    assert environ["wsgi.url_scheme"] == "http"


def test_on_a_unix_socket_server_name_comes_from_the_host_field(serve, tmp_path):
    socket_path = str(tmp_path / "app.sock")
    serve_wsgi(serve, environ_app, bind=(f"unix:{socket_path}",))
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=WAIT) as client:
        environ = client.get("http://example.com:8080/").json()
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8080")
        assert "REMOTE_ADDR" not in environ  # no peer address on a Unix socket
        environ = client.get("http://example.com/").json()
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "80")


# -- wsgi.input ----------------------------------------------------------------------------------

def digest_app(environ, start_response):
    """Reads the body with the method the path names; answers its size and SHA-256."""
    stream = environ["wsgi.input"]
    digest, size = hashlib.sha256(), 0
    how = environ["PATH_INFO"].strip("/")
    if how == "pieces":
        while piece := stream.read(65536):
            assert len(piece) <= 65536
            digest.update(piece)
            size += len(piece)
    elif how == "all":
        data = stream.read(-1)
        digest.update(data)
        size = len(data)
    elif how == "lines":
        for line in stream.readlines():
            digest.update(line)
            size += len(line)
    elif how == "iterate":
        for line in stream:
            assert line.endswith(b"\n") or b"\n" not in line
            digest.update(line)
            size += len(line)
    body = f"{size} {digest.hexdigest()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
@pytest.mark.parametrize("how", ["pieces", "all", "lines", "iterate"])
def test_request_body_is_streamed_to_the_app_with_and_without_a_length(serve, verify, protocol, how):
    running = serve_wsgi(serve, digest_app, tls=protocol == "h2")
    payload = b"".join(b"line %d %s\n" % (i, b"x" * (i % 300)) for i in range(20000)) + b"no newline at the end"

    def chunks():  # no content-length: chunked over HTTP/1.1, DATA until END_STREAM over HTTP/2
        for start in range(0, len(payload), 10000):
            yield payload[start:start + 10000]

    with _client(protocol, running, verify) as client:
        for content in (payload, chunks()):
            response = client.post(running.url + f"/{how}", content=content)
            assert response.status_code == 200
            assert response.text == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


def test_readline_with_a_size_stops_there(serve):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        parts = [stream.readline(4), stream.readline(), stream.readline(100), stream.read(3), stream.read(10)]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([part.decode() for part in parts]).encode()]

    running = serve_wsgi(serve, app)
    response = httpx.post(running.url, content=b"abcdefg\nhi\njklmnop")
    assert response.json() == ["abcd", "efg\n", "hi\n", "jkl", "mnop"]


def test_input_read_raises_oserror_when_the_client_goes_away(serve):
    outcome: dict[str, object] = {}
    done = threading.Event()

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read(1 << 20)
        except OSError as exc:
            outcome["error"] = exc
        finally:
            done.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    running = serve_wsgi(serve, app)
    with H2Client(running.port) as client:
        stream = client.request("POST", "/", body=b"x" * 1000, end_stream=False)
        client.reset(stream)
        assert done.wait(WAIT)
    assert isinstance(outcome["error"], OSError)


# -- responses -----------------------------------------------------------------------------------

def test_write_callable_and_iterable_are_sent_in_order(serve):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"")
        return iter([b"then ", b"", b"iterated"])

    running = serve_wsgi(serve, app)
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2) as client:
            assert client.get(running.url).text == "written then iterated"


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_generator_chunks_reach_the_client_before_the_app_yields_the_next(serve, verify, protocol):
    """Each chunk is sent as it is yielded: the app waits for the client to have the first."""
    first_seen = threading.Event()
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        class Body:
            def __iter__(self):
                yield b"first;"
                assert first_seen.wait(WAIT), "the client never got the first chunk"
                yield b"second"

            def close(self):
                closed.set()
        return Body()

    running = serve_wsgi(serve, app, tls=True)
    with _client(protocol, running, verify) as client, client.stream("GET", running.url) as response:
        pieces = response.iter_raw()
        assert next(pieces) == b"first;"
        first_seen.set()
        assert b"".join(pieces) == b"second"
    assert closed.wait(WAIT)


def test_single_item_list_gets_the_body_in_one_piece_and_head_gets_none(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    running = serve_wsgi(serve, app)
    assert httpx.get(running.url).text == "hello"
    for http2 in (False, True):
        with httpx.Client(http1=not http2, http2=http2) as client:
            response = client.head(running.url)
            assert response.status_code == 200
            assert response.headers["content-length"] == "5"
            assert response.content == b""


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_close_is_called_when_the_client_disconnects_mid_stream(serve, verify, protocol):
    closed = threading.Event()
    started = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def endless():
            started.set()
            while not closed.is_set():
                yield b"x" * 65536  # the client stops reading: the thread waits in send
        body = endless()

        class Body:
            def __iter__(self):
                return body

            def close(self):
                closed.set()
        return Body()

    running = serve_wsgi(serve, app, tls=True)
    with _client(protocol, running, verify) as client, client.stream("GET", running.url) as response:
        next(response.iter_raw())
        assert started.is_set()
    # Leaving the block closed the stream (HTTP/2: RST_STREAM) or the connection (HTTP/1.1).
    client.close()
    assert closed.wait(WAIT)


def test_close_is_called_and_no_thread_is_left_waiting_when_the_server_stops(serve):
    closed = threading.Event()
    sending = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def endless():
            while True:
                sending.set()
                yield b"x" * 65536

        class Body:
            def __iter__(self):
                return endless()

            def close(self):
                closed.set()
        return Body()

    running = serve_wsgi(serve, app, graceful_timeout=0.5)
    with H2Client(running.port, auto_window=False) as client:
        client.request("GET", "/")
        assert sending.wait(WAIT)
        running.stop()
    assert closed.wait(WAIT)


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_exception_before_start_response_is_a_500_logged_once(serve, verify, errors, protocol):
    def app(environ, start_response):
        raise ValueError("wsgi boom")

    running = serve_wsgi(serve, app, tls=True)
    with _client(protocol, running, verify) as client:
        response = client.get(running.url + "/boom")
        assert response.status_code == 500
    [record] = errors("/boom")
    assert str(record.exc_info[1]) == "wsgi boom"
    assert record.getMessage() == "Exception in WSGI application (GET /boom)"


def test_exc_info_replaces_headers_not_yet_sent(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("missing")
        except KeyError:
            import sys
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    running = serve_wsgi(serve, app)
    response = httpx.get(running.url)
    assert (response.status_code, response.text) == (503, "sorry")


@pytest.mark.parametrize("protocol", HTTP_VERSIONS)
def test_exc_info_after_headers_were_sent_reraises_and_cuts_the_response(serve, verify, errors, protocol):
    def app(environ, start_response):
        import sys
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise RuntimeError("late failure")
        except RuntimeError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"never sent"]

    running = serve_wsgi(serve, app, tls=True)
    with _client(protocol, running, verify) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(running.url + "/late")
    [record] = errors("/late")
    assert str(record.exc_info[1]) == "late failure"


def test_hop_by_hop_header_from_the_app_is_refused_with_an_error_in_the_log(serve, errors):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"x"]

    running = serve(app)  # not wrapped: the validator would refuse it before the server does
    response = httpx.get(running.url + "/hop")
    assert response.status_code == 500
    [record] = errors("/hop")
    assert "hop-by-hop header 'Connection'" in str(record.exc_info[1])


def test_wsgi_errors_lines_reach_the_error_log(serve, errors):
    def app(environ, start_response):
        environ["wsgi.errors"].write("first line\nsecond ")
        environ["wsgi.errors"].write("line\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    running = serve_wsgi(serve, app)
    assert httpx.get(running.url).status_code == 200
    assert [r.getMessage() for r in errors("line")] == ["first line", "second line"]


# -- wsgi.file_wrapper -------------------------------------------------------------------------

@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4096 + b"tail")  # 1 MiB and a bit
    return path


class CountingFile(io.FileIO):
    """A file that counts the reads made through it (the efficient paths make none)."""

    reads = 0

    def read(self, size=-1):
        CountingFile.reads += 1
        return super().read(size)


@pytest.mark.parametrize("validated", [True, False], ids=["validator", "bare"])
@pytest.mark.parametrize(("protocol", "tls"), [("h1", False), ("h1", True), ("h2", False), ("h2", True)])
def test_file_wrapper_sends_the_file(serve, verify, big_file, protocol, tls, validated, monkeypatch):
    opened: list = []
    monkeypatch.setattr(CountingFile, "reads", 0)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        file = io.BytesIO(big_file.read_bytes()) if path == "/memory" else CountingFile(str(big_file), "rb")
        if path == "/disk-offset":
            file.seek(1000)
        opened.append(file)
        size = big_file.stat().st_size - (1000 if path == "/disk-offset" else 0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](file, 32768)

    # The validator hides the wrapper behind its own iterator: the server must then iterate it.
    running = serve_wsgi(serve, app, tls=tls) if validated else serve(app, tls=tls, interface="wsgi")
    expected = big_file.read_bytes()
    with _client(protocol, running, verify) as client:
        response = client.get(running.url + "/disk")
        assert response.content == expected
        if not validated:
            # Sent by the server's file path (sendfile on cleartext HTTP/1.1, else pathsend).
            assert CountingFile.reads == 0
        for path, body in (("/memory", expected), ("/disk-offset", expected[1000:])):
            response = client.get(running.url + path)
            assert response.status_code == 200
            assert response.content == body, path
            head = client.head(running.url + path)
            assert head.content == b"" and head.headers["content-length"] == str(len(body))
    # close() runs in the app's thread once the last chunk is handed over: maybe just after
    # the client has the response.
    assert len(opened) == 5
    wait_until(lambda: all(file.closed for file in opened))


def test_file_wrapper_on_a_file_whose_name_now_names_another_is_sent_from_the_open_file(serve, verify, tmp_path):
    """pathsend opens the file again by name: when the name no longer leads to the open file
    (replaced, deleted), the server reads the file the app opened instead."""
    path = tmp_path / "replaced.txt"

    def app(environ, start_response):
        path.write_bytes(b"the original")
        file = open(path, "rb")
        path.unlink()
        path.write_bytes(b"a replacement")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](file)

    running = serve(app, tls=True, interface="wsgi")
    with _client("h2", running, verify) as client:
        assert client.get(running.url).text == "the original"


# -- the pool --------------------------------------------------------------------------------------

def test_calls_beyond_the_pool_wait_while_the_loop_serves_other_connections(serve):
    """100 streams on one HTTP/2 connection, 10 threads: never more than 10 calls at once,
    all complete, and another connection is answered (a PING) while calls wait for a thread."""
    lock = threading.Lock()
    state = {"running": 0, "most": 0}
    full = threading.Event()
    release = threading.Event()

    def app(environ, start_response):
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            if state["running"] == 10:
                full.set()
        try:
            release.wait(WAIT)
        finally:
            with lock:
                state["running"] -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    running = serve_wsgi(serve, app, wsgi_threads=10, h2_max_concurrent_streams=128)
    with H2Client(running.port) as client:
        streams = [client.request("GET", f"/{i}") for i in range(100)]
        assert full.wait(WAIT)
        with H2Client(running.port) as probe:
            probe.conn.ping(b"probe!!!")
            probe.flush()
            probe.wait_for(lambda: any(getattr(e, "ping_data", None) == b"probe!!!" for e in probe.events))
        release.set()
        bodies = [bytes(client.response(stream)["body"]) for stream in streams]
    assert bodies == [f"/{i}".encode() for i in range(100)]
    assert state["most"] == 10


def test_a_call_waiting_for_a_thread_reads_none_of_its_body(serve):
    """With the only thread busy, a second stream's upload stops at its flow-control window:
    the server sends no WINDOW_UPDATE for it until its call has a thread and reads."""
    busy = threading.Event()
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/busy":
            busy.set()
            release.wait(WAIT)
        size = len(environ["wsgi.input"].read(-1))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(size).encode()]

    running = serve_wsgi(serve, app, wsgi_threads=1, h2_initial_window_size=65535)
    import h2.events
    with H2Client(running.port) as client:
        first = client.request("GET", "/busy")
        assert busy.wait(WAIT)
        upload = client.request("POST", "/upload", end_stream=False)
        client.conn.send_data(upload, b"x" * 16384)
        client.flush()
        # A PING answered after our DATA means the server has processed it: any WINDOW_UPDATE
        # it meant to send for that DATA would be before the PING ACK (one write per turn).
        client.conn.ping(b"barrier!")
        client.flush()
        client.wait_for(lambda: bool(client.events_of(h2.events.PingAckReceived)))
        assert not [e for e in client.events_of(h2.events.WindowUpdated) if e.stream_id == upload]
        release.set()
        client.send_body(upload, b"y" * 300000)
        assert client.response(first)["status"] == 200
        assert bytes(client.response(upload)["body"]) == b"316384"


# -- interface detection ----------------------------------------------------------------------------

def _wsgi(environ, start_response):
    return []


async def _asgi3(scope, receive, send):
    pass


class _ASGI2:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        pass


class _WSGIObject:
    def __call__(self, environ, start_response):
        return []


class _ASGIObject:
    async def __call__(self, scope, receive, send):
        pass


@pytest.mark.parametrize(("app", "interface"), [
    (_wsgi, "wsgi"), (_WSGIObject(), "wsgi"), (_asgi3, "asgi3"), (_ASGIObject(), "asgi3"),
    (_ASGI2, "asgi2"), (lambda scope: _ASGI2(scope), "asgi2"),
])
def test_interface_is_told_apart_by_the_signature(app, interface):
    assert detect_interface(app) == interface


def test_interface_detection_recognises_a_flask_app():
    import flask
    assert detect_interface(flask.Flask("x")) == "wsgi"


def test_ambiguous_signature_asks_for_interface():
    with pytest.raises(StartupError, match="fits several interfaces; pass --interface"):
        detect_interface(validator(_wsgi), name="m:app")
    assert detect_interface(validator(_wsgi), "wsgi") == "wsgi"
    with pytest.raises(StartupError, match="cannot be called as --interface asgi3"):
        detect_interface(_wsgi, "asgi3", name="m:app")


def test_asgi2_app_is_served(serve):
    class App:
        def __init__(self, scope):
            self.scope = scope

        async def __call__(self, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": self.scope["path"].encode()})

    running = serve(App)
    assert httpx.get(running.url + "/legacy").text == "/legacy"


def test_lifespan_on_with_a_wsgi_app_is_one_startup_error():
    with pytest.raises(StartupError, match="a WSGI app has no lifespan protocol"):
        adapt_app(_wsgi, Config(lifespan="on"))
    app, lifespan = adapt_app(_wsgi, Config())
    assert lifespan == "off"  # auto: skipped quietly
    assert adapt_app(_wsgi, Config(workers=2))[0].multiprocess is True


def test_websocket_request_to_a_wsgi_app_is_refused(serve):
    import websockets.sync.client
    running = serve_wsgi(serve, environ_app)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(f"ws://127.0.0.1:{running.port}/", open_timeout=WAIT)
    assert refused.value.response.status_code == 403


def test_a_call_that_never_returns_does_not_keep_the_process_alive_after_the_graceful_timeout(tmp_path):
    import signal
    import socket

    from tests.conftest import REPO, free_port
    from tests.test_cli import MODULE_COMMAND, Plexicorn
    port = free_port()
    process = Plexicorn(["wsgi_stuck:app", "--app-dir", str(REPO / "tests" / "apps"), "--bind",
                         f"127.0.0.1:{port}", "--graceful-timeout", "0.5"], cwd=tmp_path, env=None,
                        command=MODULE_COMMAND)
    try:
        assert process.wait_listening() == port
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            process.stderr.wait_for("stuck call started")
            process.signal(signal.SIGTERM)
            assert process.wait(timeout=WAIT) == 0
    finally:
        process.kill()
    assert "graceful timeout: closing 1 connection(s)" in process.stderr.text


def test_expect_100_continue_is_answered_only_when_the_app_reads_the_body(serve):
    from tests.rawhttp import Reader

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/refuse":
            start_response("413 Content Too Large", [("Content-Type", "text/plain")])
            return [b"too large"]
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d" % len(body)]

    running = serve_wsgi(serve, app)
    with socket_to(running) as sock:
        reader = Reader(sock)
        sock.sendall(b"POST /refuse HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        _, status, _ = reader.head()
        assert status == 413  # no 100 Continue first: the body was never asked for
    with socket_to(running) as sock:
        reader = Reader(sock)
        sock.sendall(b"POST /read HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        _, status, _ = reader.head()
        assert status == 100
        sock.sendall(b"hello")
        response = reader.response(b"POST")
        assert (response.status, response.body) == (200, b"got 5")


def socket_to(running):
    import socket
    return socket.create_connection(("127.0.0.1", running.port), timeout=WAIT)


def test_an_invalid_header_value_is_a_500_naming_it(serve, errors):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nset-cookie: injected=1")])
        return [b"x"]

    running = serve(app, interface="wsgi")  # the validator would refuse it before the server does
    response = httpx.get(running.url + "/bad-header")
    assert response.status_code == 500 and "set-cookie" not in response.headers
    [record] = errors("/bad-header")
    assert "invalid response header" in str(record.exc_info[1])
