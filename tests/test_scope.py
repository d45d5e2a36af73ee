"""The ASGI 3 HTTP scope, field by field, on HTTP/1.1 and HTTP/2, cleartext and TLS."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest

SCOPE_KEYS = {"type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
              "root_path", "headers", "client", "server", "state", "extensions"}

TARGET = "/caf%C3%A9/a%20b?x=1&y=%20"

# (name, tls, httpx.Client keyword arguments, expected scope http_version)
PROTOCOLS = {
    "h2-tls": (True, {"http2": True}, "2"),
    "http1-tls": (True, {"http1": True, "http2": False}, "1.1"),
    "h2c": (False, {"http1": False, "http2": True}, "2"),
    "http1-cleartext": (False, {"http1": True, "http2": False}, "1.1"),
}


class ScopeRecorder:
    """An app that keeps a copy of every HTTP scope and the request body it read."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        # Copied before the app touches anything, so the test sees what the server built.
        self.scopes.append(copy.deepcopy(scope))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def _client(protocol: str, verify) -> httpx.Client:
    tls, kwargs, _ = PROTOCOLS[protocol]
    return httpx.Client(verify=verify, **kwargs) if tls else httpx.Client(**kwargs)


def _client_port(response: httpx.Response) -> int:
    # The local address of the very socket httpx sent the request on.
    host, port = response.extensions["network_stream"].get_extra_info("client_addr")
    assert host == "127.0.0.1"
    return port


def _authority(running) -> bytes:
    return f"{'localhost' if running.tls else '127.0.0.1'}:{running.port}".encode()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_scope_has_exactly_the_asgi_fields_and_values(serve, verify, protocol):
    tls, _, http_version = PROTOCOLS[protocol]
    app = ScopeRecorder()
    running = serve(app, tls=tls)
    with _client(protocol, verify) as client:
        response = client.get(running.url + TARGET, headers={"X-Custom-Thing": "Value"})
        client_port = _client_port(response)
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http_version == "2" else "HTTP/1.1")
    [scope] = app.scopes

    assert set(scope) == SCOPE_KEYS
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == http_version
    assert scope["method"] == "GET"
    assert scope["scheme"] == ("https" if tls else "http")
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["client"] == ("127.0.0.1", client_port)
    assert scope["server"] == ("127.0.0.1", running.port)
    assert scope["state"] == {}
    assert isinstance(scope["extensions"], dict)

    headers = scope["headers"]
    assert isinstance(headers, list)
    for pair in headers:
        assert type(pair) is tuple and len(pair) == 2
        name, value = pair
        assert type(name) is bytes and type(value) is bytes
        assert name == name.lower()
        assert not name.startswith(b":"), "pseudo-headers must not reach the app"
    assert (b"x-custom-thing", b"Value") in headers
    # On HTTP/2 httpx sends only :authority; the server must turn it into `host`.
    assert [value for name, value in headers if name == b"host"] == [_authority(running)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_post_scope_has_method_post_and_the_app_reads_the_body(serve, verify, protocol):
    tls, _, http_version = PROTOCOLS[protocol]
    app = ScopeRecorder()
    running = serve(app, tls=tls)
    with _client(protocol, verify) as client:
        response = client.post(running.url + "/submit?a=b", content=b"payload bytes")
    assert response.status_code == 200
    [scope] = app.scopes
    assert scope["method"] == "POST"
    assert scope["http_version"] == http_version
    assert scope["path"] == "/submit"
    assert scope["query_string"] == b"a=b"
    assert (b"content-length", b"13") in scope["headers"]
    assert app.bodies == [b"payload bytes"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_root_path_is_prefixed_to_path_while_raw_path_stays_as_received(serve, verify, protocol):
    tls, _, _ = PROTOCOLS[protocol]
    app = ScopeRecorder()
    running = serve(app, tls=tls, root_path="/api")
    with _client(protocol, verify) as client:
        response = client.get(running.url + TARGET)
    assert response.status_code == 200
    [scope] = app.scopes
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=1&y=%20"


def test_each_connection_reports_its_own_client_port(serve, verify):
    app = ScopeRecorder()
    running = serve(app)
    ports = []
    for _ in range(2):
        with httpx.Client() as client:  # a new connection each time
            ports.append(_client_port(client.get(running.url + "/")))
    assert ports[0] != ports[1]
    assert [scope["client"] for scope in app.scopes] == [("127.0.0.1", port) for port in ports]


def test_unix_socket_scope_reports_the_socket_path_as_server(serve, tmp_path: Path):
    path = str(tmp_path / "s.sock")
    assert len(path) < 100, "Unix socket paths are limited to about 108 bytes"
    app = ScopeRecorder()
    running = serve(app, bind=("unix:" + path,))
    assert running.server.addresses == [("http", path)]
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        response = client.get("http://localhost" + TARGET)
    assert response.status_code == 200
    [scope] = app.scopes
    assert set(scope) == SCOPE_KEYS
    assert scope["server"] == (path, None)
    # A Unix peer has no (host, port); ASGI allows None or a 2-tuple, nothing else.
    assert scope["client"] is None or (isinstance(scope["client"], tuple) and len(scope["client"]) == 2)
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert (b"host", b"localhost") in scope["headers"]
