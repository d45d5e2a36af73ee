"""RFC 9113 §8 HTTP message framing and fields, RFC 8441 WebSockets, §9.2 TLS."""

from __future__ import annotations

import json
import ssl

from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
)

from ..h2raw import (
    Connection,
    FrameType,
    Setting,
    continuation,
    data,
    describe,
    headers,
)
from ..runner import CaseFailed
from .base import (
    E,
    Target,
    case,
    expect_ok,
    malformed,
    raw_block,
    request_fields,
    seen_header,
)

# -- 8.1 message framing -----------------------------------------------------------------------------------------

@case("8.1.1", "content-length larger than the DATA sent", "stream error PROTOCOL_ERROR")
def content_length_too_large(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn, b"POST", b"/stall") + [(b"content-length", b"10")]),
                          end_stream=False), data(1, b"12345", end_stream=True))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@case("8.1.1", "content-length smaller than the DATA sent", "stream error PROTOCOL_ERROR")
def content_length_too_small(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn, b"POST", b"/stall") + [(b"content-length", b"3")]),
                          end_stream=False), data(1, b"12345", end_stream=True))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@case("8.1.1", "content-length that is not a number", "stream error PROTOCOL_ERROR")
def content_length_invalid(t: Target) -> None:
    with t.open() as conn:
        malformed(conn, request_fields(conn, b"POST", b"/stall") + [(b"content-length", b"ten")])


@case("8.1.1", "content-length matching the DATA", "accepted: body echoed")
def content_length_ok(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn, b"POST", b"/echo") + [(b"content-length", b"5")]),
                          end_stream=False), data(1, b"12", end_stream=False), data(1, b"345", end_stream=True))
        expect_ok(conn, 1, b"12345")


@case("8.1", "request trailers after the body", "accepted: body echoed")
def request_trailers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/echo", method=b"POST", end_stream=False)
        conn.send(data(1, b"body"), headers(1, raw_block([(b"x-checksum", b"abc")]), end_stream=True))
        expect_ok(conn, 1, b"body")


@case("8.1", "second HEADERS without END_STREAM (trailers that do not end the stream)",
      "stream error PROTOCOL_ERROR (or connection error)")
def trailers_without_end_stream(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(data(1, b"body"), headers(1, raw_block([(b"x-checksum", b"abc")]), end_stream=False))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, connection_error_ok=True)


@case("8.1", "pseudo-header field in request trailers", "stream error PROTOCOL_ERROR")
def pseudo_header_in_trailers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(data(1, b"body"), headers(1, raw_block([(b":path", b"/other")]), end_stream=True))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@case("8.1", "response with trailers (/trailers)", "HEADERS :status 200, DATA, then a trailer HEADERS with "
      "END_STREAM and no pseudo-header")
def response_trailers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/trailers", extra=[(b"te", b"trailers")])
        response = conn.read_response(1)
        trailers = dict(response.trailers)
        if response.status != 200 or trailers.get(b"x-trailer-check") != b"done":
            raise CaseFailed("trailer x-trailer-check: done", f"status {response.status}, trailers {response.trailers}")
        if any(name.startswith(b":") for name, _ in response.trailers):
            raise CaseFailed("no pseudo-header in trailers", f"{response.trailers}")


@case("8.1.1", "HEAD request", "a response with no DATA payload")
def head_has_no_body(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/hello", method=b"HEAD")
        response = conn.read_response(1)
        if response.status != 200 or response.body:
            raise CaseFailed("200 and no body", f"status {response.status}, {len(response.body)} octets")


@case("8.3.2", "response field block", ":status first, lowercase names, no connection-specific field")
def response_fields_valid(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/hello")
        response = conn.read_response(1)
        names = [name for name, _ in response.headers]
        bad = [n for n in names if n != n.lower() or n in (b"connection", b"keep-alive", b"transfer-encoding",
                                                           b"upgrade", b"proxy-connection")]
        if not names or names[0] != b":status" or bad or sum(n.startswith(b":") for n in names) != 1:
            raise CaseFailed("exactly one :status, first; lowercase; no connection-specific fields", f"{names}")


# -- 8.2 fields --------------------------------------------------------------------------------------------------

def _malformed_case(title: str, section: str, extra: list[tuple[bytes, bytes]]) -> None:
    def run(t: Target) -> None:
        with t.open() as conn:
            malformed(conn, request_fields(conn) + extra)
    case(section, title, "stream error PROTOCOL_ERROR")(run)


_malformed_case("uppercase field name (X-Upper)", "8.2", [(b"X-Upper", b"1")])
_malformed_case("field name containing a space", "8.2.1", [(b"x bad", b"1")])
_malformed_case("regular field name containing a colon", "8.2.1", [(b"x:colon", b"1")])
_malformed_case("field value containing NUL", "8.2.1", [(b"x-nul", b"a\x00b")])
_malformed_case("field value containing CR LF", "8.2.1", [(b"x-crlf", b"a\r\nb")])
_malformed_case("field value starting with a space", "8.2.1", [(b"x-space", b" a")])
_malformed_case("field value ending with a tab", "8.2.1", [(b"x-tab", b"a\t")])
_malformed_case("connection: keep-alive", "8.2.2", [(b"connection", b"keep-alive")])
_malformed_case("transfer-encoding: chunked", "8.2.2", [(b"transfer-encoding", b"chunked")])
_malformed_case("upgrade: websocket", "8.2.2", [(b"upgrade", b"websocket")])
_malformed_case("te: gzip", "8.2.2", [(b"te", b"gzip")])
_malformed_case("unknown pseudo-header :foo", "8.3", [(b":foo", b"bar")])
_malformed_case("response pseudo-header :status in a request", "8.3", [(b":status", b"200")])
_malformed_case("host differing from :authority", "8.3.1", [(b"host", b"other.example")])


@case("8.2.2", "te: trailers", "accepted: response on stream 1")
def te_trailers_ok(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn) + [(b"te", b"trailers")])))
        expect_ok(conn, 1)


@case("8.2.3", "two cookie fields", "joined with '; ' for the app")
def cookies_joined(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn, path=b"/headers")
                                       + [(b"cookie", b"a=b"), (b"cookie", b"c=d")])))
        seen = seen_header(conn, 1, "cookie")
        if seen != ["a=b; c=d"]:
            raise CaseFailed("one cookie 'a=b; c=d'", f"{seen}")


@case("8.3", "pseudo-header after a regular field", "stream error PROTOCOL_ERROR")
def pseudo_after_regular(t: Target) -> None:
    with t.open() as conn:
        fields = request_fields(conn)
        malformed(conn, fields[:3] + [(b"x-first", b"1"), fields[3]])


@case("8.3", "duplicate :path", "stream error PROTOCOL_ERROR")
def duplicate_pseudo(t: Target) -> None:
    with t.open() as conn:
        malformed(conn, request_fields(conn) + [(b":path", b"/again")])


def _missing_case(name: bytes) -> None:
    def run(t: Target) -> None:
        with t.open() as conn:
            malformed(conn, [f for f in request_fields(conn) if f[0] != name])
    case("8.3.1", f"request without {name.decode()}", "stream error PROTOCOL_ERROR")(run)


for _name in (b":method", b":scheme", b":path"):
    _missing_case(_name)


@case("8.3.1", "empty :path", "stream error PROTOCOL_ERROR")
def empty_path(t: Target) -> None:
    with t.open() as conn:
        malformed(conn, request_fields(conn, path=b""))


@case("8.1.1", "malformed request on stream 1, then a valid one on stream 3",
      "stream 1 reset with PROTOCOL_ERROR, stream 3 answered on the same connection")
def malformed_then_valid(t: Target) -> None:
    with t.open() as conn:
        malformed(conn, request_fields(conn) + [(b"connection", b"close")])
        conn.request(3)
        expect_ok(conn, 3)


@case("10.5.1", "request field block over the server's SETTINGS_MAX_HEADER_LIST_SIZE",
      "that request refused alone (431 response or RST_STREAM); the connection stays open")
def header_list_too_large(t: Target) -> None:
    with t.open() as conn:
        limit = conn.server_settings.get(Setting.MAX_HEADER_LIST_SIZE, 65536)
        frame_size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        value = b"v" * 8000
        block = raw_block(request_fields(conn) + [(b"x-big-%d" % n, value) for n in range(limit // 8000 + 2)])
        chunks = [block[i:i + frame_size] for i in range(0, len(block), frame_size)]
        frames = [headers(1, chunks[0], end_headers=len(chunks) == 1)]
        frames += [continuation(1, chunk, end_headers=i == len(chunks) - 1) for i, chunk in enumerate(chunks[1:], 1)]
        conn.send(*frames)
        answer = conn.read_until(
            lambda f: (isinstance(f, HeadersFrame) and f.stream_id == 1)
            or (f is not None and f.type == FrameType.RST_STREAM and f.stream_id == 1),
            "a 431 response or RST_STREAM on stream 1")
        if isinstance(answer, HeadersFrame):
            status = dict(answer.decoded).get(b":status")  # type: ignore[attr-defined]
            if status != b"431":
                raise CaseFailed("431 (or RST_STREAM)", f":status {status!r}")
        conn.expect_alive(what="the connection kept open after refusing one oversized request")


# -- RFC 8441 WebSockets over HTTP/2 ----------------------------------------------------------------------

def _ws_client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client WebSocket frame (RFC 6455 §5.2), payload under 126 octets."""
    mask = b"\x11\x22\x33\x44"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _ws_server_message(conn: Connection, stream_id: int, mark: int) -> bytes:
    """The first complete WebSocket frame the server sent on the stream (unmasked, short)."""
    def complete(_: object) -> bool:
        raw = b"".join(f.data for f in conn.frames[mark:] if isinstance(f, DataFrame) and f.stream_id == stream_id)
        return len(raw) >= 2 and len(raw) >= 2 + (raw[1] & 0x7F)
    conn.read_until(complete, f"a WebSocket message on stream {stream_id}")
    raw = b"".join(f.data for f in conn.frames[mark:] if isinstance(f, DataFrame) and f.stream_id == stream_id)
    if raw[0] & 0x0F != 0x1 or raw[1] & 0x80 or raw[1] & 0x7F >= 126:
        raise CaseFailed("an unmasked short text frame", raw[:8].hex())
    return raw[2:2 + (raw[1] & 0x7F)]


@case("4", "extended CONNECT (:protocol websocket) to /ws/info",
      ":status 200, the app's first message says http_version 2, a text message is echoed", rfc="8441")
def websocket_over_http2(t: Target) -> None:
    with t.open() as conn:
        if conn.server_settings.get(Setting.ENABLE_CONNECT_PROTOCOL) != 1:
            raise CaseFailed("SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (§3)",
                             f"{conn.server_settings.get(Setting.ENABLE_CONNECT_PROTOCOL)}")
        fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                  (b":scheme", b"https" if conn.tls else b"http"), (b":authority", conn.authority),
                  (b":path", b"/ws/info"), (b"sec-websocket-version", b"13")]
        conn.send(headers(1, raw_block(fields), end_stream=False))
        opened = conn.read_until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "response HEADERS")
        status = dict(opened.decoded).get(b":status")
        if status != b"200" or "END_STREAM" in opened.flags:
            raise CaseFailed(":status 200, stream left open", describe(opened))
        info = json.loads(_ws_server_message(conn, 1, 0))
        if info.get("http_version") != "2":
            raise CaseFailed("http_version 2 in the WebSocket scope", f"{info}")
        mark = len(conn.frames)
        conn.send(data(1, _ws_client_frame(b"hello over h2")))
        echoed = _ws_server_message(conn, 1, mark)
        if echoed != b"hello over h2":
            raise CaseFailed("the text echoed", repr(echoed))


@case("4", "extended CONNECT without :path", "stream error PROTOCOL_ERROR (malformed)", rfc="8441")
def websocket_connect_without_path(t: Target) -> None:
    with t.open() as conn:
        malformed(conn, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                         (b":scheme", b"https" if conn.tls else b"http"), (b":authority", conn.authority),
                         (b"sec-websocket-version", b"13")], end_stream=False)


# -- 9.2 TLS --------------------------------------------------------------------------------------------------

@case("9.2", "TLS parameters of an h2 connection", "TLS 1.2 or later, no TLS compression", transports=("tls",))
def tls_parameters(t: Target) -> None:
    with t.open() as conn:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        if sock.version() not in ("TLSv1.2", "TLSv1.3") or sock.compression() is not None:
            raise CaseFailed("TLSv1.2+ without compression", f"{sock.version()}, compression {sock.compression()}")
