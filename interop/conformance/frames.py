"""RFC 9113 §6.1-6.8 and §6.10: each frame type's rules; §7 error codes."""

from __future__ import annotations

from hyperframe.frame import (
    GoAwayFrame,
    PingFrame,
    PushPromiseFrame,
    SettingsFrame,
)

from ..h2raw import (
    Flag,
    FrameType,
    Setting,
    continuation,
    data,
    describe,
    goaway,
    headers,
    ping,
    priority,
    raw_frame,
    rst_stream,
    settings,
)
from ..runner import CaseFailed
from .base import (
    MAX_WINDOW,
    E,
    Target,
    case,
    connection_error,
    exactly_this_much_data,
    expect_ok,
    raw_block,
    request_fields,
)

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



@case("6.5", "SETTINGS with ACK and a payload", "connection error FRAME_SIZE_ERROR")
def settings_ack_with_payload(t: Target) -> None:
    connection_error(t, raw_frame(FrameType.SETTINGS, Flag.ACK, 0, b"\0\x03\0\0\0\x64"), E.FRAME_SIZE_ERROR)


@case("6.5", "SETTINGS on stream 1", "connection error PROTOCOL_ERROR")
def settings_on_stream(t: Target) -> None:
    connection_error(t, raw_frame(FrameType.SETTINGS, 0, 1, b"\0\x03\0\0\0\x64"), E.PROTOCOL_ERROR)


@case("6.5", "SETTINGS of 7 octets (not a multiple of 6)", "connection error FRAME_SIZE_ERROR")
def settings_bad_length(t: Target) -> None:
    connection_error(t, raw_frame(FrameType.SETTINGS, 0, 0, b"\0\x03\0\0\0\x64\0"), E.FRAME_SIZE_ERROR)


@case("6.5.2", "SETTINGS_ENABLE_PUSH = 2", "connection error PROTOCOL_ERROR")
def settings_enable_push_invalid(t: Target) -> None:
    connection_error(t, settings({Setting.ENABLE_PUSH: 2}), E.PROTOCOL_ERROR)


@case("6.5.2", "SETTINGS_INITIAL_WINDOW_SIZE = 2^31", "connection error FLOW_CONTROL_ERROR")
def settings_window_too_large(t: Target) -> None:
    connection_error(t, settings({Setting.INITIAL_WINDOW_SIZE: 2**31}), E.FLOW_CONTROL_ERROR)


@case("6.5.2", "SETTINGS_MAX_FRAME_SIZE = 16383", "connection error PROTOCOL_ERROR")
def settings_frame_size_too_small(t: Target) -> None:
    connection_error(t, settings({Setting.MAX_FRAME_SIZE: 16383}), E.PROTOCOL_ERROR)


@case("6.5.2", "SETTINGS_MAX_FRAME_SIZE = 2^24", "connection error PROTOCOL_ERROR")
def settings_frame_size_too_large(t: Target) -> None:
    connection_error(t, settings({Setting.MAX_FRAME_SIZE: 2**24}), E.PROTOCOL_ERROR)


@case("2.1", "SETTINGS_NO_RFC7540_PRIORITIES = 2", "connection error PROTOCOL_ERROR", rfc="9218")
def settings_no_priorities_invalid(t: Target) -> None:
    connection_error(t, settings({Setting.NO_RFC7540_PRIORITIES: 2}), E.PROTOCOL_ERROR)


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
    connection_error(t, ping(b"stream01", stream_id=1), E.PROTOCOL_ERROR)


@case("6.7", "PING of 6 octets", "connection error FRAME_SIZE_ERROR")
def ping_bad_length(t: Target) -> None:
    connection_error(t, raw_frame(FrameType.PING, 0, 0, b"sixsix"), E.FRAME_SIZE_ERROR)


# -- 6.8 GOAWAY -----------------------------------------------------------------------------------------------

@case("6.8", "GOAWAY on stream 1", "connection error PROTOCOL_ERROR")
def goaway_on_stream(t: Target) -> None:
    connection_error(t, goaway(0, E.NO_ERROR, stream_id=1), E.PROTOCOL_ERROR)


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
