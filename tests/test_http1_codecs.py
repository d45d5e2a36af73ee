"""The two HTTP/1.1 codecs (`--http1-parser h11|httptools`) answer the same bytes with the same bytes.

Each case feeds the same client bytes, piece by piece, to a socketless HTTP1Protocol with each
parser and compares everything written back and whether the connection was closed: plain,
pipelined, chunked and HEAD exchanges, HTTP/1.0, 100-continue, the response framings h11 adds,
and the malformed or ambiguous heads (request smuggling among them) where llhttp and h11 differ
on their own, which the fast codec must hand to h11 so that the answer is h11's, word for word.
(The few inputs llhttp itself judges otherwise, none about framing, are listed in the README.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fakes import FakeTransport, ManualTimers
from plexicorn import Config
from plexicorn.config import ConfigError
from plexicorn.http1.codec import NEED_DATA, PAUSED, SWITCH, Request
from plexicorn.http1.parser import codec_factory, httptools_available, resolve_parser
from plexicorn.http1.connection import HTTP1Protocol
from plexicorn.runtime.context import ServerContext

needs_httptools = pytest.mark.skipif(not httptools_available(), reason="the httptools extra is not installed")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes what it was given; the path picks how the response is framed."""
    path = scope["path"]
    if path == "/early":  # answers before reading the body (a streaming proxy's way), then reads it
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    echo = b"%s %s %s %r %s" % (scope["method"].encode(), scope["raw_path"], scope["http_version"].encode(),
                                scope["headers"], body)
    if path == "/te-and-cl":  # both framing fields from the app: h11 drops them for an HTTP/1.0 client
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"transfer-encoding", b"chunked"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b"abc"})
    elif path == "/chunked":  # no content-length: chunked to HTTP/1.1, close-delimited to HTTP/1.0
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": echo, "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": echo})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    elif path == "/too-long":  # more body than its content-length: the connection closes
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"abc"})
    elif path == "/204":
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
    elif path == "/hint":
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/odd-fields":  # fields h11 normalises: listed content-length, a `connection` of the app's
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2, 2"), (b"connection", b"keep-alive")]})
        await send({"type": "http.response.body", "body": b"ok"})
    else:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(echo))]})
        await send({"type": "http.response.body", "body": echo})


def exchange(parser: str, pieces: list[bytes], eof: bool = False) -> tuple[bytes, bool]:
    async def scenario() -> tuple[bytes, bool]:
        context = ServerContext(app=app, config=Config(access_log=False, date_header=False, http1_parser=parser,
                                                       h2_max_header_list_size=4096),
                                runtime=ManualTimers())
        protocol = HTTP1Protocol(context)
        transport = FakeTransport()
        transport.set_protocol = lambda protocol: None  # type: ignore[method-assign]  # Upgrade: h2c
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            if not transport.closed:
                protocol.data_received(piece)
            for _ in range(50):
                await asyncio.sleep(0)
        if eof and not transport.closed:
            protocol.eof_received()
            for _ in range(50):
                await asyncio.sleep(0)
        return bytes(transport.written), transport.closed
    return asyncio.run(scenario())


GET = b"GET /%s HTTP/1.1\r\nHost: example.com\r\n\r\n"
CASES: dict[str, tuple[list[bytes], bool]] = {
    "get": ([GET % b"a"], False),
    "pipelined": ([GET % b"1" + GET % b"2" + GET % b"chunked"], False),
    "pipelined-split": ([(GET % b"1" + GET % b"2")[:50], (GET % b"1" + GET % b"2")[50:]], False),
    "post-length": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhe", b"llo"], False),
    "post-chunked": ([b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                      b"2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n"], False),
    "post-then-get": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + GET % b"next"], False),
    "head": ([b"HEAD /chunked HTTP/1.1\r\nHost: h\r\n\r\n", b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "http10": ([b"GET /a HTTP/1.0\r\n\r\n"], False),
    "http10-chunked": ([b"GET /chunked HTTP/1.0\r\nHost: h\r\n\r\n"], False),
    "connection-close": ([b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"], False),
    "data-after-close": ([b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET % b"b"], False),
    "expect-100": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", b"ok"],
                   False),
    "trailers": ([GET % b"trailers"], False),
    "too-long-body": ([GET % b"too-long" + GET % b"a"], False),
    "204": ([GET % b"204"], False),
    "early-hint": ([GET % b"hint"], False),
    "odd-fields": ([GET % b"odd-fields"], False),
    "value-whitespace": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A:  spaced \t\r\n\r\n"], False),
    "eof-between": ([GET % b"a"], True),
    # Malformed, ambiguous or unusual heads: h11's verdict, whichever codec reads them.
    "obs-fold": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n"], False),
    "bare-lf": ([b"GET /lf HTTP/1.1\nHost: h\n\n"], False),
    "nul-in-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n"], False),
    "vt-in-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x0bb\r\n\r\n"], False),
    "ctl-in-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n"], False),
    "cr-in-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"], False),
    "space-before-colon": ([b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"], False),
    "bad-name": ([b"GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n"], False),
    "unknown-method": ([b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "bad-method": ([b"G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "target-ctl": ([b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "target-high": ([b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "no-host": ([b"GET / HTTP/1.1\r\n\r\n"], False),
    "two-hosts": ([b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"], False),
    "cl-and-te": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\n"], False),
    "te-gzip": ([b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"], False),
    "te-gzip-chunked": ([b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"], False),
    "two-te": ([b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\n"], False),
    "te-http10": ([b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"], False),
    "cl-twice-same": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"], False),
    "cl-list": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nok"], False),
    "cl-conflict": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"], False),
    "cl-sign": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\nok"], False),
    "cl-huge": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"], False),
    "version-12": ([b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"], False),
    "version-20": ([b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"], False),
    "version-09": ([b"GET /\r\n\r\n"], False),
    "head-too-large": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 3000, b"a" * 3000 + b"\r\n\r\n"], False),
    "head-too-large-whole": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n"], False),
    "good-then-bad": ([GET % b"a" + b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n"], False),
    "body-then-bad": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcBREW / HTTP/1.1\r\nHost: h\r\n\r\n"],
                      False),
    "smuggle-cl-te": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "bad-chunk-size": ([b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], False),
    "eof-in-head": ([b"GET / HTTP/1.1\r\nHost: h\r\n"], True),
    "eof-in-body": ([b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc"], True),
    "connect": ([b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"], False),
    "upgrade-ignored": ([b"GET /u HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n" + GET % b"b"],
                        False),
    "upgrade-with-body": ([b"POST /u HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nConnection: upgrade\r\n"
                           b"Content-Length: 3\r\n\r\nabc" + GET % b"b"], False),
    "h2c-upgrade": ([b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"], False),
    "pri-preface": ([b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], False),
    # Bytes behind a `Connection: close` request: the requests before it are still answered in turn.
    "pipelined-then-data-after-close": ([GET % b"a" + b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nX"],
                                        False),
    "expect-100-answered-early": ([b"POST /early HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                                   b"Expect: 100-continue\r\n\r\n", b"ok"], False),
    "expect-listed-twice": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
                             b"Expect: foo\r\n\r\n", b"ok"], False),
    "http10-te-and-cl-response": ([b"GET /te-and-cl HTTP/1.0\r\n\r\n"], False),
}


@needs_httptools
@pytest.mark.parametrize("case", sorted(CASES))
def test_both_codecs_answer_alike(case: str) -> None:
    pieces, eof = CASES[case]
    reference = exchange("h11", pieces, eof)
    assert reference[0], "the case should make the server write something"
    assert exchange("httptools", pieces, eof) == reference


@needs_httptools
@pytest.mark.parametrize("byte", range(256))
def test_a_byte_anywhere_in_a_head_gets_the_same_answer(byte: int) -> None:
    # The fast codec leaves the characters of targets, field names and values to llhttp, which
    # must refuse every byte h11 refuses (or hand the head to h11): one case per byte and place.
    char = bytes([byte])
    for head in (b"GET /a" + char + b"b HTTP/1.1\r\nHost: h\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: h\r\nX" + char + b"A: 1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a" + char + b"b\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + char + b"\r\n\r\n"):
        assert exchange("httptools", [head]) == exchange("h11", [head]), head


@needs_httptools
def test_auto_prefers_httptools_when_installed() -> None:
    assert resolve_parser("auto") == "httptools"
    assert type(codec_factory("auto", 1024)()).__name__ == "HttptoolsCodec"
    assert type(codec_factory("h11", 1024)()).__name__ == "H11Codec"


def test_httptools_without_the_extra_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "httptools" else real(name, *args))
    with pytest.raises(ConfigError, match=r"plexicorn\[httptools\]"):
        Config(http1_parser="httptools")


def serve_pipelined(parser: str, stream: bytes, read_size: int) -> tuple[int, int]:
    """Feed `stream` to one codec in reads of `read_size`, answering each request with an
    empty 200 as it comes: (requests read, hand-overs to h11). BadRequest propagates."""
    codec = codec_factory(parser, 16 * 1024)()
    served = switched = 0
    for start in range(0, len(stream), read_size):
        codec.receive_data(stream[start:start + read_size])
        while True:
            event = codec.next_event()
            if event is NEED_DATA:
                break
            if event is SWITCH:
                codec = codec.successor()
                switched += 1
            elif isinstance(event, Request):
                served += 1
                codec.response(200, [(b"content-length", b"0")], b"OK")
                codec.end([])
            elif event is PAUSED:
                codec.start_next_cycle()
    return served, switched


@pytest.mark.parametrize("parser", ["h11", pytest.param("httptools", marks=needs_httptools)])
def test_a_long_pipelined_run_read_in_pieces_is_served_whole(parser: str) -> None:
    # Over 256 KiB of pipelined input (past what the fast codec keeps to hand a head to h11),
    # request heads split across reads: each head is counted from its own start against the
    # 16 KiB head limit, never with the body or requests read before it in the same read.
    request = b"GET /%05d HTTP/1.1\r\nHost: example.com\r\nX-Pad: " + b"p" * 60 + b"\r\n\r\n"
    upload = b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 300000\r\n\r\n" + b"b" * 300_000
    stream = upload + b"".join(request % index for index in range(3000))
    for read_size in (65_536, 65_537, 100_000):
        assert serve_pipelined(parser, stream, read_size) == (3001, 0)


@pytest.mark.parametrize("parser", ["h11", pytest.param("httptools", marks=needs_httptools)])
def test_a_large_head_before_a_handed_over_request_is_served_once(parser: str) -> None:
    # A 20 kB head (within a 64 KiB limit, over h11's default 16 KiB) read whole, then an
    # Upgrade that the fast codec hands to h11 from its first byte, in the same read.
    large = b"GET /large HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n"
    upgrade = b"GET /u HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n"
    codec = codec_factory(parser, 64 * 1024)()
    codec.receive_data(large + upgrade)
    targets = []
    while (event := codec.next_event()) is not NEED_DATA:
        if event is SWITCH:
            codec = codec.successor()
        elif isinstance(event, Request):
            targets.append(event.target)
            codec.response(200, [(b"content-length", b"0")], b"OK")
            codec.end([])
        elif event is PAUSED:
            codec.start_next_cycle()
    assert targets == [b"/large", b"/u"]
