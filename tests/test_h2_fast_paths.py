"""h2lib's fast paths (a request's single-frame HEADERS and its body's DATA in, a response's
HEADERS and END_STREAM DATA out, hpackdec's decoder) against h2's and hpack's own code: fed the same bytes and asked for
the same responses, a ServerH2Connection and one that uses h2's code instead (`Reference`) write
the same bytes, report the same events and errors and leave every stream in the same state, also
where the fast paths step aside (CONTINUATION, padding, priority, trailers, informational
responses, END_STREAM on HEADERS, errors)."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import hpack
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame

from plexicorn import Config
from plexicorn.http2.flood import FloodGuard
from plexicorn.http2.h2lib import ServerH2Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()


def config() -> h2.config.H2Configuration:
    return h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False,
                                     validate_outbound_headers=False, normalize_outbound_headers=False)


class Reference(ServerH2Connection):
    """ServerH2Connection as it was without its fast paths: h2's own code for each of them."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.incoming_buffer.fast = False
        decoder = hpack.Decoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder

    def _receive_request(self, frame: Any) -> Any:
        frames, events = h2.connection.H2Connection._receive_headers_frame(self, frame)
        for event in events:
            if getattr(event, "headers", None) is not None:
                self.guard.decoded_fields(len(event.headers))
        return frames, events

    def _receive_body(self, frame: Any) -> Any:
        return None

    def send_headers(self, *args: Any, **kwargs: Any) -> None:
        h2.connection.H2Connection.send_headers(self, *args, **kwargs)

    def send_data(self, stream_id: int, data: Any, end_stream: bool = False, pad_length: Any = None) -> None:
        if end_stream:
            h2.connection.H2Connection.send_data(self, stream_id, data, end_stream, pad_length)
        else:
            super().send_data(stream_id, data, end_stream, pad_length)

    def end_stream(self, stream_id: int) -> None:
        h2.connection.H2Connection.end_stream(self, stream_id)


def pair() -> tuple[ServerH2Connection, ServerH2Connection]:
    ours = ServerH2Connection(config(), FloodGuard(Config()))
    theirs = Reference(config(), FloodGuard(Config()))
    for conn in (ours, theirs):
        conn.initiate_connection()
        conn.data_to_send()
    return ours, theirs


def describe(event: Any) -> Any:
    fields = {key: value for key, value in vars(event).items() if key not in ("stream_ended", "priority_updated")}
    if getattr(event, "stream_ended", None) is not None:
        fields["stream_ended"] = vars(event.stream_ended)
    if "headers" in fields:
        fields["headers"] = [(type(field), tuple(field)) for field in fields["headers"]]
    return type(event).__name__, fields


def state(conn: h2.connection.H2Connection) -> Any:
    return (conn.state_machine.state, conn.highest_inbound_stream_id, conn.outbound_flow_control_window,
            conn.inbound_flow_control_window, {
        stream_id: (stream.state_machine.state, stream.state_machine.client, stream.state_machine.headers_sent,
                    stream.state_machine.headers_received, stream.state_machine.trailers_sent,
                    stream.state_machine.stream_closed_by, stream.request_method, stream.outbound_flow_control_window,
                    stream._expected_content_length, stream._actual_content_length, stream.inbound_flow_control_window)
        for stream_id, stream in conn.streams.items()})


def same(action: str, *args: Any, **kwargs: Any) -> Any:
    """Run one H2Connection method on both; the same result, or the same error."""
    results = []
    for conn in CONNS:
        try:
            value = getattr(conn, action)(*args, **kwargs)
            results.append(("ok", [describe(event) for event in value] if action == "receive_data" else value))
        except h2.exceptions.ProtocolError as exc:
            results.append(("error", type(exc), exc.error_code))
    assert results[0] == results[1], action
    assert CONNS[0].data_to_send() == CONNS[1].data_to_send(), action
    assert state(CONNS[0]) == state(CONNS[1]), action
    return results[0]


CONNS: list[Any] = []


@pytest.fixture(autouse=True)
def connections() -> Any:
    CONNS[:] = pair()
    same("receive_data", PREFACE)
    yield


def headers_frame(stream_id: int, block: bytes, flags: tuple[str, ...] = ("END_HEADERS", "END_STREAM"), **extra: Any) -> bytes:
    frame = HeadersFrame(stream_id, block, **extra)
    for flag in flags:
        frame.flags.add(flag)
    return frame.serialize()


REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x"),
           (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-length", b"0")]


def request_block(encoder: hpack.Encoder, fields: list = REQUEST) -> bytes:
    return encoder.encode(fields)


def test_requests_and_responses_match_h2() -> None:
    encoder = hpack.Encoder()
    for stream_id in (1, 3, 5):
        same("receive_data", headers_frame(stream_id, request_block(encoder)))
    same("send_headers", 1, [(b":status", b"200"), (b"content-length", b"2")])
    same("send_data", 1, b"ok", end_stream=True)
    same("send_headers", 3, [(b":status", b"204")], end_stream=True)
    same("send_headers", 5, [(b":status", b"103"), (b"link", b"</a>")])  # informational: h2's
    same("send_headers", 5, [(b":status", b"200")])
    same("send_data", 5, b"part")
    same("send_headers", 5, [(b"x-trailer", b"1")], end_stream=True)  # trailers: h2's
    same("send_headers", 5, [(b":status", b"200")])  # closed: h2's error
    same("end_stream", 1)  # closed: h2's error


def test_open_streams_and_empty_end_stream_match_h2() -> None:
    encoder = hpack.Encoder()
    same("receive_data", headers_frame(1, request_block(encoder, REQUEST[:4] + [(b"content-length", b"x1")]),
                                       ("END_HEADERS",)))
    same("send_headers", 1, [(b":status", b"200")])
    same("send_data", 1, b"early")
    same("end_stream", 1)  # OPEN -> HALF_CLOSED_LOCAL
    same("receive_data", DataFrame(1, b"", flags=["END_STREAM"]).serialize())


def test_header_blocks_the_fast_path_leaves_to_h2_match_h2() -> None:
    encoder = hpack.Encoder()
    block = request_block(encoder)
    same("receive_data", headers_frame(1, block[:3], ("END_STREAM",))
         + ContinuationFrame(1, block[3:], flags=["END_HEADERS"]).serialize())
    same("receive_data", headers_frame(3, request_block(encoder), ("END_HEADERS", "END_STREAM", "PADDED"),
                                       pad_length=4))
    same("receive_data", headers_frame(5, request_block(encoder), ("END_HEADERS", "END_STREAM", "PRIORITY"),
                                       depends_on=0, stream_weight=16))
    same("receive_data", headers_frame(7, request_block(encoder, [(b":status", b"100")])))  # informational in a request


@pytest.mark.parametrize("frame", [
    headers_frame(2, b"\x82"),  # an even stream id
    b"\x00\x00\x01\x01\x05\x00\x00\x00\x00\x82",  # stream 0
    headers_frame(1, b"\xbf"),  # an index past the tables
    headers_frame(1, b"\x3f\xe1\xff\xff\x0f"),  # a table size update over the limit
    b"\x00\x00\x0a\x00\x00\x00\x00\x00\x00abc",  # DATA on stream 0, refused before its payload is in
])
def test_refused_header_blocks_match_h2(frame: bytes) -> None:
    outcome = same("receive_data", frame)
    assert outcome[0] == "error"


def test_a_stream_id_going_backwards_matches_h2() -> None:
    encoder = hpack.Encoder()
    same("receive_data", headers_frame(5, request_block(encoder)))
    same("receive_data", headers_frame(3, request_block(encoder)))


def body(stream_id: int, data: bytes, *flags: str, **extra: Any) -> bytes:
    return DataFrame(stream_id, data, flags=list(flags), **extra).serialize()


def test_request_bodies_match_h2() -> None:
    encoder = hpack.Encoder()
    head = REQUEST[:4]
    same("receive_data", headers_frame(1, request_block(encoder, head), ("END_HEADERS",)))
    same("receive_data", headers_frame(3, request_block(encoder, head + [(b"content-length", b"5")]),
                                       ("END_HEADERS",)))
    same("receive_data", headers_frame(5, request_block(encoder, head), ("END_HEADERS",)))
    # Several frames in one read, one of them empty, the last ending its stream.
    same("receive_data", body(1, b"abc") + body(3, b"ab") + body(1, b"") + body(3, b"cde", "END_STREAM"))
    same("acknowledge_received_data", 3, 1)
    same("receive_data", body(1, b"x" * 16384, "END_STREAM"))  # a whole frame's worth
    # The response sent first (HALF_CLOSED_LOCAL), then the body ends: the stream closes.
    same("send_headers", 5, [(b":status", b"200")], end_stream=True)
    same("receive_data", body(5, b"late") + body(5, b"", "END_STREAM"))
    same("receive_data", body(1, b"after the end"))  # closed by END_STREAM: h2's error


def test_bodies_the_fast_path_leaves_to_h2_match_h2() -> None:
    encoder = hpack.Encoder()
    same("receive_data", headers_frame(1, request_block(encoder, REQUEST[:4]), ("END_HEADERS",)))
    same("receive_data", body(1, b"padded", "PADDED", pad_length=3))
    same("reset_stream", 1)
    same("receive_data", body(1, b"in flight after our reset"))
    same("receive_data", body(1, b"ended after our reset", "END_STREAM"))


@pytest.mark.parametrize("frames", [
    [body(1, b"too long", "END_STREAM")],  # more than its content-length: a stream error
    [body(1, b"x", "END_STREAM")],  # less than its content-length
    [body(9, b"unopened")],  # a stream never opened
    [b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"],  # stream 0
    [body(1, b"x" * 16384)] * 4 + [body(1, b"x")],  # over the stream's window
    [headers_frame(3, b"\x82", ("END_STREAM",)), body(1, b"x")],  # DATA inside a header block
])
def test_refused_bodies_match_h2(frames: list[bytes]) -> None:
    encoder = hpack.Encoder()
    same("receive_data", headers_frame(1, request_block(encoder, REQUEST[:4] + [(b"content-length", b"3")]),
                                       ("END_HEADERS",)))
    for frame in frames:
        same("receive_data", frame)
