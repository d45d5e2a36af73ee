"""A raw HTTP/2 client: frames built by hand (or with hyperframe) and HPACK from the hpack package.

Unlike h2's state machine it sends whatever it is told, invalid frames included, which is the
point: the conformance cases need to send what a correct client never would. Frames from the
server are parsed with hyperframe, and their header blocks decoded with an hpack.Decoder that
follows the connection, so that the server's HPACK state and ours stay in step.

The expectations (`expect_connection_error`, `expect_stream_error`, `expect_alive`) never wait
for a timeout in the passing case: after the stimulus they send a PING and, once it is
answered, a second one. The server handles each read in order, so once the second PING is
answered every frame it wrote in reaction to the stimulus has arrived.
"""

from __future__ import annotations

import enum
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .runner import CaseFailed

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class FrameType(enum.IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9
    PRIORITY_UPDATE = 0x10  # RFC 9218


class Flag(enum.IntFlag):
    END_STREAM = 0x1  # DATA, HEADERS
    ACK = 0x1  # SETTINGS, PING
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8  # RFC 8441
    NO_RFC7540_PRIORITIES = 0x9  # RFC 9218


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


# -- frames out -----------------------------------------------------------------------------------

def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"", *,
              length: int | None = None) -> bytes:
    """Any frame, valid or not: `length` may lie about the payload, `stream_id` may set the R bit."""
    size = len(payload) if length is None else length
    return (size.to_bytes(3, "big") + bytes([frame_type, flags]) + (stream_id & 0xFFFFFFFF).to_bytes(4, "big")
            + payload)


def settings(values: dict[int, int] | Sequence[tuple[int, int]] = (), *, ack: bool = False) -> bytes:
    pairs = values.items() if isinstance(values, dict) else values
    payload = b"".join(int(key).to_bytes(2, "big") + int(value).to_bytes(4, "big") for key, value in pairs)
    return raw_frame(FrameType.SETTINGS, Flag.ACK if ack else 0, 0, payload)


def ping(data: bytes = b"\0" * 8, *, ack: bool = False, stream_id: int = 0) -> bytes:
    return raw_frame(FrameType.PING, Flag.ACK if ack else 0, stream_id, data)


def window_update(stream_id: int, increment: int) -> bytes:
    return raw_frame(FrameType.WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id: int, code: int = ErrorCode.CANCEL) -> bytes:
    return raw_frame(FrameType.RST_STREAM, 0, stream_id, int(code).to_bytes(4, "big"))


def goaway(last_stream_id: int = 0, code: int = ErrorCode.NO_ERROR, stream_id: int = 0) -> bytes:
    return raw_frame(FrameType.GOAWAY, 0, stream_id, last_stream_id.to_bytes(4, "big") + int(code).to_bytes(4, "big"))


def priority(stream_id: int, depends_on: int = 0, weight: int = 16, exclusive: bool = False) -> bytes:
    dependency = depends_on | (0x80000000 if exclusive else 0)
    return raw_frame(FrameType.PRIORITY, 0, stream_id, dependency.to_bytes(4, "big") + bytes([weight - 1]))


def data(stream_id: int, payload: bytes, *, end_stream: bool = False, pad: int | None = None) -> bytes:
    flags = Flag.END_STREAM if end_stream else 0
    if pad is not None:
        flags |= Flag.PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return raw_frame(FrameType.DATA, flags, stream_id, payload)


def headers(stream_id: int, block: bytes, *, end_stream: bool = True, end_headers: bool = True,
            pad: int | None = None, depends_on: int | None = None, weight: int = 16) -> bytes:
    flags = (Flag.END_STREAM if end_stream else 0) | (Flag.END_HEADERS if end_headers else 0)
    payload = block
    if depends_on is not None:
        flags |= Flag.PRIORITY
        payload = depends_on.to_bytes(4, "big") + bytes([weight - 1]) + payload
    if pad is not None:
        flags |= Flag.PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return raw_frame(FrameType.HEADERS, flags, stream_id, payload)


def continuation(stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
    return raw_frame(FrameType.CONTINUATION, Flag.END_HEADERS if end_headers else 0, stream_id, block)


# -- HPACK by hand (for blocks the hpack encoder would never produce) --------------------------------

def hpack_int(value: int, prefix_bits: int, first_byte_flags: int = 0) -> bytes:
    """RFC 7541 §5.1 integer representation."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(raw: bytes) -> bytes:
    """A string literal without Huffman coding (RFC 7541 §5.2)."""
    return hpack_int(len(raw), 7) + raw


def literal_without_indexing(name: bytes, value: bytes) -> bytes:
    """RFC 7541 §6.2.2, new name: nothing is added to the dynamic table, so any bytes go."""
    return b"\x00" + hpack_string(name) + hpack_string(value)


def literal_with_indexing(name: bytes, value: bytes) -> bytes:
    """RFC 7541 §6.2.1, new name: the field is added to the dynamic table (index 62)."""
    return b"\x40" + hpack_string(name) + hpack_string(value)


def indexed(index: int) -> bytes:
    """RFC 7541 §6.1."""
    return hpack_int(index, 7, 0x80)


def table_size_update(size: int) -> bytes:
    """RFC 7541 §6.3."""
    return hpack_int(size, 5, 0x20)


# -- frames in ----------------------------------------------------------------------------------------

def describe(frame: Frame | None) -> str:
    """A frame as a short human-readable string for failure messages."""
    if frame is None:
        return "connection closed"
    name = type(frame).__name__.replace("Frame", "").upper()
    if isinstance(frame, GoAwayFrame):
        return f"GOAWAY({code_name(frame.error_code)}, last stream {frame.last_stream_id})"
    if isinstance(frame, RstStreamFrame):
        return f"RST_STREAM(stream {frame.stream_id}, {code_name(frame.error_code)})"
    if isinstance(frame, SettingsFrame):
        return "SETTINGS(ACK)" if "ACK" in frame.flags else f"SETTINGS({dict(frame.settings)})"
    if isinstance(frame, PingFrame):
        return f"PING{'(ACK)' if 'ACK' in frame.flags else ''}"
    if isinstance(frame, WindowUpdateFrame):
        return f"WINDOW_UPDATE(stream {frame.stream_id}, +{frame.window_increment})"
    if isinstance(frame, HeadersFrame):
        status = dict(getattr(frame, "decoded", []) or []).get(b":status")
        end = ", END_STREAM" if "END_STREAM" in frame.flags else ""
        return f"HEADERS(stream {frame.stream_id}{', :status ' + status.decode() if status else ''}{end})"
    if isinstance(frame, DataFrame):
        end = ", END_STREAM" if "END_STREAM" in frame.flags else ""
        return f"DATA(stream {frame.stream_id}, {len(frame.data)} bytes{end})"
    if isinstance(frame, PushPromiseFrame):
        return f"PUSH_PROMISE(stream {frame.stream_id}, promised {frame.promised_stream_id})"
    if isinstance(frame, ExtensionFrame):
        return f"frame type 0x{frame.type:x} (stream {frame.stream_id})"
    return f"{name}(stream {frame.stream_id})"


@dataclass
class Response:
    stream_id: int
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    data_frames: list[int] = field(default_factory=list)  # the size of each DATA frame
    ended: bool = False
    reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class ReadTimeout(Exception):
    pass


class Connection:
    """One HTTP/2 connection to the server under test, over TLS (ALPN h2) or cleartext (h2c)."""

    def __init__(self, port: int, ssl_context: ssl.SSLContext | None, *, host: str = "127.0.0.1",
                 timeout: float = 3.0) -> None:
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                sock.close()
                raise CaseFailed("ALPN h2", f"ALPN {sock.selected_alpn_protocol()!r}")
        self.sock = sock
        self.tls = ssl_context is not None
        self.authority = f"{host}:{port}".encode()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30  # we judge the server, not its header sizes
        self.server_settings: dict[int, int] = {}
        self.frames: list[Frame] = []  # everything received, in order
        self.eof = False
        self._buffer = bytearray()
        self._block: tuple[Frame, bytearray] | None = None  # server header block being assembled
        self._ping_counter = 0
        self.responses: dict[int, Response] = {}

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Connection:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------------------
    def send(self, *chunks: bytes) -> None:
        """Write bytes; a connection the server already closed is not an error here (reads tell)."""
        self.sock.settimeout(self.timeout)  # reads leave the time to their own deadline here
        try:
            self.sock.sendall(b"".join(chunks))
        except TimeoutError:  # the server stopped reading: say so, rather than fail later on a confusing read
            raise CaseFailed("the server to read what we sent", f"not all sent within {self.timeout:.0f} s") from None
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass

    def handshake(self, client_settings: dict[int, int] | None = None) -> None:
        """Preface and SETTINGS; returns once the server's SETTINGS arrived and ours were ACKed."""
        self.send(PREFACE, settings(client_settings or {}))
        got_settings = got_ack = False
        deadline = time.monotonic() + self.timeout
        while not (got_settings and got_ack):
            frame = self.read_frame(deadline)
            if frame is None:
                raise CaseFailed("the server's SETTINGS and the ACK of ours", "connection closed")
            if isinstance(frame, SettingsFrame):
                if "ACK" in frame.flags:
                    got_ack = True
                else:
                    got_settings = True  # read_frame has stored and acknowledged them

    def header_block(self, method: bytes = b"GET", path: bytes = b"/",
                     extra: Iterable[tuple[bytes, bytes]] = (), *, scheme: bytes | None = None,
                     authority: bytes | None = None) -> bytes:
        fields = [(b":method", method), (b":scheme", scheme or (b"https" if self.tls else b"http")),
                  (b":authority", authority or self.authority), (b":path", path)]
        return self.encoder.encode(fields + list(extra))

    def request(self, stream_id: int, path: bytes = b"/", *, method: bytes = b"GET",
                extra: Iterable[tuple[bytes, bytes]] = (), end_stream: bool = True,
                body: bytes | None = None) -> None:
        """HEADERS (and DATA when `body` is given) opening `stream_id`."""
        block = self.header_block(method, path, extra)
        frames = [headers(stream_id, block, end_stream=end_stream and body is None)]
        if body is not None:
            frames.append(data(stream_id, body, end_stream=end_stream))
        self.send(*frames)

    def next_ping_data(self) -> bytes:
        self._ping_counter += 1
        return f"probe{self._ping_counter:03d}".encode()

    # -- receiving ---------------------------------------------------------------------------------------
    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at end of stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise ReadTimeout() from None
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._buffer += chunk
        return True

    def read_frame(self, deadline: float | None = None) -> Frame | None:
        """The next frame (header blocks decoded), None at end of stream; ReadTimeout at `deadline`."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    break
            if self.eof or not self._fill(deadline):
                return None
        header = bytes(self._buffer[:9])
        payload = bytes(self._buffer[9:9 + length])
        del self._buffer[:9 + length]
        frame, _ = Frame.parse_frame_header(memoryview(header))
        frame.parse_body(memoryview(payload))
        frame.raw_payload = payload  # type: ignore[attr-defined]
        self.frames.append(frame)
        self._after_frame(frame)
        return frame

    def _after_frame(self, frame: Frame) -> None:
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            self._block = (frame, bytearray(frame.data))
            if "END_HEADERS" in frame.flags:
                self._decode_block()
        elif isinstance(frame, ContinuationFrame) and self._block is not None:
            self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                self._decode_block()
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.send(ping(frame.opaque_data, ack=True))
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.server_settings.update(frame.settings)
            self.send(settings(ack=True))
        self._track_response(frame)

    def _decode_block(self) -> None:
        assert self._block is not None
        first, block = self._block
        self._block = None
        first.decoded = self.decoder.decode(bytes(block), raw=True)  # type: ignore[attr-defined]
        first.block = bytes(block)  # type: ignore[attr-defined]
        if isinstance(first, HeadersFrame):
            self._on_headers(first)

    def _on_headers(self, frame: HeadersFrame) -> None:
        response = self.responses.setdefault(frame.stream_id, Response(frame.stream_id))
        fields = list(frame.decoded)  # type: ignore[attr-defined]
        status = dict(fields).get(b":status")
        if response.status is None and status is not None:
            code = int(status)
            if code < 200:
                response.informational.append(code)
            else:
                response.status = code
                response.headers = fields
        else:
            response.trailers = fields
        if "END_STREAM" in frame.flags:
            response.ended = True

    def _track_response(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            response = self.responses.setdefault(frame.stream_id, Response(frame.stream_id))
            response.body += frame.data
            response.data_frames.append(len(frame.data))
            if "END_STREAM" in frame.flags:
                response.ended = True
        elif isinstance(frame, RstStreamFrame):
            self.responses.setdefault(frame.stream_id, Response(frame.stream_id)).reset = frame.error_code
        elif isinstance(frame, ContinuationFrame) and "END_STREAM" in getattr(frame, "flags", ()):
            pass

    # -- expectations -------------------------------------------------------------------------------------
    def _probe_until(self, done: Callable[[Frame | None], bool], expected: str, *, probes: int = 2) -> Frame | None:
        """Read frames until `done(frame)` is true (returns that frame, None meaning end of stream).

        PINGs probe the connection: when the last one is answered and `done` has not matched,
        the server has written all it will write in reaction, which fails the expectation.
        """
        seen: list[str] = []
        outstanding = self.next_ping_data()
        self.send(ping(outstanding))
        left = probes - 1
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                frame = self.read_frame(deadline)
            except ReadTimeout:
                raise CaseFailed(expected, f"no answer within {self.timeout:.0f} s{_seen(seen)}") from None
            if done(frame):
                return frame
            if frame is None:
                raise CaseFailed(expected, "connection closed" + _seen(seen))
            if isinstance(frame, PingFrame) and "ACK" in frame.flags and frame.opaque_data == outstanding:
                if left == 0:
                    raise CaseFailed(expected, "connection still open (PING answered)" + _seen(seen))
                left -= 1
                outstanding = self.next_ping_data()
                self.send(ping(outstanding))
                continue
            if not isinstance(frame, (SettingsFrame, WindowUpdateFrame)):
                seen.append(describe(frame))

    def expect_connection_error(self, *codes: int, goaway_optional: bool = False) -> None:
        """GOAWAY with one of `codes` (RFC 9113 §5.4.1), then the server closes the connection.

        With `goaway_optional` (an invalid preface, where RFC 9113 §3.4 lets the GOAWAY be
        omitted), closing the connection without one passes too.
        """
        expected = "connection error " + " or ".join(code_name(c) for c in codes) + " (GOAWAY)"
        if goaway_optional:
            expected += " or the connection closed"
        frame = self._probe_until(lambda f: isinstance(f, GoAwayFrame) or (f is None and goaway_optional), expected)
        if frame is None:
            return
        assert isinstance(frame, GoAwayFrame)
        if frame.error_code not in codes:
            raise CaseFailed(expected, describe(frame) + _seen(self._before(frame)))
        self.expect_closed("the connection closed after GOAWAY (RFC 9113 §5.4.1)")

    def expect_closed(self, expected: str = "the connection closed") -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self.read_frame(deadline) is None:
                    return
            except ReadTimeout:
                raise CaseFailed(expected, f"still open after {self.timeout:.0f} s") from None

    def expect_closed_without_http1(self) -> None:
        """After bytes that are not an HTTP/2 preface: the connection ends (after a GOAWAY
        PROTOCOL_ERROR, or none: RFC 9113 §3.4 lets it be omitted), with no HTTP/1.1 response."""
        expected = "connection error PROTOCOL_ERROR, or a plain close, and no HTTP/1.1 response"
        deadline = time.monotonic() + self.timeout
        try:
            while self._fill(deadline):
                pass
        except ReadTimeout:
            raise CaseFailed(expected, f"still open after {self.timeout:.0f} s "
                             f"(received {bytes(self._buffer[:40])!r})") from None
        if self._buffer.startswith(b"HTTP/"):
            raise CaseFailed(expected, repr(bytes(self._buffer.split(b"\r\n", 1)[0])))
        while True:
            frame = self.read_frame(deadline)
            if frame is None:
                return
            if isinstance(frame, GoAwayFrame) and frame.error_code != ErrorCode.PROTOCOL_ERROR:
                raise CaseFailed(expected, describe(frame))

    def expect_stream_error(self, stream_id: int, *codes: int, connection_error_ok: bool = False) -> None:
        """RST_STREAM(`stream_id`, one of `codes`); with `connection_error_ok`, a GOAWAY with the
        same code passes too (RFC 9113 §5.4: an endpoint may treat a stream error as a connection error)."""
        names = " or ".join(code_name(c) for c in codes)
        expected = f"stream error {names} (RST_STREAM on stream {stream_id})"
        if connection_error_ok:
            expected += f" or connection error {names}"

        def done(frame: Frame | None) -> bool:
            return (isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id) or isinstance(frame, GoAwayFrame)
        frame = self._probe_until(done, expected)
        if isinstance(frame, RstStreamFrame) and frame.error_code in codes:
            return
        if isinstance(frame, GoAwayFrame) and connection_error_ok and frame.error_code in codes:
            return
        raise CaseFailed(expected, describe(frame) + _seen(self._before(frame)))

    def expect_alive(self, *, streams: Sequence[int] = (), what: str = "") -> None:
        """Two PING round trips with no GOAWAY, no close, and no RST_STREAM on `streams`."""
        expected = what or "the connection to stay open (no GOAWAY)"

        def done(frame: Frame | None) -> bool:
            if frame is None or isinstance(frame, GoAwayFrame):
                raise CaseFailed(expected, describe(frame) + _seen(self._before(frame)))
            if isinstance(frame, RstStreamFrame) and frame.stream_id in streams:
                raise CaseFailed(expected, describe(frame))
            return False
        try:
            self._probe_until(done, expected)
        except CaseFailed as exc:
            if exc.actual.startswith("connection still open"):
                return  # both PINGs answered: alive, which is what we wanted
            raise

    def read_response(self, stream_id: int, *, auto_window: bool = True) -> Response:
        """Read until the response on `stream_id` ends; fails on reset, GOAWAY or close."""
        response = self.responses.setdefault(stream_id, Response(stream_id))
        deadline = time.monotonic() + self.timeout
        while not response.ended:
            try:
                frame = self.read_frame(deadline)
            except ReadTimeout:
                raise CaseFailed(f"a complete response on stream {stream_id}",
                                 f"no end of stream within {self.timeout:.0f} s (status {response.status}, "
                                 f"{len(response.body)} body bytes)") from None
            if frame is None or isinstance(frame, GoAwayFrame):
                raise CaseFailed(f"a complete response on stream {stream_id}", describe(frame))
            if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                raise CaseFailed(f"a complete response on stream {stream_id}", describe(frame))
            if auto_window and isinstance(frame, DataFrame) and frame.flow_controlled_length:
                # Re-open both windows at once, as a client reading eagerly would.
                size = frame.flow_controlled_length
                self.send(window_update(0, size), window_update(frame.stream_id, size)
                          if "END_STREAM" not in frame.flags else b"")
        return response

    def read_until(self, predicate: Callable[[Frame | None], bool], expected: str) -> Any:
        """Read until a frame satisfies `predicate` and return it (typed Any: callers know which
        frame type their predicate picks); GOAWAY or close fail unless that is what we want."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                frame = self.read_frame(deadline)
            except ReadTimeout:
                raise CaseFailed(expected, f"nothing matching within {self.timeout:.0f} s") from None
            if predicate(frame):
                return frame
            if frame is None or isinstance(frame, GoAwayFrame):
                raise CaseFailed(expected, describe(frame))

    def _before(self, frame: Frame | None) -> list[str]:
        """Describes the notable frames received just before `frame`, for failure messages."""
        frames = self.frames[-6:-1] if frame is not None else self.frames[-5:]
        return [describe(f) for f in frames if not isinstance(f, (SettingsFrame, WindowUpdateFrame, PingFrame))]


def _seen(seen: list[str]) -> str:
    return f" (received before: {', '.join(seen)})" if seen else ""
