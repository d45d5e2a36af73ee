"""Listening addresses: IPv6 in brackets, several --bind at once, Unix sockets."""

from __future__ import annotations

import socket

import httpx
import pytest

from plexicorn.config import ConfigError, parse_bind


async def where_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = repr(scope["server"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_and_ipv4_binds_serve_together(serve):
    running = serve(where_app, bind=("[::1]:0", "127.0.0.1:0"))
    addresses = {sockname[0]: sockname[1] for _, sockname in running.server.addresses}
    assert set(addresses) == {"::1", "127.0.0.1"}
    v6 = httpx.get(f"http://[::1]:{addresses['::1']}/")
    v4 = httpx.get(f"http://127.0.0.1:{addresses['127.0.0.1']}/")
    assert v6.text == f"('::1', {addresses['::1']})"
    assert v4.text == f"('127.0.0.1', {addresses['127.0.0.1']})"


def test_unix_socket_bind_serves_http11_and_h2c(serve, tmp_path):
    path = str(tmp_path / "plexicorn.sock")
    serve(where_app, bind=(f"unix:{path}",))
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://localhost/").text == f"('{path}', None)"
    with httpx.Client(transport=httpx.HTTPTransport(uds=path, http1=False, http2=True)) as client:
        response = client.get("http://localhost/")
    assert response.http_version == "HTTP/2"


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8000", ("127.0.0.1", 8000, None)),
    ("[::]:8443", ("::", 8443, None)),
    ("localhost:0", ("localhost", 0, None)),
    ("unix:/run/app.sock", (None, None, "/run/app.sock")),
])
def test_bind_syntax(text, expected):
    bind = parse_bind(text)
    assert (bind.host, bind.port, bind.path) == expected
    assert str(bind) == text


@pytest.mark.parametrize("text", ["8000", "::1:80", "[::1]80", "[nope]:80", "host:port", "host:70000", "unix:"])
def test_bad_bind_is_a_config_error(text):
    with pytest.raises(ConfigError, match="invalid --bind"):
        parse_bind(text)
