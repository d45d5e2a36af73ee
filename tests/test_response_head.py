"""Every response head is built in one place (asgi/headers.py): one `date`, the connection's
fields (HSTS on TLS) on app responses, server-made 500s and rejections alike, an app's own wins."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import connect
from h2client import H2Client

from plexicorn.asgi.headers import plain_response, response_head

HSTS = (b"strict-transport-security", b"max-age=600")


def test_response_head_adds_date_first_and_defaults_the_response_lacks() -> None:
    head = response_head([(b"content-length", b"0")], date=b"D", defaults=[HSTS, (b"x-default", b"1")])
    assert head == [(b"date", b"D"), (b"content-length", b"0"), HSTS, (b"x-default", b"1")]


def test_response_head_keeps_the_responses_own_date_and_fields() -> None:
    own = [(b"date", b"mine"), (b"strict-transport-security", b"max-age=1")]
    assert response_head(list(own), date=b"D", defaults=[HSTS]) == own


def test_plain_response_says_the_reason_in_words() -> None:
    head, body = plain_response(400, "bad thing", date=b"D", extra=[(b"sec-websocket-version", b"13")])
    assert body == b"Bad Request: bad thing\n"
    assert head[0] == (b"date", b"D") and (b"sec-websocket-version", b"13") in head
    assert (b"content-length", b"%d" % len(body)) in head


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["path"] == "/raise":
        raise RuntimeError("boom")
    headers = [(b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")] if scope["path"] == "/own-date" else []
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def header_values(raw: bytes, name: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
            if line.split(b":", 1)[0].lower() == name]


def test_http1_app_that_sets_its_own_date_sends_one_date(serve: Any) -> None:
    running = serve(app, lifespan="off")
    sock = connect(running)
    sock.sendall(b"GET /own-date HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    assert header_values(raw, b"date") == [b"Thu, 01 Jan 1970 00:00:00 GMT"]


def test_server_made_500_carries_hsts_over_http1_and_http2(serve: Any, verify: Any, client_ssl_context: Any) -> None:
    running = serve(app, tls=True, hsts=600, lifespan="off")
    with httpx.Client(verify=verify) as client:
        response = client.get(running.url + "/raise")
    assert response.status_code == 500 and response.headers["strict-transport-security"] == "max-age=600"
    assert len(response.headers.get_list("date")) == 1
    with H2Client(running.port, ssl_context=client_ssl_context()) as h2:
        stream_id = h2.request("GET", "/raise")
        answer = h2.response(stream_id)
    assert dict(answer["headers"])[b"strict-transport-security"] == b"max-age=600"


def test_http1_rejection_carries_date_and_hsts(serve: Any, client_ssl_context: Any) -> None:
    running = serve(app, tls=True, hsts=600, lifespan="off")
    sock = connect(running, client_ssl_context(("http/1.1",)))
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert len(header_values(raw, b"date")) == 1
    assert header_values(raw, b"strict-transport-security") == [b"max-age=600"]
