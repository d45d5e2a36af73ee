"""RFC 9113 §3.4 connection preface, §4 frame format, frame size and field block compression."""

from __future__ import annotations

from hyperframe.frame import (
    PingFrame,
    SettingsFrame,
)

from ..h2raw import (
    PREFACE,
    FrameType,
    Setting,
    continuation,
    data,
    describe,
    headers,
    hpack_int,
    ping,
    priority,
    raw_frame,
    settings,
)
from ..runner import CaseFailed
from .base import (
    E,
    Target,
    case,
    expect_ok,
    raw_block,
    request_fields,
)

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
