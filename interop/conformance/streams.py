"""RFC 9113 §5.1 stream states, stream identifiers and concurrency."""

from __future__ import annotations

from ..h2raw import (
    Setting,
    continuation,
    data,
    headers,
    priority,
    rst_stream,
    window_update,
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


@case("5.1.2", "one stream over the limit while every response waits on a zero window (h2spec 5.1.2)",
      "stream error REFUSED_STREAM or PROTOCOL_ERROR on that stream only")
def concurrency_limit_zero_window(t: Target) -> None:
    # The handlers have all returned; their streams stay open (half-closed) until their DATA can go.
    with t.open({Setting.INITIAL_WINDOW_SIZE: 0}) as conn:
        limit = conn.server_settings.get(Setting.MAX_CONCURRENT_STREAMS)
        if limit is None or limit > 1000:
            raise CaseFailed("a SETTINGS_MAX_CONCURRENT_STREAMS of at most 1000 to test", f"{limit}")
        conn.send(*[headers(1 + 2 * n, conn.header_block(path=b"/hello")) for n in range(limit)])
        conn.read_until(lambda f: all(conn.responses.get(1 + 2 * n) is not None
                                      and conn.responses[1 + 2 * n].status == 200 for n in range(limit)),
                        f"the response HEADERS of all {limit} streams")
        extra = 1 + 2 * limit
        conn.request(extra, b"/hello")
        conn.expect_stream_error(extra, E.REFUSED_STREAM, E.PROTOCOL_ERROR)


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
