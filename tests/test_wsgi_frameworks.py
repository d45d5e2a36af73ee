"""Real WSGI frameworks, Flask and Django, served over TLS with HTTP/2, h2c and HTTP/1.1."""

from __future__ import annotations

import hashlib
import logging
import sys

import httpx
import pytest

from tests.conftest import REPO, free_port

APPS = REPO / "tests" / "apps"
WAIT = 10.0

# (protocol, tls): HTTP/2 over TLS (ALPN), h2c with prior knowledge, HTTP/1.1 in clear and TLS.
TRANSPORTS = [("h2", True), ("h2", False), ("h1", False), ("h1", True)]
IDS = ["h2-tls", "h2c", "h1", "h1-tls"]


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "download.bin"
    path.write_bytes(bytes(range(256)) * 8192 + b"end")  # 2 MiB and a bit: many windows' worth
    return path


@pytest.fixture
def flask_app(monkeypatch, data_file):
    monkeypatch.syspath_prepend(str(APPS))
    import wsgi_flask
    monkeypatch.setattr(wsgi_flask, "DATA", data_file)
    return wsgi_flask.app


@pytest.fixture(scope="session")
def django_wsgi():
    sys.path.insert(0, str(APPS))
    try:
        from djangosite.wsgi import application  # django.setup() runs once per process
    finally:
        sys.path.remove(str(APPS))
    return application


@pytest.fixture
def django_app(django_wsgi, monkeypatch, data_file):
    from djangosite import views
    monkeypatch.setattr(views, "DATA", data_file)
    return django_wsgi


def client_for(protocol: str, tls: bool, verify) -> httpx.Client:
    return httpx.Client(http1=protocol == "h1" or tls, http2=protocol == "h2", verify=verify, timeout=WAIT)


def expect_version(response: httpx.Response, protocol: str) -> None:
    assert response.http_version == ("HTTP/2" if protocol == "h2" else "HTTP/1.1")


@pytest.mark.parametrize(("protocol", "tls"), TRANSPORTS, ids=IDS)
def test_flask(serve, verify, flask_app, data_file, protocol, tls, caplog):
    running = serve(flask_app, tls=tls)  # detected as WSGI by its signature
    scheme = "https" if tls else "http"
    with client_for(protocol, tls, verify) as client:
        response = client.get(running.url + "/")
        expect_version(response, protocol)
        assert (response.status_code, response.text) == (200, "hello from flask")

        response = client.get(running.url + "/items/42?q=caf%C3%A9")
        assert response.json() == {"item": 42, "q": "café", "scheme": scheme, "root": "",
                                   "protocol": "HTTP/2" if protocol == "h2" else "HTTP/1.1"}

        response = client.post(running.url + "/json", json={"a": [1, 2, 3]})
        assert response.json() == {"got": {"a": [1, 2, 3]}, "remote": "127.0.0.1"}

        with client.stream("GET", running.url + "/stream?n=200") as streamed:
            lines = list(streamed.iter_lines())
        assert lines == [f"chunk {index}" for index in range(200)]

        response = client.get(running.url + "/file")
        assert response.status_code == 200
        assert response.content == data_file.read_bytes()
        assert response.headers["content-length"] == str(data_file.stat().st_size)
        ranged = client.get(running.url + "/file", headers={"range": "bytes=100-199"})
        assert ranged.status_code == 206 and ranged.content == data_file.read_bytes()[100:200]
        head = client.head(running.url + "/file")
        assert head.content == b"" and head.headers["content-length"] == str(data_file.stat().st_size)

        upload = bytes(range(256)) * 4000 + b"!"
        response = client.post(running.url + "/upload", files={"file": ("data.bin", upload)},
                               data={"field": "value"})
        assert response.json() == {"name": "data.bin", "sha256": hashlib.sha256(upload).hexdigest(),
                                   "field": "value"}

        with caplog.at_level(logging.ERROR, logger="flask.app"):
            assert client.get(running.url + "/error").status_code == 500
        assert client.get(running.url + "/").status_code == 200  # the connection lives on


@pytest.mark.parametrize(("protocol", "tls"), TRANSPORTS, ids=IDS)
def test_django(serve, verify, django_app, data_file, protocol, tls):
    running = serve(django_app, tls=tls)
    scheme = "https" if tls else "http"
    with client_for(protocol, tls, verify) as client:
        response = client.get(running.url + "/")
        expect_version(response, protocol)
        version = "HTTP/2" if protocol == "h2" else "HTTP/1.1"
        assert (response.status_code, response.text) == (200, f"hello from django {version} {scheme}")
        assert response.headers["x-frame-options"] == "DENY"  # the middleware ran

        response = client.post(running.url + "/json", json={"b": True})
        host = f"localhost:{running.port}" if tls else f"127.0.0.1:{running.port}"
        assert response.json() == {"got": {"b": True}, "path": "/json", "host": host}

        with client.stream("GET", running.url + "/stream?n=300") as streamed:
            lines = list(streamed.iter_lines())
        assert lines == [f"part {index}" for index in range(300)]

        response = client.get(running.url + "/file")  # FileResponse: Django uses wsgi.file_wrapper
        assert response.content == data_file.read_bytes()

        upload = b"django upload " * 100000
        response = client.post(running.url + "/upload", files={"file": ("up.txt", upload)})
        assert response.json() == {"name": "up.txt", "sha256": hashlib.sha256(upload).hexdigest(),
                                   "size": len(upload)}

        assert client.get(running.url + "/missing").status_code == 404


def test_django_under_a_root_path(serve, django_app):
    running = serve(django_app, root_path="/site")
    response = httpx.post(running.url + "/json", json=1, timeout=WAIT)
    assert response.json()["path"] == "/site/json"  # SCRIPT_NAME + PATH_INFO


def test_flask_app_from_the_command_line_is_detected_as_wsgi(tmp_path):
    """What a new user types: `plexicorn module:app` with a Flask app, no flags."""
    from tests.test_cli import MODULE_COMMAND, Plexicorn
    port = free_port()
    process = Plexicorn(["wsgi_flask:app", "--app-dir", str(APPS), "--bind", f"127.0.0.1:{port}"],
                        cwd=tmp_path, env=None, command=MODULE_COMMAND)
    try:
        assert process.wait_listening() == port
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=WAIT).text == "hello from flask"
        assert process.stop() == 0
    finally:
        process.kill()
    assert "lifespan" not in process.stderr.text.lower()  # skipped quietly for WSGI
