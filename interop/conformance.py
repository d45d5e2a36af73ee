"""Frame-level HTTP/2 conformance cases, run with the raw client of h2raw.py.

Each case names the section it checks (RFC 9113 unless stated: RFC 7541 for HPACK, RFC 9218
for priorities, RFC 7540 where h2spec still checks a rule RFC 9113 dropped) and the exact
outcome the RFC requires. Where the RFC allows more than one outcome (a stream error that may
also be a connection error, §5.4.1), the case accepts exactly those and says so.

Every case opens its own connection, so a failure cannot leak into the next one. The cases
run against both servers, h2c (cleartext, prior knowledge) and TLS (ALPN h2), except where
the transport matters (the invalid preface, TLS parameters).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    SettingsFrame,
)

from .h2raw import (
    PREFACE,
    Connection,
    ErrorCode,
    Flag,
    FrameType,
    Setting,
    continuation,
    data,
    describe,
    goaway,
    headers,
    hpack_int,
    hpack_string,
    indexed,
    literal_with_indexing,
    literal_without_indexing,
    ping,
    priority,
    raw_frame,
    rst_stream,
    settings,
    table_size_update,
    window_update,
)
from .runner import CaseFailed

E = ErrorCode
MAX_WINDOW = 2**31 - 1
TIMEOUT = 2.0


@dataclass(frozen=True)
class Target:
    name: str  # "h2c" or "tls"
    port: int
    ssl_context: ssl.SSLContext | None

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def connect(self) -> Connection:
        return Connection(self.port, self.ssl_context, timeout=TIMEOUT)

    def open(self, client_settings: dict[int, int] | None = None) -> Connection:
        """A connection past the preface: SETTINGS exchanged and acknowledged both ways."""
        conn = self.connect()
        try:
            conn.handshake(client_settings)
        except BaseException:
            conn.close()
            raise
        return conn


@dataclass(frozen=True)
class Case:
    section: str  # e.g. "RFC 9113 §6.5.2"
    title: str
    expected: str
    run: Callable[[Target], None]
    transports: tuple[str, ...] = ("h2c", "tls")

    @property
    def name(self) -> str:
        return f"{self.section} {self.title} -> {self.expected}"


CASES: list[Case] = []


def case(section: str, title: str, expected: str, *, rfc: str = "9113",
         transports: tuple[str, ...] = ("h2c", "tls")) -> Callable[[Callable[[Target], None]], Callable[[Target], None]]:
    def register(function: Callable[[Target], None]) -> Callable[[Target], None]:
        CASES.append(Case(f"RFC {rfc} §{section}", title, expected, function, transports))
        return function
    return register


# -- helpers ----------------------------------------------------------------------------------------

def request_fields(conn: Connection, method: bytes = b"GET", path: bytes = b"/") -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"https" if conn.tls else b"http"),
            (b":authority", conn.authority), (b":path", path)]


def raw_block(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Literal fields without indexing: any bytes at all, and the dynamic tables stay untouched
    (so the hpack.Encoder of the connection stays in step with the server's decoder)."""
    return b"".join(literal_without_indexing(name, value) for name, value in fields)


def malformed(conn: Connection, fields: list[tuple[bytes, bytes]], *, end_stream: bool = True) -> None:
    """Send `fields` as the request on stream 1; expect only that stream to be reset."""
    conn.send(headers(1, raw_block(fields), end_stream=end_stream))
    conn.expect_stream_error(1, E.PROTOCOL_ERROR)


def expect_ok(conn: Connection, stream_id: int, body: bytes | None = None) -> None:
    response = conn.read_response(stream_id)
    if response.status != 200:
        raise CaseFailed(f"200 on stream {stream_id}", f"status {response.status}")
    if body is not None and bytes(response.body) != body:
        raise CaseFailed(f"body {body[:40]!r} ({len(body)} bytes)",
                         f"{bytes(response.body[:40])!r} ({len(response.body)} bytes)")


def data_on(conn: Connection, stream_id: int, mark: int = 0) -> int:
    return sum(len(f.data) for f in conn.frames[mark:] if isinstance(f, DataFrame) and f.stream_id == stream_id)


def exactly_this_much_data(conn: Connection, stream_id: int, amount: int, why: str, mark: int = 0) -> None:
    """Wait for `amount` DATA octets on the stream (the app produces them at its own pace), then
    probe with PINGs: more than `amount` by then means the server overran a window."""
    conn.read_until(lambda f: f is not None and data_on(conn, stream_id, mark) >= amount,
                    f"{amount} octets of DATA on stream {stream_id} ({why})")
    conn.expect_alive()
    got = data_on(conn, stream_id, mark)
    if got != amount:
        raise CaseFailed(f"exactly {amount} octets of DATA ({why})", f"{got} octets")


def no_data_after_headers(conn: Connection, stream_id: int, why: str) -> None:
    """The response HEADERS arrive, and no DATA within two PING round trips after them."""
    conn.read_until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream_id,
                    f"response HEADERS on stream {stream_id}")
    conn.expect_alive()
    if data_on(conn, stream_id):
        raise CaseFailed(f"no DATA ({why})", f"{data_on(conn, stream_id)} octets")


# -- 3.4 connection preface --------------------------------------------------------------------------

@case("3.4", "client preface and SETTINGS", "the server's first frame is a SETTINGS frame (not an ACK)")
def preface_server_settings_first(t: Target) -> None:
    with t.connect() as conn:
        conn.send(PREFACE, settings())
        first = conn.read_frame()
        if not isinstance(first, SettingsFrame) or "ACK" in first.flags or first.stream_id != 0:
            raise CaseFailed("SETTINGS on stream 0 without ACK", describe(first))


@case("3.4", "invalid connection preface over TLS with ALPN h2",
      "connection error PROTOCOL_ERROR (GOAWAY may be omitted)",
      transports=("tls",))
def preface_invalid(t: Target) -> None:
    # Only over TLS: a cleartext port that also serves HTTP/1.1 answers such bytes as HTTP/1.1
    # (h2spec judges that case against the `--http 2`-only port).
    with t.connect() as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", settings())
        conn.expect_connection_error(E.PROTOCOL_ERROR, goaway_optional=True)


@case("3.4", "invalid connection preface on an HTTP/2-only cleartext port",
      "connection error PROTOCOL_ERROR (GOAWAY may be omitted)", transports=("h2c-only",))
def preface_invalid_cleartext(t: Target) -> None:
    with t.connect() as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", settings())
        conn.expect_connection_error(E.PROTOCOL_ERROR, goaway_optional=True)


@case("3.4", "HTTP/1.1 request on an HTTP/2-only cleartext port",
      "connection error PROTOCOL_ERROR (GOAWAY may be omitted), no HTTP/1.1 answer", transports=("h2c-only",))
def http1_on_http2_only_port(t: Target) -> None:
    with t.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        conn.expect_closed_without_http1()


@case("3.3", "prior-knowledge HTTP/2 on an HTTP/2-only cleartext port", "served: response on stream 1",
      transports=("h2c-only",))
def prior_knowledge_on_http2_only_port(t: Target) -> None:
    with t.open() as conn:
        conn.request(1)
        expect_ok(conn, 1)


@case("3.4", "preface followed by a PING instead of SETTINGS",
      "connection error PROTOCOL_ERROR (GOAWAY may be omitted)")
def preface_without_settings(t: Target) -> None:
    with t.connect() as conn:
        conn.send(PREFACE, ping(b"nosettng"))
        conn.expect_connection_error(E.PROTOCOL_ERROR, goaway_optional=True)


# -- 4.1 frame format ---------------------------------------------------------------------------------

@case("4.1", "frame of an unknown type (0xfa) on stream 0 and on idle stream 1",
      "ignored: the request that follows on stream 1 is answered")
def unknown_frame_type(t: Target) -> None:
    with t.open() as conn:
        conn.send(raw_frame(0xFA, 0, 0, b"unknown"), raw_frame(0xFA, 0xFF, 1, b"unknown"))
        conn.request(1)
        expect_ok(conn, 1)


@case("4.1", "PING with every undefined flag set", "PING ACK with the same payload (flags ignored)")
def undefined_flags(t: Target) -> None:
    with t.open() as conn:
        conn.send(raw_frame(FrameType.PING, 0xFE, 0, b"flagtest"))
        ack = conn.read_until(lambda f: isinstance(f, PingFrame), "a PING ACK")
        if "ACK" not in ack.flags or ack.opaque_data != b"flagtest":
            raise CaseFailed("PING ACK with payload b'flagtest'", f"{describe(ack)} {ack.opaque_data!r}")


@case("4.1", "HEADERS with the reserved bit of the stream identifier set",
      "reserved bit ignored: response on stream 1")
def reserved_bit(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(0x80000001, conn.header_block()))
        expect_ok(conn, 1)


# -- 4.2 frame size ------------------------------------------------------------------------------------

@case("4.2", "DATA frame of exactly SETTINGS_MAX_FRAME_SIZE", "accepted: echoed back whole")
def data_max_frame_size(t: Target) -> None:
    with t.open() as conn:
        size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        conn.request(1, b"/echo", method=b"POST", end_stream=False)
        conn.send(data(1, body, end_stream=True))
        expect_ok(conn, 1, body)


@case("4.2", "DATA frame one octet over SETTINGS_MAX_FRAME_SIZE",
      "FRAME_SIZE_ERROR (stream or connection error)")
def data_too_large(t: Target) -> None:
    with t.open() as conn:
        size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(data(1, b"x" * (size + 1)))
        conn.expect_stream_error(1, E.FRAME_SIZE_ERROR, connection_error_ok=True)


@case("4.2", "HEADERS frame over SETTINGS_MAX_FRAME_SIZE (a field block)", "connection error FRAME_SIZE_ERROR")
def headers_too_large(t: Target) -> None:
    with t.open() as conn:
        size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        block = raw_block(request_fields(conn) + [(b"x-big", b"a" * size)])
        conn.send(headers(1, block))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


# -- 4.3 field block compression --------------------------------------------------------------------------

@case("4.3", "field block ending in the middle of a string literal", "connection error COMPRESSION_ERROR")
def truncated_block(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, raw_block(request_fields(conn)) + b"\x00" + hpack_int(10, 7) + b"abc"))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("4.3", "PRIORITY frame between HEADERS and its CONTINUATION", "connection error PROTOCOL_ERROR")
def priority_inside_field_block(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), priority(1), continuation(1, block[6:]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("4.3", "HEADERS of stream 3 inside the field block of stream 1", "connection error PROTOCOL_ERROR")
def headers_inside_field_block(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), headers(3, block))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.5", "unknown extension frame inside a field block", "connection error PROTOCOL_ERROR")
def extension_inside_field_block(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), raw_frame(0xFA, 0, 1, b"x"),
                  continuation(1, block[6:]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# -- 5.1 stream states ------------------------------------------------------------------------------------

@case("5.1", "idle stream: DATA", "connection error PROTOCOL_ERROR")
def idle_data(t: Target) -> None:
    with t.open() as conn:
        conn.send(data(1, b"test", end_stream=True))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1", "idle stream: RST_STREAM", "connection error PROTOCOL_ERROR")
def idle_rst_stream(t: Target) -> None:
    with t.open() as conn:
        conn.send(rst_stream(1))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1", "idle stream: WINDOW_UPDATE", "connection error PROTOCOL_ERROR")
def idle_window_update(t: Target) -> None:
    with t.open() as conn:
        conn.send(window_update(1, 100))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1", "idle stream: CONTINUATION", "connection error PROTOCOL_ERROR")
def idle_continuation(t: Target) -> None:
    with t.open() as conn:
        conn.send(continuation(1, raw_block(request_fields(conn))))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1", "idle stream: PRIORITY, then HEADERS on that stream", "PRIORITY accepted: the request is answered")
def idle_priority(t: Target) -> None:
    with t.open() as conn:
        conn.send(priority(1, 0, 200))
        conn.request(1)
        expect_ok(conn, 1)


@case("5.1", "half-closed (remote): DATA after END_STREAM", "stream error STREAM_CLOSED (or connection error)")
def half_closed_data(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(data(1, b"test", end_stream=True))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("5.1", "half-closed (remote): second HEADERS after END_STREAM", "stream error STREAM_CLOSED (or connection error)")
def half_closed_headers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(headers(1, raw_block([(b"x-late", b"1")])))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("5.1", "half-closed (remote): WINDOW_UPDATE and PRIORITY", "accepted: no error, stream 1 not reset")
def half_closed_allowed_frames(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, 1000), priority(1, 0, 50))
        conn.expect_alive(streams=[1], what="WINDOW_UPDATE and PRIORITY accepted on a half-closed (remote) stream")


@case("5.1", "half-closed (remote): RST_STREAM", "stream closed; no RST_STREAM in return (§5.4.2), connection open")
def half_closed_rst(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(rst_stream(1, E.CANCEL))
        conn.expect_alive(streams=[1], what="no RST_STREAM answering our RST_STREAM, connection open")


@case("5.1", "half-closed (remote): CONTINUATION after a complete field block", "connection error PROTOCOL_ERROR")
def half_closed_continuation(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(continuation(1, raw_block([(b"x-late", b"1")])))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1", "closed by our RST_STREAM: DATA", "stream error STREAM_CLOSED (or connection error)")
def closed_after_rst_data(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(rst_stream(1, E.CANCEL), data(1, b"test", end_stream=True))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("5.1", "closed by our RST_STREAM: HEADERS", "stream error STREAM_CLOSED (or connection error)")
def closed_after_rst_headers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(rst_stream(1, E.CANCEL), headers(1, raw_block([(b"x-late", b"1")])))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("5.1", "closed after both END_STREAMs: DATA", "stream error STREAM_CLOSED (or connection error)")
def closed_data(t: Target) -> None:
    with t.open() as conn:
        conn.request(1)
        expect_ok(conn, 1)
        conn.send(data(1, b"test", end_stream=True))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("5.1", "closed after both END_STREAMs: HEADERS", "STREAM_CLOSED (stream or connection error)")
def closed_headers(t: Target) -> None:
    with t.open() as conn:
        conn.request(1)
        expect_ok(conn, 1)
        conn.send(headers(1, raw_block(request_fields(conn))))
        conn.expect_stream_error(1, E.STREAM_CLOSED, connection_error_ok=True)


@case("6.3", "PRIORITY on a closed stream", "accepted: connection stays open")
def closed_priority(t: Target) -> None:
    with t.open() as conn:
        conn.request(1)
        expect_ok(conn, 1)
        conn.send(priority(1, 0, 10))
        conn.expect_alive()


# -- 5.1.1 / 5.1.2 stream identifiers and concurrency -----------------------------------------------------------

@case("5.1.1", "request on an even-numbered stream (server-initiated id)", "connection error PROTOCOL_ERROR")
def even_stream_id(t: Target) -> None:
    with t.open() as conn:
        conn.request(2)
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1.1", "new stream 3 after stream 5 was opened", "connection error PROTOCOL_ERROR")
def decreasing_stream_id(t: Target) -> None:
    with t.open() as conn:
        conn.request(5)
        expect_ok(conn, 5)
        conn.request(3)
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("5.1.2", "one stream over SETTINGS_MAX_CONCURRENT_STREAMS",
      "stream error REFUSED_STREAM or PROTOCOL_ERROR on that stream only")
def concurrency_limit(t: Target) -> None:
    with t.open() as conn:
        limit = conn.server_settings.get(Setting.MAX_CONCURRENT_STREAMS)
        if limit is None or limit > 1000:
            raise CaseFailed("a SETTINGS_MAX_CONCURRENT_STREAMS of at most 1000 to test", f"{limit}")
        for n in range(limit):
            conn.request(1 + 2 * n, b"/stall")
        extra = 1 + 2 * limit
        conn.request(extra, b"/stall")
        conn.expect_stream_error(extra, E.REFUSED_STREAM, E.PROTOCOL_ERROR)
        conn.expect_alive(streams=[1 + 2 * n for n in range(limit)],
                          what=f"the {limit} streams within the limit kept open")


@case("5", "50 concurrent requests on one connection", "50 complete responses")
def multiplexing(t: Target) -> None:
    with t.open() as conn:
        conn.send(*[headers(1 + 2 * n, conn.header_block(path=b"/hello")) for n in range(50)])
        for n in range(50):
            expect_ok(conn, 1 + 2 * n)


@case("5.3.1", "HEADERS with a priority depending on its own stream", "stream error PROTOCOL_ERROR (or connection error)",
      rfc="7540")
def headers_self_dependency(t: Target) -> None:
    # RFC 9113 deprecated these signals; h2spec (http2/5.3.1) still checks the RFC 7540 rule.
    with t.open() as conn:
        conn.send(headers(1, conn.header_block(path=b"/stall"), depends_on=1))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, connection_error_ok=True)


@case("5.3.1", "PRIORITY making a stream depend on itself", "stream error PROTOCOL_ERROR (or connection error)",
      rfc="7540")
def priority_self_dependency(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(priority(1, depends_on=1))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, connection_error_ok=True)


# -- 6.1 DATA ----------------------------------------------------------------------------------------------

@case("6.1", "DATA on stream 0", "connection error PROTOCOL_ERROR")
def data_stream_zero(t: Target) -> None:
    with t.open() as conn:
        conn.send(data(0, b"test"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.1", "padded DATA", "padding stripped: the body is echoed without it")
def data_padded(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/echo", method=b"POST", end_stream=False)
        conn.send(data(1, b"hello", pad=10), data(1, b" world", end_stream=True, pad=0))
        expect_ok(conn, 1, b"hello world")


@case("6.1", "DATA whose Pad Length is the payload length or more", "connection error PROTOCOL_ERROR")
def data_bad_padding(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(raw_frame(FrameType.DATA, Flag.PADDED, 1, bytes([4]) + b"abc"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# -- 6.2 HEADERS -------------------------------------------------------------------------------------------

@case("6.2", "HEADERS on stream 0", "connection error PROTOCOL_ERROR")
def headers_stream_zero(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(0, raw_block(request_fields(conn))))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.2", "HEADERS with padding and the PRIORITY flag", "accepted: response on stream 1")
def headers_padded_priority(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, conn.header_block(), pad=7, depends_on=0, weight=100))
        expect_ok(conn, 1)


@case("6.2", "HEADERS whose Pad Length is the payload length or more", "connection error PROTOCOL_ERROR")
def headers_bad_padding(t: Target) -> None:
    with t.open() as conn:
        conn.send(raw_frame(FrameType.HEADERS, Flag.PADDED | Flag.END_HEADERS | Flag.END_STREAM, 1,
                            bytes([10]) + b"\x82\x84"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.2", "HEADERS without END_HEADERS followed by DATA", "connection error PROTOCOL_ERROR")
def headers_then_data(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn, b"POST", b"/echo"))
        conn.send(headers(1, block, end_stream=False, end_headers=False), data(1, b"x", end_stream=True))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# -- 6.3 PRIORITY ----------------------------------------------------------------------------------------

@case("6.3", "PRIORITY on stream 0", "connection error PROTOCOL_ERROR")
def priority_stream_zero(t: Target) -> None:
    with t.open() as conn:
        conn.send(priority(0, 1))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.3", "PRIORITY of 4 octets on an open stream", "stream error FRAME_SIZE_ERROR (or connection error)")
def priority_bad_length(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(raw_frame(FrameType.PRIORITY, 0, 1, b"\0\0\0\0"))
        conn.expect_stream_error(1, E.FRAME_SIZE_ERROR, connection_error_ok=True)


# -- 6.4 RST_STREAM -------------------------------------------------------------------------------------

@case("6.4", "RST_STREAM on stream 0", "connection error PROTOCOL_ERROR")
def rst_stream_zero(t: Target) -> None:
    with t.open() as conn:
        conn.send(rst_stream(0))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.4", "RST_STREAM of 3 octets", "connection error FRAME_SIZE_ERROR")
def rst_stream_bad_length(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(raw_frame(FrameType.RST_STREAM, 0, 1, b"\0\0\x08"))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


@case("6.4", "RST_STREAM on an open stream, then a new request", "the new request is answered")
def rst_then_new_stream(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(rst_stream(1, E.CANCEL))
        conn.request(3)
        expect_ok(conn, 3)
        if conn.responses.get(1) and conn.responses[1].reset is not None:
            raise CaseFailed("no RST_STREAM in answer to ours (§5.4.2)", f"RST_STREAM({conn.responses[1].reset})")


# -- 6.5 SETTINGS -------------------------------------------------------------------------------------------

def _connection_error(t: Target, frame: bytes, code: int) -> None:
    with t.open() as conn:
        conn.send(frame)
        conn.expect_connection_error(code)


@case("6.5", "SETTINGS with ACK and a payload", "connection error FRAME_SIZE_ERROR")
def settings_ack_with_payload(t: Target) -> None:
    _connection_error(t, raw_frame(FrameType.SETTINGS, Flag.ACK, 0, b"\0\x03\0\0\0\x64"), E.FRAME_SIZE_ERROR)


@case("6.5", "SETTINGS on stream 1", "connection error PROTOCOL_ERROR")
def settings_on_stream(t: Target) -> None:
    _connection_error(t, raw_frame(FrameType.SETTINGS, 0, 1, b"\0\x03\0\0\0\x64"), E.PROTOCOL_ERROR)


@case("6.5", "SETTINGS of 7 octets (not a multiple of 6)", "connection error FRAME_SIZE_ERROR")
def settings_bad_length(t: Target) -> None:
    _connection_error(t, raw_frame(FrameType.SETTINGS, 0, 0, b"\0\x03\0\0\0\x64\0"), E.FRAME_SIZE_ERROR)


@case("6.5.2", "SETTINGS_ENABLE_PUSH = 2", "connection error PROTOCOL_ERROR")
def settings_enable_push_invalid(t: Target) -> None:
    _connection_error(t, settings({Setting.ENABLE_PUSH: 2}), E.PROTOCOL_ERROR)


@case("6.5.2", "SETTINGS_INITIAL_WINDOW_SIZE = 2^31", "connection error FLOW_CONTROL_ERROR")
def settings_window_too_large(t: Target) -> None:
    _connection_error(t, settings({Setting.INITIAL_WINDOW_SIZE: 2**31}), E.FLOW_CONTROL_ERROR)


@case("6.5.2", "SETTINGS_MAX_FRAME_SIZE = 16383", "connection error PROTOCOL_ERROR")
def settings_frame_size_too_small(t: Target) -> None:
    _connection_error(t, settings({Setting.MAX_FRAME_SIZE: 16383}), E.PROTOCOL_ERROR)


@case("6.5.2", "SETTINGS_MAX_FRAME_SIZE = 2^24", "connection error PROTOCOL_ERROR")
def settings_frame_size_too_large(t: Target) -> None:
    _connection_error(t, settings({Setting.MAX_FRAME_SIZE: 2**24}), E.PROTOCOL_ERROR)


@case("2.1", "SETTINGS_NO_RFC7540_PRIORITIES = 2", "connection error PROTOCOL_ERROR", rfc="9218")
def settings_no_priorities_invalid(t: Target) -> None:
    _connection_error(t, settings({Setting.NO_RFC7540_PRIORITIES: 2}), E.PROTOCOL_ERROR)


@case("6.5.2", "SETTINGS with an unknown identifier (0xff)", "ignored: SETTINGS ACK, connection open")
def settings_unknown(t: Target) -> None:
    with t.open() as conn:
        conn.send(settings([(0xFF, 1), (Setting.MAX_CONCURRENT_STREAMS, 100)]))
        conn.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")
        conn.expect_alive()


@case("6.5.3", "two SETTINGS frames in a row", "two SETTINGS ACKs")
def settings_acked_in_order(t: Target) -> None:
    with t.open() as conn:
        mark = len(conn.frames)
        conn.send(settings({Setting.INITIAL_WINDOW_SIZE: 70000}), settings({Setting.INITIAL_WINDOW_SIZE: 80000}))
        conn.expect_alive()
        acks = [f for f in conn.frames[mark:] if isinstance(f, SettingsFrame) and "ACK" in f.flags]
        if len(acks) != 2:
            raise CaseFailed("2 SETTINGS ACKs", f"{len(acks)}")


@case("6.5.3", "one SETTINGS frame with INITIAL_WINDOW_SIZE twice (100, then 1)",
      "processed in order: the last value (1) applies, one DATA octet")
def settings_processed_in_order(t: Target) -> None:
    with t.open() as conn:
        conn.send(settings([(Setting.INITIAL_WINDOW_SIZE, 100), (Setting.INITIAL_WINDOW_SIZE, 1)]))
        conn.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")
        conn.request(1, b"/bytes?n=100")
        exactly_this_much_data(conn, 1, 1, "a 1-octet stream window")


@case("6.5.2", "the server's own SETTINGS", "ENABLE_PUSH absent or 0, MAX_FRAME_SIZE in 2^14..2^24-1, "
      "INITIAL_WINDOW_SIZE at most 2^31-1")
def server_settings_valid(t: Target) -> None:
    with t.open() as conn:
        values = conn.server_settings
        problems = []
        if values.get(Setting.ENABLE_PUSH, 0) != 0:
            problems.append(f"ENABLE_PUSH={values[Setting.ENABLE_PUSH]}")
        if not 2**14 <= values.get(Setting.MAX_FRAME_SIZE, 2**14) <= 2**24 - 1:
            problems.append(f"MAX_FRAME_SIZE={values[Setting.MAX_FRAME_SIZE]}")
        if values.get(Setting.INITIAL_WINDOW_SIZE, 65535) > MAX_WINDOW:
            problems.append(f"INITIAL_WINDOW_SIZE={values[Setting.INITIAL_WINDOW_SIZE]}")
        if problems:
            raise CaseFailed("valid values", ", ".join(problems))


# -- 6.6 / 8.4 PUSH_PROMISE and server push ---------------------------------------------------------------

@case("8.4", "client sends PUSH_PROMISE", "connection error PROTOCOL_ERROR")
def client_push_promise(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(raw_frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1,
                            (2).to_bytes(4, "big") + raw_block(request_fields(conn))))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("8.4", "request to a pushing route, push allowed", "PUSH_PROMISE (even promised id, GET) then the pushed response")
def push_allowed(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/push")
        expect_ok(conn, 1, b"pushed\n")
        promises = [f for f in conn.frames if isinstance(f, PushPromiseFrame)]
        if not promises:
            raise CaseFailed("a PUSH_PROMISE on stream 1", "none")
        promise = promises[0]
        fields = dict(promise.decoded)  # type: ignore[attr-defined]
        if promise.promised_stream_id % 2 or fields.get(b":method") != b"GET" or fields.get(b":path") != b"/res/0.svg":
            raise CaseFailed("promised even stream, GET /res/0.svg",
                             f"stream {promise.promised_stream_id}, {fields}")
        pushed = conn.read_response(promise.promised_stream_id)
        if pushed.status != 200 or not pushed.body.startswith(b"<svg"):
            raise CaseFailed("the pushed SVG with 200", f"status {pushed.status}, {bytes(pushed.body[:20])!r}")


@case("6.5.2", "SETTINGS_ENABLE_PUSH = 0, request to a pushing route", "no PUSH_PROMISE; the response itself")
def push_disabled(t: Target) -> None:
    with t.open({Setting.ENABLE_PUSH: 0}) as conn:
        conn.request(1, b"/push")
        expect_ok(conn, 1, b"pushed\n")
        conn.expect_alive()
        if any(isinstance(f, PushPromiseFrame) for f in conn.frames):
            raise CaseFailed("no PUSH_PROMISE", "a PUSH_PROMISE")


@case("5.1.2", "client SETTINGS_MAX_CONCURRENT_STREAMS = 0, request to a pushing route",
      "no PUSH_PROMISE (no stream the server may open); the response itself")
def push_no_streams(t: Target) -> None:
    with t.open({Setting.MAX_CONCURRENT_STREAMS: 0}) as conn:
        conn.request(1, b"/push")
        expect_ok(conn, 1, b"pushed\n")
        conn.expect_alive()
        if any(isinstance(f, PushPromiseFrame) for f in conn.frames):
            raise CaseFailed("no PUSH_PROMISE", "a PUSH_PROMISE")


# -- 6.7 PING ------------------------------------------------------------------------------------------------

@case("6.7", "PING", "PING ACK with an identical payload")
def ping_ack(t: Target) -> None:
    with t.open() as conn:
        conn.send(ping(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
        ack = conn.read_until(lambda f: isinstance(f, PingFrame), "a PING ACK")
        if "ACK" not in ack.flags or ack.opaque_data != b"\x01\x02\x03\x04\x05\x06\x07\x08":
            raise CaseFailed("PING ACK echoing the payload", f"{describe(ack)} {ack.opaque_data!r}")


@case("6.7", "unsolicited PING with the ACK flag", "no answer to it; connection open")
def ping_ack_not_answered(t: Target) -> None:
    with t.open() as conn:
        conn.send(ping(b"unsolicd", ack=True))
        conn.expect_alive()
        if any(isinstance(f, PingFrame) and f.opaque_data == b"unsolicd" for f in conn.frames):
            raise CaseFailed("no response to a PING ACK", "the server answered it")


@case("6.7", "PING on stream 1", "connection error PROTOCOL_ERROR")
def ping_on_stream(t: Target) -> None:
    _connection_error(t, ping(b"stream01", stream_id=1), E.PROTOCOL_ERROR)


@case("6.7", "PING of 6 octets", "connection error FRAME_SIZE_ERROR")
def ping_bad_length(t: Target) -> None:
    _connection_error(t, raw_frame(FrameType.PING, 0, 0, b"sixsix"), E.FRAME_SIZE_ERROR)


# -- 6.8 GOAWAY -----------------------------------------------------------------------------------------------

@case("6.8", "GOAWAY on stream 1", "connection error PROTOCOL_ERROR")
def goaway_on_stream(t: Target) -> None:
    _connection_error(t, goaway(0, E.NO_ERROR, stream_id=1), E.PROTOCOL_ERROR)


@case("6.8", "client GOAWAY(NO_ERROR) while a request is in progress", "the request still completes")
def client_goaway_lets_streams_finish(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/delay?ms=200")
        conn.send(goaway(0, E.NO_ERROR))
        response = conn.read_response(1)
        if response.status != 200:
            raise CaseFailed("200 on stream 1", f"status {response.status}")


@case("6.8", "connection error after streams 1 and 3 were served", "GOAWAY naming stream 3 as the last processed")
def goaway_last_stream_id(t: Target) -> None:
    with t.open() as conn:
        conn.request(1)
        expect_ok(conn, 1)
        conn.request(3)
        expect_ok(conn, 3)
        conn.send(ping(b"badstrm!", stream_id=5))
        frame = conn.read_until(lambda f: isinstance(f, GoAwayFrame), "GOAWAY")
        if frame.last_stream_id != 3:
            raise CaseFailed("last stream id 3", describe(frame))


# -- 7 error codes ----------------------------------------------------------------------------------------------

@case("7", "RST_STREAM with an unknown error code (0xff)", "no special behavior: stream closed, connection open")
def rst_stream_unknown_code(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall", method=b"POST", end_stream=False)
        conn.send(rst_stream(1, 0xFF))
        conn.expect_alive(streams=[1], what="the connection open and no RST_STREAM in answer")


@case("7", "GOAWAY with an unknown error code (0xff)", "no special behavior: the server closes the connection")
def goaway_unknown_code(t: Target) -> None:
    with t.open() as conn:
        conn.send(goaway(0, 0xFF))
        conn.expect_closed("the connection closed, as after any GOAWAY with an error")


# -- 6.9 WINDOW_UPDATE and flow control ------------------------------------------------------------------------

@case("6.9", "WINDOW_UPDATE of 0 on the connection", "connection error PROTOCOL_ERROR")
def window_update_zero_connection(t: Target) -> None:
    _connection_error(t, window_update(0, 0), E.PROTOCOL_ERROR)


@case("6.9", "WINDOW_UPDATE of 0 on an open stream", "stream error PROTOCOL_ERROR (or connection error)")
def window_update_zero_stream(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, 0))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, connection_error_ok=True)


@case("6.9", "WINDOW_UPDATE of 3 octets", "connection error FRAME_SIZE_ERROR")
def window_update_bad_length(t: Target) -> None:
    _connection_error(t, raw_frame(FrameType.WINDOW_UPDATE, 0, 0, b"\0\0\x01"), E.FRAME_SIZE_ERROR)


@case("6.9.1", "WINDOW_UPDATE taking the connection window over 2^31-1", "connection error FLOW_CONTROL_ERROR")
def connection_window_overflow(t: Target) -> None:
    _connection_error(t, window_update(0, MAX_WINDOW), E.FLOW_CONTROL_ERROR)


@case("6.9.1", "WINDOW_UPDATE taking a stream window over 2^31-1",
      "stream error FLOW_CONTROL_ERROR (or connection error)")
def stream_window_overflow(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, MAX_WINDOW))
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR, connection_error_ok=True)


@case("6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE change taking an open stream's window over 2^31-1",
      "connection error FLOW_CONTROL_ERROR")
def settings_window_overflow(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, MAX_WINDOW - 65535), settings({Setting.INITIAL_WINDOW_SIZE: 65536}))
        conn.expect_connection_error(E.FLOW_CONTROL_ERROR)


@case("6.9.1", "client SETTINGS_INITIAL_WINDOW_SIZE = 1, GET of 100 bytes",
      "one DATA octet, nothing more until WINDOW_UPDATE, then the other 99")
def server_respects_stream_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 1}) as conn:
        conn.request(1, b"/bytes?n=100")
        exactly_this_much_data(conn, 1, 1, "a 1-octet stream window")
        conn.send(window_update(1, 99))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 100:
            raise CaseFailed("100 octets after WINDOW_UPDATE", f"{len(response.body)}")


@case("6.9.1", "connection window left at 65535, GET of 70000 bytes",
      "exactly 65535 octets, the rest after a connection WINDOW_UPDATE")
def server_respects_connection_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 1 << 20}) as conn:
        conn.request(1, b"/bytes?n=70000")
        exactly_this_much_data(conn, 1, 65535, "the connection window")
        conn.send(window_update(0, 70000 - 65535))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 70000:
            raise CaseFailed("70000 octets after WINDOW_UPDATE", f"{len(response.body)}")


@case("6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE lowered below what was sent (negative window)",
      "no DATA while the window is negative; exactly the positive part after WINDOW_UPDATEs")
def negative_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 10000}) as conn:
        conn.send(window_update(0, 1 << 20))
        conn.request(1, b"/bytes?n=50000")
        exactly_this_much_data(conn, 1, 10000, "a 10000-octet stream window")
        # The window becomes 6000 - 10000 = -4000.
        conn.send(settings({Setting.INITIAL_WINDOW_SIZE: 6000}))
        mark = len(conn.frames)
        conn.send(window_update(1, 3000))  # -1000: still nothing may be sent
        conn.expect_alive()
        if data_on(conn, 1, mark):
            raise CaseFailed("no DATA while the stream window is -1000", f"{data_on(conn, 1, mark)} octets")
        conn.send(window_update(1, 1500))  # +500
        exactly_this_much_data(conn, 1, 500, "a stream window back at +500", mark)


@case("6.9.2", "client SETTINGS_INITIAL_WINDOW_SIZE = 0 then raised to 100 with a request waiting",
      "no DATA at 0; the 10-octet body once the setting grows the open stream's window")
def window_grown_by_settings(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 0}) as conn:
        conn.request(1, b"/bytes?n=10")
        no_data_after_headers(conn, 1, "a 0 stream window")
        conn.send(settings({Setting.INITIAL_WINDOW_SIZE: 100}))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 10:
            raise CaseFailed("10 octets", f"{len(response.body)}")


@case("6.9.1", "client sends more DATA than the stream window the server advertised",
      "FLOW_CONTROL_ERROR (stream or connection error)")
def client_exceeds_window(t: Target) -> None:
    with t.open() as conn:
        window = conn.server_settings.get(Setting.INITIAL_WINDOW_SIZE, 65535)
        frame_size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        conn.request(1, b"/sink", method=b"POST", end_stream=False)
        chunks, left = [], window + frame_size
        while left > 0:
            chunks.append(data(1, b"x" * min(frame_size, left)))
            left -= frame_size
        conn.send(*chunks)
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR, connection_error_ok=True)


@case("4.2", "response larger than SETTINGS_MAX_FRAME_SIZE", "every DATA frame within 16384 octets")
def server_respects_frame_size(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/bytes?n=60000")
        response = conn.read_response(1)
        if len(response.body) != 60000 or max(response.data_frames) > 16384:
            raise CaseFailed("60000 octets in frames of at most 16384",
                             f"{len(response.body)} octets, largest frame {max(response.data_frames)}")


# -- 6.10 CONTINUATION -----------------------------------------------------------------------------------------

@case("6.10", "HEADERS followed by two CONTINUATION frames", "accepted: response on stream 1")
def continuation_sequence(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn) + [(b"x-long", b"y" * 100)])
        conn.send(headers(1, block[:10], end_headers=False), continuation(1, block[10:60], end_headers=False),
                  continuation(1, block[60:]))
        expect_ok(conn, 1)


@case("6.10", "CONTINUATION on stream 0 inside a field block", "connection error PROTOCOL_ERROR")
def continuation_stream_zero(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), continuation(0, block[6:]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.10", "CONTINUATION for stream 3 inside the field block of stream 1", "connection error PROTOCOL_ERROR")
def continuation_other_stream(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), continuation(3, block[6:]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.10", "CONTINUATION after a CONTINUATION that had END_HEADERS", "connection error PROTOCOL_ERROR")
def continuation_after_end_headers(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn, path=b"/stall"))
        conn.send(headers(1, block[:6], end_headers=False), continuation(1, block[6:]),
                  continuation(1, raw_block([(b"x-late", b"1")])))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@case("6.10", "field block interrupted by a PING", "connection error PROTOCOL_ERROR")
def continuation_interrupted(t: Target) -> None:
    with t.open() as conn:
        block = raw_block(request_fields(conn))
        conn.send(headers(1, block[:6], end_headers=False), ping(b"interupt"), continuation(1, block[6:]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# -- RFC 7541 HPACK ---------------------------------------------------------------------------------------------

def _hpack_error(t: Target, block_after_fields: bytes, *, before: bytes = b"") -> None:
    with t.open() as conn:
        conn.send(headers(1, before + raw_block(request_fields(conn)) + block_after_fields))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("6.1", "indexed field with index 0", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_index_zero(t: Target) -> None:
    _hpack_error(t, b"\x80")


@case("2.3.3", "indexed field beyond the static and (empty) dynamic table (index 70)",
      "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_index_out_of_range(t: Target) -> None:
    _hpack_error(t, indexed(70))


@case("6.3", "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE",
      "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_size_update_too_large(t: Target) -> None:
    with t.open() as conn:
        limit = conn.server_settings.get(Setting.HEADER_TABLE_SIZE, 4096)
        conn.send(headers(1, table_size_update(limit + 1) + raw_block(request_fields(conn))))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("4.2", "dynamic table size update after a field line", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_size_update_not_first(t: Target) -> None:
    _hpack_error(t, table_size_update(0))


@case("4.2", "dynamic table size update to 0 at the start of a block", "accepted: response on stream 1", rfc="7541")
def hpack_size_update_first(t: Target) -> None:
    with t.open() as conn:
        conn.encoder.header_table_size = 0  # the encoder starts its next block with the update
        block = conn.header_block()
        if block[:1] != b"\x20":
            raise CaseFailed("a block starting with a size update", block[:4].hex())
        conn.send(headers(1, block))
        expect_ok(conn, 1)


@case("5.2", "Huffman string containing the EOS symbol", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_eos(t: Target) -> None:
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 4]) + b"\xff\xff\xff\xff")


@case("5.2", "Huffman string padded with more than 7 bits", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_long_padding(t: Target) -> None:
    # 'a' is 00011; then 11 bits of 1s: padding longer than 7 bits.
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 2]) + b"\x1f\xff")


@case("5.2", "Huffman string padded with zeros (not the EOS prefix)", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_zero_padding(t: Target) -> None:
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 1]) + b"\x18")


@case("5.1", "integer encoding longer than any implementation limit", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_integer_overflow(t: Target) -> None:
    _hpack_error(t, b"\xff" + b"\xff" * 10 + b"\x7f")


def _plain_request(conn: Connection, path: bytes) -> bytes:
    """A request block that leaves the dynamic table alone (see raw_block)."""
    return raw_block(request_fields(conn, path=path))


def _seen_header(conn: Connection, stream_id: int, name: str) -> list[str]:
    response = conn.read_response(stream_id)
    if response.status != 200:
        raise CaseFailed(f"200 on stream {stream_id}", f"status {response.status}")
    return [value for key, value in json.loads(bytes(response.body)) if key == name]


@case("2.3.2", "field added to the dynamic table in one block, referenced by index in the next",
      "the second request carries the field", rfc="7541")
def hpack_dynamic_table_across_blocks(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, _plain_request(conn, b"/headers") + literal_with_indexing(b"x-dyn", b"value-1")))
        if _seen_header(conn, 1, "x-dyn") != ["value-1"]:
            raise CaseFailed("x-dyn: value-1 on the first request", "missing")
        conn.send(headers(3, _plain_request(conn, b"/headers") + indexed(62)))
        seen = _seen_header(conn, 3, "x-dyn")
        if seen != ["value-1"]:
            raise CaseFailed("x-dyn: value-1 from dynamic index 62", f"{seen}")


@case("4.3", "reference to an entry evicted by a table size update", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_evicted_entry(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, _plain_request(conn, b"/headers") + literal_with_indexing(b"x-dyn", b"value-1")))
        _seen_header(conn, 1, "x-dyn")
        conn.send(headers(3, table_size_update(0) + _plain_request(conn, b"/headers") + indexed(62)))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("6.2.3", "literal field never indexed", "accepted: the field reaches the app", rfc="7541")
def hpack_never_indexed(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, _plain_request(conn, b"/headers") + b"\x10" + hpack_string(b"x-secret")
                          + hpack_string(b"s3cret")))
        if _seen_header(conn, 1, "x-secret") != ["s3cret"]:
            raise CaseFailed("x-secret: s3cret", "missing")


@case("4.2", "client SETTINGS_HEADER_TABLE_SIZE = 0", "the server's next field block starts with a size update to 0",
      rfc="7541")
def hpack_server_honours_table_size(t: Target) -> None:
    with t.open({Setting.HEADER_TABLE_SIZE: 0}) as conn:
        conn.decoder.max_allowed_table_size = 0
        conn.request(1)
        expect_ok(conn, 1)
        first = next(f for f in conn.frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
        block = first.block  # type: ignore[attr-defined]
        if not block or block[0] != 0x20:
            raise CaseFailed("a block starting with 0x20 (size update to 0)", block[:4].hex())


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
        seen = _seen_header(conn, 1, "cookie")
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
