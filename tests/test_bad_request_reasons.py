"""A 400 says in words what was wrong with the request, never a repr of the client's bytes;
the h11 internals Plexicorn uses are checked when it is imported."""

from __future__ import annotations

from typing import Any

import h11
import pytest

from conftest import connect

from plexicorn.http1 import h11lib


async def app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body"})


@pytest.mark.parametrize(("request_bytes", "reason"), [
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n\r\n", b"the request line is not METHOD TARGET HTTP/VERSION"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", b"a header line is not NAME: VALUE"),
    (b"GET / HTTP/1.1\r\n\r\n", b"an HTTP/1.1 request needs a Host header"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"a chunk size line is malformed"),
], ids=["proxy-protocol", "header-line", "no-host", "chunk-size"])
def test_400_body_gives_the_reason_in_words(serve: Any, request_bytes: bytes, reason: bytes) -> None:
    running = serve(app, lifespan="off")
    sock = connect(running)
    sock.sendall(request_bytes)
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 ")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert body == b"Bad Request: " + reason + b"\n"
    assert b"bytearray" not in raw and b"b'" not in raw


def test_unknown_h11_message_becomes_a_generic_reason() -> None:
    assert h11lib.plain_reason(h11.RemoteProtocolError("weird thing: bytearray(b'x')")) == "malformed request"


def test_h11_internals_are_present_in_the_installed_h11() -> None:
    assert h11lib.missing_internals() is None


def test_missing_h11_internal_fails_the_import_naming_the_h11_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h11lib, "_CONNECTION_ATTRIBUTES", ("_receive_buffer", "_renamed_in_a_later_h11"))
    with pytest.raises(ImportError) as error:
        h11lib.require_internals()
    message = str(error.value)
    assert "h11.Connection._renamed_in_a_later_h11" in message and h11.__version__ in message
    assert "\n" not in message
