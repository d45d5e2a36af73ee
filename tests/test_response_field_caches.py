"""The process-wide caches of checked response fields (asgi/http.py's `_CHECKED_FIELDS`, the fast
HTTP/1.1 codecs' `_PLAIN_LINES` and `_STATUS_LINES`) hold only fields that passed every check, stay
bounded whatever an app sends, and change no byte of what is sent: a field refused once is refused
every time, a cached one is written as it was the first time.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from plexicorn.asgi import http as asgi_http
from plexicorn.asgi.http import ASGIMessageError, _header_list
from plexicorn.http1 import fastcodec
from plexicorn.http1.codec import Request, ResponseError
from plexicorn.http1.parser import codec_factory, httptools_available


@pytest.fixture(autouse=True)
def empty_caches() -> Any:
    for cache in (asgi_http._CHECKED_FIELDS, fastcodec._PLAIN_LINES, fastcodec._STATUS_LINES):
        cache.clear()
    yield


# -- asgi/http.py: _header_list ------------------------------------------------------------------
def test_a_checked_field_is_given_back_the_same_from_the_cache() -> None:
    fields = [(b"Content-Type", b"text/plain"), (b"x-a", b"1")]
    first = _header_list(fields)
    assert first == [(b"content-type", b"text/plain"), (b"x-a", b"1")]
    assert _header_list(fields) == first
    assert asgi_http._CHECKED_FIELDS[(b"Content-Type", b"text/plain")] == (b"content-type", b"text/plain")


@pytest.mark.parametrize("pair", [(b"x-a", b"a\r\nx-injected: 1"), (b"x-a", b"nul\x00"), (b"bad name", b"v"),
                                  (b"", b"v"), ("x-a", b"str name"), (b"x-a", "str value")])
def test_a_refused_field_is_refused_every_time_and_never_cached(pair: tuple[Any, Any]) -> None:
    for _ in range(3):
        with pytest.raises(ASGIMessageError):
            _header_list([pair])
    assert not asgi_http._CHECKED_FIELDS


def test_unhashable_pairs_and_values_are_checked_without_the_cache() -> None:
    assert _header_list([[b"X-A", b"1"]]) == [(b"x-a", b"1")]
    with pytest.raises(ASGIMessageError):
        _header_list([(b"x-a", bytearray(b"1"))])  # not bytes: refused as before
    assert not asgi_http._CHECKED_FIELDS


def test_long_fields_and_bytes_subclasses_are_not_kept() -> None:
    class Tainted(bytes):
        pass

    limit = asgi_http._CHECKED_FIELD_SIZE_LIMIT
    long_value, long_name = b"v" * limit, b"n" * limit
    assert _header_list([(b"x-long", long_value), (long_name, b"1"), (Tainted(b"x-sub"), b"1")]) == [
        (b"x-long", long_value), (long_name, b"1"), (b"x-sub", b"1")]
    assert not asgi_http._CHECKED_FIELDS


@pytest.mark.parametrize("pair", [(memoryview(b"x-a"), b"1"), (b"x-a", memoryview(b"1")),
                                  (b"x-a", memoryview(bytearray(b"1"))), (b"x-a", bytearray(b"1"))])
def test_a_view_of_a_cached_field_is_still_refused(pair: tuple[Any, Any]) -> None:
    # A read-only memoryview equals, and hashes as, the bytes it shows: only exact bytes are
    # looked up, so it meets the type check as before, whatever the cache holds.
    _header_list([(b"x-a", b"1")])
    assert (b"x-a", b"1") in asgi_http._CHECKED_FIELDS
    for _ in range(2):
        with pytest.raises(ASGIMessageError, match="pair of byte strings"):
            _header_list([pair])


def test_the_field_cache_stays_bounded_and_keeps_caching_after_it_fills() -> None:
    limit = asgi_http._CHECKED_FIELDS_LIMIT
    for index in range(3 * limit):
        assert _header_list([(b"x-request-id", b"%d" % index)]) == [(b"x-request-id", b"%d" % index)]
        assert len(asgi_http._CHECKED_FIELDS) <= limit
    _header_list([(b"content-type", b"text/plain")])
    assert (b"content-type", b"text/plain") in asgi_http._CHECKED_FIELDS


# -- the fast HTTP/1.1 codecs' response lines ------------------------------------------------------
def _response(parser: str, headers: list[tuple[bytes, bytes]], status: int = 200) -> bytes:
    codec = codec_factory(parser, 16 * 1024)()
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    event = codec.next_event()
    assert isinstance(event, Request)
    return codec.response(status, list(headers), b"OK")


@pytest.mark.parametrize("parser", ["python", pytest.param("httptools", marks=pytest.mark.skipif(
    not httptools_available(), reason="the httptools extra is not installed"))])
def test_cached_response_lines_write_what_h11_writes(parser: str) -> None:
    fields = [(b"date", b"Thu, 03 Dec 2026 14:00:00 GMT"), (b"content-type", b"text/plain"),
              (b"content-length", b"13")]
    expected = _response("h11", fields)
    assert _response(parser, fields) == expected  # fills the caches
    assert fastcodec._PLAIN_LINES and fastcodec._STATUS_LINES
    assert _response(parser, fields) == expected  # from them
    # content-length is never cached: its value frames the body.
    assert all(name != b"content-length" for name, _ in fastcodec._PLAIN_LINES)
    long_field = (b"x-" + b"n" * fastcodec._PLAIN_FIELD_SIZE_LIMIT, b"1")
    assert _response(parser, [long_field, (b"content-length", b"0")]) == _response(
        "h11", [long_field, (b"content-length", b"0")])
    assert long_field not in fastcodec._PLAIN_LINES


@pytest.mark.parametrize("parser", ["python", pytest.param("httptools", marks=pytest.mark.skipif(
    not httptools_available(), reason="the httptools extra is not installed"))])
def test_a_value_h11_refuses_is_never_cached_and_refused_each_time(parser: str) -> None:
    for value in (b"v\x0b", b"v ", b" v"):  # a control byte h11 refuses; edge whitespace, which it refuses too
        for _ in range(2):
            with pytest.raises(ResponseError):
                _response(parser, [(b"x-a", value), (b"content-length", b"0")])
        with pytest.raises(ResponseError):
            _response("h11", [(b"x-a", value), (b"content-length", b"0")])
        assert (b"x-a", value) not in fastcodec._PLAIN_LINES


def test_the_line_cache_stays_bounded() -> None:
    limit = fastcodec._PLAIN_LINES_LIMIT
    for index in range(2 * limit + 5):
        assert _response("python", [(b"x-id", b"%d" % index), (b"content-length", b"0")]).count(
            b"x-id: %d\r\n" % index) == 1
        assert len(fastcodec._PLAIN_LINES) <= limit


# -- end to end: a refused value after the same name was cached with a good one ------------------
@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_a_cached_name_does_not_let_a_bad_value_through(serve: Any, verify: Any, protocol: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        value = b"ok" if scope["path"] == "/good" else b"ok\r\nx-injected: 1"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-field", value), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"hi"})

    running = serve(app, tls=True)
    with httpx.Client(verify=verify, http1=protocol == "http1", http2=protocol == "http2") as client:
        for _ in range(3):
            good = client.get(running.url + "/good", timeout=5)
            assert good.status_code == 200 and good.headers["x-field"] == "ok" and good.text == "hi"
            bad = client.get(running.url + "/bad", timeout=5)
            assert bad.status_code == 500 and "x-injected" not in bad.headers
