"""The HTTP/1.1 codecs (`--http1-parser h11|python|httptools`) answer the same bytes with the same bytes.

Each case feeds the same client bytes, piece by piece, to a socketless HTTP1Protocol with each
parser and compares everything written back and whether the connection was closed: plain,
pipelined, chunked and HEAD exchanges, HTTP/1.0, 100-continue, the response framings h11 adds,
and the malformed or ambiguous heads (request smuggling among them) where the fast parsers and
h11 would differ on their own, which the fast codecs must hand to h11 so that the answer is h11's,
word for word. Every byte value is tried in each part of a head, and some inputs are split at
every byte boundary, since the fast parsers wait for the rest of a head on their own.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any

import pytest

from fakes import FakeTransport, ManualTimers
from plexicorn import Config
from plexicorn.config import ConfigError
from plexicorn.http1 import parser as parser_module
from plexicorn.http1.codec import NEED_DATA, PAUSED, SWITCH, Request
from plexicorn.http1.parser import codec_factory, httptools_available, resolve_parser
from plexicorn.http1.connection import HTTP1Protocol
from plexicorn.runtime.context import ServerContext

needs_httptools = pytest.mark.skipif(not httptools_available(), reason="the httptools extra is not installed")
# The parsers compared with h11, the reference.
FAST = ["python", pytest.param("httptools", marks=needs_httptools)]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes what it was given; the path picks how the response is framed."""
    path = scope["path"]
    if path == "/respond-first":  # the response starts before the body is read (no 100 Continue then)
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
        return
    if path == "/chunked":  # no content-length: chunked to HTTP/1.1, close-delimited to HTTP/1.0
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


@functools.lru_cache(maxsize=None)
def reference(pieces: tuple[bytes, ...], eof: bool = False) -> tuple[bytes, bool]:
    return exchange("h11", list(pieces), eof)


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
    "upgrade-without-connection": ([b"PUT * HTTP/1.0\r\nUpgrade: x\r\n\r\nabc"], True),
    "pri-http10": ([b"PRI /204 HTTP/1.0\r\n\r\n", b"abc"], True),
    "pri-preface": ([b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], False),
    # More heads the pure-Python parser must read as h11 does, or hand to it.
    "http10-keep-alive-then-more": ([b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"],
                                    False),
    "close-after-body": ([b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                          + GET % b"b"], False),
    "pipelined-close-then-more": ([GET % b"a" + b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                                   + GET % b"b"], False),
    "pipelined-http10-then-more": ([GET % b"a" + b"GET /a HTTP/1.0\r\n\r\n" + GET % b"b"], False),
    "close-listed": ([b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, CLOSE\r\n\r\n" + GET % b"b"],
                     False),
    "expect-100-respond-first": ([b"POST /respond-first HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                                  b"Expect: 100-continue\r\n\r\n", b"ok"], False),
    "two-expect-fields": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
                           b"Expect: x\r\n\r\n", b"ok"], False),
    "expect-http10": ([b"POST /p HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", b"ok"], False),
    "leading-crlf": ([b"\r\n" + GET % b"a"], False),
    "leading-lf": ([b"\n" + GET % b"a"], False),
    "leading-space": ([b" " + GET % b"a"], False),
    "leading-crlf-alone": ([b"\r\n"], False),
    "tls-client-hello": ([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], False),
    "lower-case-method": ([b"get /a HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "connect-lower-case": ([b"connect /a HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "double-space": ([b"GET  /a HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "tab-in-request-line": ([b"GET\t/a HTTP/1.1\r\nHost: h\r\n\r\n"], False),
    "space-after-version": ([b"GET /a HTTP/1.1 \r\nHost: h\r\n\r\n"], False),
    "lower-case-version": ([b"GET /a http/1.1\r\nHost: h\r\n\r\n"], False),
    "version-10-host-twice": ([b"GET /a HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"], False),
    "empty-name": ([b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"], False),
    "no-colon": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n"], False),
    "empty-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A:\r\nX-B: \t \r\n\r\n"], False),
    "inner-whitespace": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A:a \t b\tc\r\nX-B::\r\n\r\n"], False),
    "obs-text-value": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9 \x80\xff\r\n\r\n"], False),
    "fold-first-line": ([b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"], False),
    "tab-fold": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\t2\r\n\r\n"], False),
    "bare-lf-end": ([b"GET / HTTP/1.1\r\nHost: h\n\n"], False),
    "bare-lf-then-crlf": ([b"GET / HTTP/1.1\r\nHost: h\n\r\n"], False),
    "bare-lf-inside": ([b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n"], False),
    "bare-lf-split": ([b"GET / HTTP/1.1\nHost: h\n", b"\n"], False),
    "bare-cr": ([b"GET / HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n"], False),
    "cl-leading-zeros": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 003\r\n\r\nabc" + GET % b"b"], False),
    "cl-zero": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" + GET % b"b"], False),
    "cl-empty": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"], False),
    "cl-spaces": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length:  2 \r\n\r\nok"], False),
    "cl-19-digits": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0000000000000000002\r\n\r\nok"], False),
    "cl-20-digits": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 00000000000000000002\r\n\r\nok"], False),
    "cl-21-digits": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 000000000000000000002\r\n\r\nok"], False),
    "cl-unicode-digit": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: \xd9\xa3\r\n\r\nabc"], False),
    "cl-over-limit": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 123456789012345678\r\n\r\n"], True),
    "body-byte-by-byte": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n", b"a", b"b", b"c" + GET % b"n"],
                          False),
    "pipelined-posts": ([b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nxPOST /2 HTTP/1.1\r\n"
                         b"Host: h\r\nContent-Length: 2\r\n\r\nyz" + GET % b"3"], False),
    "chunked-then-get": ([b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
                          + GET % b"after"], False),
    "get-then-chunked": ([GET % b"a" + b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                          b"1\r\na\r\n0\r\n\r\n"], False),
    "upgrade-empty": ([b"GET /u HTTP/1.1\r\nHost: h\r\nUpgrade:\r\n\r\n" + GET % b"b"], False),
    "websocket": ([b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"], False),
    "head-just-fits": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 4000, b"\r\n\r\n"], False),
    "head-too-large-pipelined": ([GET % b"a" + b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 5000], False),
    "head-too-large-dribbled": ([b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: "] + [b"a" * 1000] * 5, False),
    "many-fields": ([b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(200))
                     + b"\r\n"], False),
    "eof-in-head-after-request": ([GET % b"a" + b"GET /b HTTP/1.1\r\n"], True),
    "eof-in-next-body": ([GET % b"a" + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"], True),
    "empty-line-between": ([GET % b"a" + b"\r\n" + GET % b"b"], False),
    "eof-after-close-request": ([b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"], True),
    # Bytes behind a `Connection: close` request: the requests before it are still answered in turn.
    "pipelined-then-data-after-close": ([GET % b"a" + b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nX"],
                                        False),
    "expect-listed-twice": ([b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
                             b"Expect: foo\r\n\r\n", b"ok"], False),
    "http10-te-and-cl-response": ([b"GET /te-and-cl HTTP/1.0\r\n\r\n"], False),
}

# Inputs split at every byte boundary (two pieces), then sent a byte at a time.
SPLIT = {
    "pipelined-get-post": GET % b"a" + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + GET % b"z",
    "folded": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n",
    "bare-lf": GET % b"a" + b"GET /lf HTTP/1.1\nHost: h\n\n",
    "close-then-more": b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    "chunked": b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + GET % b"z",
    "leading-crlf": b"\r\n" + GET % b"a",
}


# Where llhttp is more lenient than h11 in ways its callbacks do not show, inside a chunk.
LLHTTP_LENIENT = {"double-space": "llhttp takes several spaces between the parts of the request line",
                  "empty-line-between": "llhttp skips an empty line between pipelined requests"}


@pytest.mark.parametrize("parser", FAST)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_codec_answers_as_h11(parser: str, case: str) -> None:
    if parser == "httptools" and case in LLHTTP_LENIENT:
        pytest.xfail(LLHTTP_LENIENT[case])
    pieces, eof = CASES[case]
    expected = reference(tuple(pieces), eof)
    assert expected[0] or expected[1], "the case should make the server write something or close"
    assert exchange(parser, pieces, eof) == expected


@pytest.mark.parametrize("parser", FAST)
@pytest.mark.parametrize("case", sorted(SPLIT))
def test_a_head_split_anywhere_gets_the_same_answer(parser: str, case: str) -> None:
    data = SPLIT[case]
    for at in range(1, len(data)):
        pieces = (data[:at], data[at:])
        assert exchange(parser, list(pieces)) == reference(pieces), at
    one_by_one = tuple(data[at:at + 1] for at in range(len(data)))
    assert exchange(parser, list(one_by_one)) == reference(one_by_one)


def heads_with(char: bytes) -> list[bytes]:
    """Heads with `char` in each place a fast parser checks: method, target, name, value (inside,
    alone, at either edge), version, and where a line ends."""
    return [b"G" + char + b"T /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a" + char + b"b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1." + char + b"\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX" + char + b"A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a" + char + b"b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + char + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A:" + char + b"a" + char + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1" + char + b"\r\n\r\n" + GET % b"next",
            char + GET % b"a"]


@pytest.mark.parametrize("parser", FAST)
@pytest.mark.parametrize("byte", range(256))
def test_a_byte_anywhere_in_a_head_gets_the_same_answer(parser: str, byte: int) -> None:
    # The fast codecs accept only the characters h11 accepts, in each part of a head (llhttp
    # refuses more, which hands the head to h11): one case per byte and place.
    for head in heads_with(bytes([byte])):
        assert exchange(parser, [head]) == reference((head,)), head


# Mutated runs of pipelined requests: a byte inserted, dropped or replaced (from bytes that matter
# to a parser), cut into pieces at random places; seeded, so every run tries the same inputs.
MUTATION_SEEDS = (GET % b"a", b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                  b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                  b"POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
                  b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                  b"HEAD /chunked HTTP/1.1\r\nHost: h\r\nX-A: b c\r\n\r\n")
MUTATION_BYTES = b"\r\n :\t\x00\x7f\x80,0123456789aAzZ-/?HTTP1.close-chunked"


def mutated_inputs(seed: int, count: int) -> list[tuple[tuple[bytes, ...], bool]]:
    rnd = random.Random(seed)
    inputs = []
    for _ in range(count):
        data = bytearray(b"".join(rnd.choice(MUTATION_SEEDS) for _ in range(rnd.randint(1, 3))))
        for _ in range(rnd.randint(0, 3)):
            choice, at = rnd.random(), rnd.randrange(len(data) + 1)
            if choice < 0.4:
                data[at:at] = bytes([rnd.choice(MUTATION_BYTES)])
            elif at < len(data):
                if choice < 0.7:
                    del data[at]
                else:
                    data[at] = rnd.choice(MUTATION_BYTES)
        cuts = sorted(rnd.sample(range(1, len(data)), min(rnd.randint(0, 3), len(data) - 1)))
        pieces = tuple(bytes(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)]))
        inputs.append((pieces, rnd.random() < 0.3))
    return inputs


@pytest.mark.parametrize("parser", FAST)
@pytest.mark.parametrize("seed", range(4))
def test_mutated_requests_get_the_same_answer(parser: str, seed: int) -> None:
    for pieces, eof in mutated_inputs(seed, 150):
        data = b"".join(pieces)
        if parser == "httptools" and (b"  " in data or b"\r\n\r\n\r\n" in data):
            continue  # LLHTTP_LENIENT
        assert exchange(parser, list(pieces), eof) == reference(pieces, eof), (pieces, eof)


@needs_httptools
def test_auto_prefers_httptools_when_installed() -> None:
    assert resolve_parser("auto") == "httptools"
    assert type(codec_factory("auto", 1024)()).__name__ == "HttptoolsCodec"
    assert type(codec_factory("h11", 1024)()).__name__ == "H11Codec"
    assert type(codec_factory("python", 1024)()).__name__ == "PythonCodec"


def test_auto_is_the_python_parser_without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "httptools_available", lambda: False)
    assert resolve_parser("auto") == "python"


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


@pytest.mark.parametrize("parser", ["h11", "python", pytest.param("httptools", marks=needs_httptools)])
def test_a_long_pipelined_run_read_in_pieces_is_served_whole(parser: str) -> None:
    # Over 256 KiB of pipelined input (past what the llhttp codec keeps to hand a head to h11),
    # request heads split across reads: each head is counted from its own start against the
    # 16 KiB head limit, never with the body or requests read before it in the same read.
    request = b"GET /%05d HTTP/1.1\r\nHost: example.com\r\nX-Pad: " + b"p" * 60 + b"\r\n\r\n"
    upload = b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 300000\r\n\r\n" + b"b" * 300_000
    stream = upload + b"".join(request % index for index in range(3000))
    for read_size in (65_536, 65_537, 100_000):
        assert serve_pipelined(parser, stream, read_size) == (3001, 0)


# Plain heads whose facts (codec.Request: size, declared length, chunked, upgrade) the connection's
# checks (request.py) read: each fast codec finds them in its own pass, the reference with read_head.
# (A head a fast codec hands to h11, as the pure-Python one does a chunked request, is h11's.)
FACT_HEADS = {
    "get": GET % b"a",
    "post-length-query": b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nX-A: b \r\n\r\n",
    "post-chunked": b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    "http10-without-host": b"GET /x HTTP/1.0\r\nAccept: */*\r\n\r\n",
    "many-fields": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(50)) + b"\r\n",
}


@pytest.mark.parametrize("parser", FAST)
@pytest.mark.parametrize("case", sorted(FACT_HEADS))
def test_a_fast_codec_reports_a_heads_facts_as_the_reference_does(parser: str, case: str) -> None:
    def facts(name: str) -> tuple[Any, ...]:
        codec = codec_factory(name, 16 * 1024)()
        codec.receive_data(FACT_HEADS[case])
        event = codec.next_event()
        if event is SWITCH:
            event = codec.successor().next_event()
        assert isinstance(event, Request), event
        return (event.method, event.target, event.http_version, event.headers, event.head_size,
                event.content_length, event.chunked, event.upgrade)
    expected = facts("h11")
    assert expected[4] > len(FACT_HEADS[case]) // 2  # counted, not left at a default
    assert facts(parser) == expected
