"""Each connection speaks what the client can: ALPN over TLS, the preface on cleartext."""

from __future__ import annotations

import shutil
import subprocess

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from conftest import connect
from h2client import H2Client


async def version_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{scope['http_version']} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def test_alpn_selects_h2_for_an_h2_capable_client(serve, verify):
    server = serve(version_app, tls=True)
    with httpx.Client(http2=True, verify=verify) as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/2"
    assert response.text == "2 https"


def test_alpn_selects_http11_for_an_http11_only_client(serve, verify):
    server = serve(version_app, tls=True)
    with httpx.Client(http2=False, verify=verify) as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/1.1"
    assert response.text == "1.1 https"


def test_tls_client_offering_no_alpn_gets_http11(serve, client_ssl_context):
    server = serve(version_app, tls=True)
    context = client_ssl_context(alpn=())
    context.set_alpn_protocols([])  # offer nothing
    with connect(server, context) as sock:
        assert sock.selected_alpn_protocol() is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\n9\r\n1.1 https\r\n0\r\n\r\n")  # chunked: no content-length given


def test_cleartext_serves_http11(serve):
    server = serve(version_app)
    response = httpx.get(server.url + "/")
    assert response.http_version == "HTTP/1.1"
    assert response.text == "1.1 http"


def test_cleartext_detects_h2c_prior_knowledge_from_the_preface(serve):
    server = serve(version_app)
    with H2Client(server.port) as client:
        stream_id = client.request("GET", "/")
        response = client.response(stream_id)
    assert response["status"] == 200
    assert bytes(response["body"]) == b"2 http"


def test_h2c_preface_split_across_packets_is_still_detected(serve):
    server = serve(version_app)
    with connect(server) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                              (b":authority", b"localhost")], end_stream=True)
        data = conn.data_to_send()
        for index in range(0, 30):  # the preface one byte at a time, then the rest
            sock.sendall(data[index:index + 1])
        sock.sendall(data[30:])
        body = b""
        ended = False
        while not ended:
            chunk = sock.recv(65536)
            assert chunk, "server closed the connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                ended = ended or isinstance(event, h2.events.StreamEnded)
            sock.sendall(conn.data_to_send())
    assert body == b"2 http"


def test_httpx_h2c_prior_knowledge(serve):
    server = serve(version_app)
    with httpx.Client(http1=False, http2=True) as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/2"
    assert response.text == "2 http"


CURL = shutil.which("curl")


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    return "HTTP2" in subprocess.run([CURL, "--version"], capture_output=True, text=True).stdout


@pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 support is not installed (apt-get install curl)")
@pytest.mark.parametrize("flag, expected", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_over_tls_negotiates_by_alpn(serve, ca_file, flag, expected):
    server = serve(version_app, tls=True)
    result = subprocess.run(
        [CURL, "-sS", flag, "--cacert", ca_file, "-o", "-", "-w", "\n%{http_version}", server.url + "/"],
        capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    body, version = result.stdout.rsplit("\n", 1)
    assert version == expected
    assert body == f"{expected} https"


@pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 support is not installed (apt-get install curl)")
def test_curl_h2c_prior_knowledge(serve):
    server = serve(version_app)
    result = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version}", server.url + "/"],
        capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 http\n2"


# -- --http: one HTTP version only ---------------------------------------------------------------

def read_until_closed(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_http2_only_cleartext_serves_prior_knowledge(serve):
    server = serve(version_app, http="2")
    with H2Client(server.port) as client:
        response = client.response(client.request("GET", "/"))
    assert bytes(response["body"]) == b"2 http"


def test_http2_only_cleartext_closes_a_connection_that_does_not_open_with_the_preface(serve):
    server = serve(version_app, http="2")
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # RFC 9113 §3.4: a connection error (the GOAWAY may be omitted), never an HTTP/1.1 answer.
        assert b"HTTP/1.1" not in read_until_closed(sock)


def test_http2_only_tls_offers_only_h2_and_speaks_it_to_clients_offering_no_alpn(serve, client_ssl_context):
    server = serve(version_app, tls=True, http="2")
    context = client_ssl_context(alpn=())
    context.set_alpn_protocols(["http/1.1", "h2"])
    with connect(server, context) as sock:
        assert sock.selected_alpn_protocol() == "h2"
    context.set_alpn_protocols([])
    with connect(server, context) as sock:
        assert sock.selected_alpn_protocol() is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert b"HTTP/1.1" not in read_until_closed(sock)


def test_http11_only_answers_the_h2_preface_with_505(serve):
    server = serve(version_app, http="1.1")
    with connect(server) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 505 ")


def test_http11_only_tls_offers_only_http11(serve, client_ssl_context):
    server = serve(version_app, tls=True, http="1.1")
    context = client_ssl_context(alpn=())
    context.set_alpn_protocols(["h2", "http/1.1"])
    with connect(server, context) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
