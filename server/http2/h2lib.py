"""Every adaptation of the h2 library: `ServerH2Connection`, h2's `H2Connection` with the
server-side behaviour RFC 9113 asks for where h2 differs.

Each override names what h2 does and why Plexicorn needs otherwise. They touch h2 internals,
which is why h2 is pinned to one major version, and why `require_h2_internals` checks at
import time that the installed h2 still has each of them: a missing one is one clear line,
not an AttributeError in the middle of a connection.

A module longer than 400 lines: h2's internals may be touched only here (tests/test_layout.py), so
the fast paths that stand in for h2's per-request work (a request's HEADERS and body DATA in, a response's
HEADERS and DATA out) live beside the overrides whose state they must keep in step with.
"""

from __future__ import annotations

import logging
import struct
from types import ModuleType
from typing import Any

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
import h2.utilities
import hpack.hpack
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from ..observe.metrics import NULL_METRICS, Metrics
from .flood import FloodGuard
from .hpackdec import RequestDecoder
from .hpackenc import ResponseEncoder

# The h2 internals this module relies on: (submodule, class, attribute). Attributes set in
# __init__ are checked on a fresh instance.
_H2_INTERNALS = (
    ("connection", "H2Connection", "_receive_frame"),
    ("connection", "H2Connection", "_frame_dispatch_table"),
    ("connection", "H2Connection", "_stream_is_closed_by_reset"),
    ("connection", "H2Connection", "_stream_is_closed_by_end"),
    ("connection", "_decode_headers", "__call__"),
    ("utilities", "is_informational_response", "__call__"),
    ("utilities", "normalize_inbound_headers", "__call__"),
    ("stream", "_decode_headers", "__call__"),
    ("connection", "H2Connection", "_prepare_for_sending"),
    ("connection", "H2Connection", "_begin_new_stream"),
    ("connection", "H2Connection", "_receive_headers_frame"),
    ("connection", "H2Connection", "_receive_data_frame"),
    ("connection", "H2Connection", "_handle_data_on_closed_stream"),
    ("connection", "H2Connection", "_receive_goaway_frame"),
    ("connection", "H2Connection", "_stream_closed_by"),
    ("connection", "H2Connection", "open_inbound_streams"),
    ("connection", "H2Connection", "decoder"),
    ("connection", "H2Connection", "max_inbound_frame_size"),
    ("connection", "H2Connection", "local_settings"),
    ("connection", "H2Connection", "_data_to_send"),
    ("connection", "H2Connection", "state_machine"),
    ("connection", "ConnectionState", "SERVER_OPEN"),
    ("stream", "StreamState", "HALF_CLOSED_REMOTE"),
    ("frame_buffer", "FrameBuffer", "_validate_frame_length"),
    ("frame_buffer", "FrameBuffer", "_data"),
    ("frame_buffer", "FrameBuffer", "_headers_buffer"),
    ("stream", "H2Stream", "_initialize_content_length"),
    ("stream", "StreamClosedBy", "SEND_RST_STREAM"),
    ("stream", "StreamClosedBy", "SEND_END_STREAM"),
    ("stream", "StreamState", "HALF_CLOSED_LOCAL"),
    ("stream", "StreamClosedBy", "RECV_END_STREAM"),
    ("stream", "H2Stream", "_track_content_length"),
    ("stream", "H2Stream", "_inbound_window_manager"),
    ("stream", "H2StreamStateMachine", "headers_received"),
    ("connection", "H2Connection", "_inbound_flow_control_window_manager"),
)


# How to build a throwaway instance of each class whose checked attributes are set in __init__.
_PROBE_INSTANCES: dict[str, Any] = {
    "FrameBuffer": lambda cls: cls(server=True),
    "H2Connection": lambda cls: cls(),
    "H2StreamStateMachine": lambda cls: cls(1),
    "H2Stream": lambda cls: cls(1, config=h2.config.H2Configuration(), inbound_window_size=65535,
                                outbound_window_size=65535),
}


class H2VersionError(ImportError):
    """The installed h2 lacks an internal Plexicorn adapts."""


def require_h2_internals(package: ModuleType | Any = h2) -> None:
    """Raise H2VersionError, one line naming the installed version and what it lacks, unless
    `package` (h2, or a stand-in with the same submodules) has every internal used here."""
    missing = []
    instances: dict[str, Any] = {}
    for module_name, class_name, attribute in _H2_INTERNALS:
        cls = getattr(getattr(package, module_name, None), class_name, None)
        if cls is None:
            missing.append(f"{module_name}.{class_name}")
            continue
        if hasattr(cls, attribute):
            continue
        if class_name not in instances:
            build = _PROBE_INSTANCES.get(class_name)
            try:
                instances[class_name] = build(cls) if build is not None else None
            except Exception:  # noqa: BLE001 - a constructor that changed is itself a mismatch
                instances[class_name] = None
        if not hasattr(instances[class_name], attribute):
            missing.append(f"{class_name}.{attribute}")
    if missing:
        version = getattr(package, "__version__", "of unknown version")
        raise H2VersionError(f"plexicorn needs h2 4.x internals ({', '.join(dict.fromkeys(missing))}); "
                             f"installed h2 {version} lacks {'them' if len(missing) > 1 else 'it'}")


require_h2_internals()

# Server resets the peer did not cause: the app failed (INTERNAL_ERROR), a WebSocket timed out
# (CANCEL), a response completed before its request body (NO_ERROR), a stream refused because of
# our own handlers (REFUSED_STREAM: HTTP2Protocol charges the refusals that are the peer's fault).
_BLAMELESS_RESETS = frozenset({ErrorCodes.NO_ERROR, ErrorCodes.INTERNAL_ERROR, ErrorCodes.CANCEL,
                               ErrorCodes.REFUSED_STREAM})
_DATA_TYPE = 0x0
# A frame header (RFC 9113 §4.1): 24-bit length (as 16 + 8 bits), type, flags, stream id.
_FRAME_HEADER = struct.Struct(">HBBBL")
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN
_SENDING_STATES = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE)
_PADDED = 0x8
_END_STREAM = 0x1
_END_HEADERS = 0x4
_HEADERS_TYPE = 0x1
_CONTINUATION_TYPE = 0x9
_PRIORITY = 0x20
_HEADERS_PLAIN = _END_HEADERS | _PADDED | _PRIORITY  # of these flags, END_HEADERS alone
_OPEN = h2.stream.StreamState.OPEN
_HALF_CLOSED_LOCAL = h2.stream.StreamState.HALF_CLOSED_LOCAL
_CLOSED = h2.stream.StreamState.CLOSED
_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
_decode_headers = h2.connection._decode_headers
_is_informational = h2.utilities.is_informational_response
_SENT_END_STREAM = h2.stream.StreamClosedBy.SEND_END_STREAM


def _end_stream_sent(machine: Any, state: Any) -> None:
    """h2's SEND_END_STREAM transition from OPEN or HALF_CLOSED_REMOTE (the sending states)."""
    if state is _OPEN:
        machine.state = _HALF_CLOSED_LOCAL
    else:
        machine.state = _CLOSED
        machine.stream_closed_by = _SENT_END_STREAM
_HEADER_BLOCK_TYPES = (0x1, 0x9)  # HEADERS, CONTINUATION
# A fast-built DATA frame's flags, as hyperframe reads them (shared: h2 only reads a DATA frame's).
_DATA_END_FLAGS = frozenset({"END_STREAM"})
_NO_FLAGS: frozenset[str] = frozenset()
_RECEIVING_STATES = (_OPEN, _HALF_CLOSED_LOCAL)
_RECEIVED_END_STREAM = h2.stream.StreamClosedBy.RECV_END_STREAM


class _FrameSizeError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.FRAME_SIZE_ERROR


class _CompressionError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class _EagerFrameBuffer(h2.frame_buffer.FrameBuffer):
    # False: every frame is parsed by hyperframe (the reference tests/test_h2_fast_paths.py compares with).
    fast = True

    def __init__(self, guard: FloodGuard) -> None:
        super().__init__(server=True)
        self.guard = guard

    def __next__(self) -> Any:
        data = self._data
        if len(data) < 9:
            raise StopIteration
        high, low, frame_type, flags, stream_id = _FRAME_HEADER.unpack_from(data)
        length = high << 8 | low
        # h2 checks a frame's length only once the whole payload is in; a peer announcing an
        # oversized frame (e.g. garbage after the preface) would wait, unanswered, for up to
        # 16 MiB. Check it from the header, so FRAME_SIZE_ERROR goes out at once.
        self._validate_frame_length(length)
        if frame_type == SettingsFrame.type and flags & 0x1 and length:
            # hyperframe refuses it as malformed (PROTOCOL_ERROR); RFC 9113 §6.5 names the code.
            raise _FrameSizeError("SETTINGS ACK with a payload")
        if len(data) < 9 + length:
            # The rest of the frame is still coming: h2 checks its header (DATA on stream 0...)
            # now, not once it is whole.
            return super().__next__()
        # Every whole frame passes the flood guard before h2 parses it; a refused one stays in
        # the buffer (a later turn parses it) or with the connection (it is ending).
        delivered = length - 1 - data[9] if frame_type == _DATA_TYPE and flags & _PADDED and length else length
        if not self.guard.admit(frame_type, flags, delivered):
            raise StopIteration
        stream_id &= 0x7FFFFFFF
        if stream_id and not self._headers_buffer and self.fast:
            if frame_type == _DATA_TYPE and not flags & _PADDED:
                # A DATA frame without padding, outside a header block: a request body's frame,
                # built without hyperframe's parsing (as hyperframe builds it).
                frame = DataFrame.__new__(DataFrame)
                frame.flags = _DATA_END_FLAGS if flags & _END_STREAM else _NO_FLAGS
                frame.pad_length = 0
            elif frame_type == _HEADERS_TYPE and flags & _HEADERS_PLAIN == _END_HEADERS:
                # A whole header block in one frame, without padding or priority: the commonest
                # request frame (flags read as hyperframe reads them: unknown bits ignored).
                frame = HeadersFrame.__new__(HeadersFrame)
                frame.flags = {"END_HEADERS", "END_STREAM"} if flags & _END_STREAM else {"END_HEADERS"}
                frame.pad_length = frame.depends_on = frame.stream_weight = 0
                frame.exclusive = False
            else:
                return super().__next__()
            frame.stream_id = stream_id
            frame.body_len = length
            with memoryview(data) as view:
                frame.data = view[9:9 + length].tobytes()  # one copy (a bytearray slice, then bytes: two)
            del data[:9 + length]
            return frame
        return super().__next__()

    @property
    def backlog(self) -> bool:
        """Whole frames wait that this turn did not parse."""
        return self.guard.backlog and len(self._data) >= 9

    @property
    def header_block_open(self) -> bool:
        """A header block has begun and is not whole: h2 holds a HEADERS frame (and CONTINUATIONs)
        waiting for END_HEADERS, or the frame next in the buffer is a HEADERS or CONTINUATION
        whose bytes are still coming."""
        data = self._data
        return bool(self._headers_buffer) or (len(data) >= 4 and data[3] in _HEADER_BLOCK_TYPES)


class _LenientStream(h2.stream.H2Stream):
    """h2's stream, except that a content-length h2 cannot parse (in a request or in its
    trailers, which h2 checks again) is not h2's connection error: h2request rejects such a
    request as a stream error (RFC 9113 §8.1.1), so h2 need only track valid ones."""

    def _initialize_content_length(self, headers: Any) -> None:
        try:
            super()._initialize_content_length(headers)
        except h2.exceptions.ProtocolError:
            self._expected_content_length = None


class _Silent:
    """A logger that drops debug messages without asking whether anyone wants them."""

    @staticmethod
    def debug(*args: Any, **kwargs: Any) -> None:
        pass


def _silence_hpack_debug() -> None:
    """hpack calls its logger's debug() for every integer and field it codes (~23 calls per
    request); unless debug logging is on for hpack when the first connection opens (after the
    server configured logging), those calls go to a logger that does nothing."""
    global _hpack_checked
    _hpack_checked = True
    if hasattr(hpack.hpack, "log") and not logging.getLogger("hpack.hpack").isEnabledFor(logging.DEBUG):
        hpack.hpack.log = _Silent  # type: ignore[assignment]


_hpack_checked = False
_SWEEP_EVERY = 16


class ServerH2Connection(h2.connection.H2Connection):
    def __init__(self, config: h2.config.H2Configuration, guard: FloodGuard, metrics: Metrics = NULL_METRICS) -> None:
        if not _hpack_checked:
            _silence_hpack_debug()
        super().__init__(config)
        self.encoder = ResponseEncoder()  # type: ignore[assignment]  # hpackenc.py: h2's, faster
        decoder = RequestDecoder()  # hpackdec.py: hpack's, with indexed fields made cheap
        decoder.max_header_list_size = self.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder
        self.guard = guard
        self.metrics = metrics
        self.incoming_buffer: _EagerFrameBuffer = _EagerFrameBuffer(guard)
        self._reset_before = False  # the DATA frame being received is on a stream we had reset
        self._settings_received = False
        self._unswept = 0  # new streams since h2 last forgot its closed ones
        # What `send_data_frames` wrote, in order: h2's buffer as it stood before, then each
        # frame's header and payload (the app's bytes, uncopied). `data_to_send` joins them, one
        # copy into a buffer of the exact size (h2's growing bytearray, then bytes(), cost three).
        self._pieces: list[bytes | bytearray | memoryview] = []

    def apply_server_settings(self, *, max_concurrent_streams: int, max_header_list_size: int,
                              initial_window_size: int, max_frame_size: int, decoded_header_list_limit: int,
                              extra: dict[int, int]) -> None:
        """Our SETTINGS, before the preface is sent (`extra`: codes h2 does not know)."""
        codes = h2.settings.SettingCodes
        self.local_settings = h2.settings.Settings(client=False, initial_values={
            codes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            codes.MAX_HEADER_LIST_SIZE: max_header_list_size,
            codes.INITIAL_WINDOW_SIZE: initial_window_size,
            codes.MAX_FRAME_SIZE: max_frame_size,
            codes.ENABLE_PUSH: 0,
            codes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441: WebSockets over HTTP/2
            **extra,  # type: ignore[dict-item]
        })
        # h2 read these limits from its own defaults at construction, and our settings count as
        # already in force, so no acknowledgement would ever apply them: set them here.
        self.decoder.max_header_list_size = decoded_header_list_limit
        self.max_inbound_frame_size = max_frame_size

    @property
    def backlog(self) -> bool:
        """Whole frames received wait for a later turn (the flood guard's bound per turn)."""
        return self.incoming_buffer.backlog

    @property
    def header_block_open(self) -> bool:
        """A request head (header block) has begun arriving and is not whole yet."""
        return self.incoming_buffer.header_block_open

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False,
                  pad_length: Any = None) -> None:
        if pad_length is not None:
            super().send_data(stream_id, data, end_stream, pad_length)
        else:
            self.send_data_frames(stream_id, [data], end_stream)

    def send_data_frames(self, stream_id: int, payloads: list[bytes | memoryview], end_stream: bool = False) -> None:
        """One DATA frame per payload, END_STREAM on the last if asked: h2's send_data frame by
        frame, without its cost where nothing goes wrong. On an open connection and stream,
        within the windows and the frame size, the frames are written here as h2 would (9-byte
        header, then the bytes, uncopied till `data_to_send`), counted against the same windows
        once, and END_STREAM moves the stream's state machine as h2 does. Anything else (an
        empty frame not ending the stream, a closed stream, a window or frame size exceeded: h2's errors) goes to h2,
        frame by frame. This saves per frame h2's logging, a hyperframe object and three copies
        of the payload (h2 copies a memoryview to bytes, serializes, joins, copies its buffer)."""
        sizes = [len(payload) for payload in payloads]
        total = sum(sizes)
        stream = self.streams.get(stream_id)
        if (stream is None or max(sizes) > self.max_outbound_frame_size
                or not (min(sizes) > 0 or (end_stream and len(sizes) == 1))  # only END_STREAM may be empty
                or self.state_machine.state is not _SERVER_OPEN
                or (state := stream.state_machine.state) not in _SENDING_STATES
                or total > stream.outbound_flow_control_window or total > self.outbound_flow_control_window):
            last = len(payloads) - 1
            for index, payload in enumerate(payloads):
                super().send_data(stream_id, payload, end_stream and index == last)
            return
        if end_stream:
            _end_stream_sent(stream.state_machine, state)
        stream.outbound_flow_control_window -= total
        self.outbound_flow_control_window -= total
        self.guard.data_frames_sent(sizes)
        pieces = self._pieces
        if self._data_to_send:  # frames h2 wrote before these keep their place
            pieces.append(self._data_to_send)
            self._data_to_send = bytearray()
        pack = _FRAME_HEADER.pack
        last = len(payloads) - 1
        for index, payload in enumerate(payloads):
            size = sizes[index]
            flags = _END_STREAM if end_stream and index == last else 0
            pieces.append(pack(size >> 8, size & 0xFF, _DATA_TYPE, flags, stream_id))
            pieces.append(payload)

    def data_to_send(self, amount: int | None = None) -> bytes:
        pieces = self._pieces
        if not pieces:
            return super().data_to_send(amount)
        if self._data_to_send:
            pieces.append(self._data_to_send)
        self._pieces = []
        data = b"".join(pieces)
        if amount is not None and amount < len(data):
            self._data_to_send = bytearray(data[amount:])
            return data[:amount]
        self._data_to_send = bytearray()
        return data

    def clear_outbound_data_buffer(self) -> None:
        self._pieces = []
        super().clear_outbound_data_buffer()

    def end_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if (stream is None or self.state_machine.state is not _SERVER_OPEN
                or stream.state_machine.state not in _SENDING_STATES):
            super().end_stream(stream_id)  # h2's errors, as h2 raises them
            return
        # In a sending state h2's end_stream and send_data(b"", end_stream=True) write the same
        # frame (empty DATA, END_STREAM) and leave the same state.
        self.send_data(stream_id, b"", end_stream=True)

    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False, priority_weight: Any = None,
                     priority_depends_on: Any = None, priority_exclusive: Any = None) -> None:
        """h2's send_headers, without its per-call state machines and frame objects for the
        common case: a stream's final response head (not informational, not trailers, as a
        list beginning with :status) on an open connection and stream. The stream's state
        changes as h2's own transitions would change it; anything else goes to h2."""
        stream = self.streams.get(stream_id)
        if (stream is None or type(headers) is not list or not headers
                or priority_weight is not None or priority_depends_on is not None or priority_exclusive is not None
                or self.state_machine.state is not _SERVER_OPEN):
            super().send_headers(stream_id, headers, end_stream, priority_weight, priority_depends_on,
                                 priority_exclusive)
            return
        machine = stream.state_machine
        state = machine.state
        name, status = headers[0]
        if (state not in _SENDING_STATES or machine.headers_sent or machine.client is not False
                or name != b":status" or status[:1] == b"1" or type(status) is not bytes):
            super().send_headers(stream_id, headers, end_stream, priority_weight, priority_depends_on,
                                 priority_exclusive)
            return
        machine.headers_sent = True  # h2's response_sent transition (OPEN, HALF_CLOSED_REMOTE: unchanged)
        if end_stream:
            _end_stream_sent(machine, state)
        stream.request_method = None  # as h2 leaves it after a response (it reads a :method there)
        block = self.encoder.encode(headers)
        limit = stream.max_outbound_frame_size
        size = len(block)
        buffer = self._data_to_send
        if size <= limit:
            buffer += _FRAME_HEADER.pack(size >> 8, size & 0xFF, _HEADERS_TYPE,
                                        _END_HEADERS | _END_STREAM if end_stream else _END_HEADERS, stream_id)
            buffer += block
            return
        # A block over the peer's frame size: HEADERS, then CONTINUATIONs, the last ending it.
        for start in range(0, size, limit):
            part = block[start:start + limit]
            last = start + limit >= size
            flags = (_END_HEADERS if last else 0) | (_END_STREAM if end_stream and not start else 0)
            buffer += _FRAME_HEADER.pack(len(part) >> 8, len(part) & 0xFF,
                                        _CONTINUATION_TYPE if start else _HEADERS_TYPE, flags, stream_id)
            buffer += part

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        # The one place every frame we send passes, h2's own RST_STREAMs included (flow-control
        # errors, frames on closed streams): resets the peer provoked count against its budget,
        # DATA frames earn it control frames back. The metrics count every reset and every
        # GOAWAY h2 writes (h2's own, on a protocol error; lifecycle.py counts those it writes).
        guard = self.guard
        for frame in frames:
            frame_type = frame.type
            if frame_type == DataFrame.type:
                guard.data_frame_sent(len(frame.data))
            elif frame_type == RstStreamFrame.type:
                self.metrics.h2_stream_reset(False, frame.error_code)
                if frame.error_code not in _BLAMELESS_RESETS:
                    guard.reset()
            elif frame_type == GoAwayFrame.type:
                self.metrics.goaway_sent(frame.error_code)
        super()._prepare_for_sending(frames)

    def _receive_frame(self, frame: Any) -> Any:
        if not self._settings_received:
            # RFC 9113 §3.4: the client preface is the magic then a SETTINGS frame; h2 takes anything.
            if not isinstance(frame, SettingsFrame) or "ACK" in frame.flags:
                raise h2.exceptions.ProtocolError("the connection preface must end with a SETTINGS frame")
            self._settings_received = True
        try:
            return self._dispatch_frame(frame)
        except h2.exceptions.DenialOfServiceError:
            raise  # an HPACK bomb: ENHANCE_YOUR_CALM
        except h2.exceptions.ProtocolError as exc:
            # h2 reports a header block HPACK cannot decode as a generic PROTOCOL_ERROR;
            # RFC 9113 §4.3 makes it COMPRESSION_ERROR.
            if isinstance(exc.__cause__, (HPACKError, IndexError, TypeError, UnicodeDecodeError)):
                raise _CompressionError(str(exc)) from exc.__cause__
            raise

    def _dispatch_frame(self, frame: Any) -> Any:
        """h2's _receive_frame, less its `repr(frame)` for a trace log it writes for every
        frame received (h2's logger drops it, after the repr has cost a formatting)."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as exc:
            if self._stream_is_closed_by_reset(exc.stream_id):
                reset = RstStreamFrame(exc.stream_id)
                reset.error_code = exc.error_code
                self._prepare_for_sending([reset])
                events = exc._events
            else:
                raise
        except h2.exceptions.StreamIDTooLowError as exc:
            if self._stream_is_closed_by_reset(exc.stream_id):
                reset = RstStreamFrame(exc.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                events = []
            elif self._stream_is_closed_by_end(exc.stream_id):
                raise h2.exceptions.StreamClosedError(exc.stream_id) from exc
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _LenientStream
        return stream

    def _receive_headers_frame(self, frame: Any) -> Any:
        stream_id = frame.stream_id
        if (stream_id & 1 and stream_id > self.highest_inbound_stream_id and stream_id not in self.streams
                and self.state_machine.state is _SERVER_OPEN and "PRIORITY" not in frame.flags):
            return self._receive_request(frame)
        frames, events = super()._receive_headers_frame(frame)
        # HPACK decoding costs per field, whatever the block's size on the wire.
        for event in events:
            headers = getattr(event, "headers", None)
            if headers is not None:
                self.guard.decoded_fields(len(headers))
        return frames, events

    def _receive_request(self, frame: Any) -> Any:
        """h2's _receive_headers_frame for a new client stream on an open connection, without
        its per-request state-machine calls and generators: the same checks, stream, state,
        events and errors (kept in step with h2 4.x: tests/test_h2_fast_paths.py compares them)."""
        stream_id = frame.stream_id
        max_open = self.local_settings.max_concurrent_streams
        value = self.open_inbound_streams
        if value + 1 > max_open:
            raise h2.exceptions.TooManyStreamsError(f"Max inbound streams is {max_open}, {value} open")
        headers = _decode_headers(self.decoder, frame.data)
        stream = _LenientStream(stream_id, config=self.config,
                                    inbound_window_size=self.local_settings.initial_window_size,
                                    outbound_window_size=self.remote_settings.initial_window_size)
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        end_stream = "END_STREAM" in frame.flags
        if _is_informational(headers):
            # h2 refuses it (a response's status in a request): let it say so, as it would.
            return [], stream.receive_headers(headers, end_stream, self.config.header_encoding)[1]
        machine = stream.state_machine
        # IDLE --RECV_HEADERS--> OPEN (h2's request_received) [--RECV_END_STREAM--> HALF_CLOSED_REMOTE]
        machine.client = False
        machine.headers_received = True
        event = h2.events.RequestReceived(stream_id=stream_id)
        events: list[Any] = [event]
        if end_stream:
            machine.state = _HALF_CLOSED_REMOTE
            ended = h2.events.StreamEnded(stream_id=stream_id)
            event.stream_ended = ended
            events.append(ended)
        else:
            machine.state = _OPEN
        stream._initialize_content_length(headers)
        if self.config.normalize_inbound_headers:
            for name, _ in headers:
                if name == b"cookie":
                    headers = h2.utilities.normalize_inbound_headers(headers, None)  # joins split cookies
                    break
        if isinstance(self.config.header_encoding, str):
            headers = h2.stream._decode_headers(headers, self.config.header_encoding)
        event.headers = list(headers)
        self.guard.decoded_fields(len(event.headers))
        return [], events

    def _receive_data_frame(self, frame: Any) -> Any:
        try:
            received = self._receive_body(frame)
            if received is not None:
                return received
            # How the stream was closed *before* this frame: h2 marks a stream it resets because
            # of this very frame (DATA after END_STREAM) as reset by us too.
            self._reset_before = self._stream_closed_by(frame.stream_id) is h2.stream.StreamClosedBy.SEND_RST_STREAM
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            # A body that does not match its content-length is a malformed request: a stream
            # error (RFC 9113 §8.1.1), where h2 would end the connection.
            self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            if frame.flow_controlled_length:
                # h2 counted the frame against the connection window; nobody will consume it.
                self.increment_flow_control_window(frame.flow_controlled_length)
            return [], [h2.events.StreamReset(stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR,
                                              remote_reset=False)]
        finally:
            self._reset_before = False

    def _receive_body(self, frame: Any) -> Any:
        """h2's _receive_data_frame for a frame of a request body on an open connection and a
        stream that may receive it (OPEN, or HALF_CLOSED_LOCAL: the response already sent),
        without its state-machine calls: the same windows consumed, content-length tracked,
        state, events and errors, in h2's order (tests/test_h2_fast_paths.py compares them).
        None: not such a frame; h2's code handles it."""
        stream = self.streams.get(frame.stream_id)
        if (stream is None or self.state_machine.state is not _SERVER_OPEN
                or (state := (machine := stream.state_machine).state) not in _RECEIVING_STATES
                or not machine.headers_received or "PADDED" in frame.flags):
            return None
        data = frame.data
        length = len(data)
        end_stream = "END_STREAM" in frame.flags
        self._inbound_flow_control_window_manager.window_consumed(length)
        event = h2.events.DataReceived(stream_id=frame.stream_id)
        stream._inbound_window_manager.window_consumed(length)
        stream._track_content_length(length, end_stream)
        events: list[Any] = [event]
        if end_stream:
            # OPEN --RECV_END_STREAM--> HALF_CLOSED_REMOTE; HALF_CLOSED_LOCAL --> CLOSED
            if state is _OPEN:
                machine.state = _HALF_CLOSED_REMOTE
            else:
                machine.state = _CLOSED
                machine.stream_closed_by = _RECEIVED_END_STREAM
            ended = h2.events.StreamEnded(stream_id=frame.stream_id)
            event.stream_ended = ended
            events.append(ended)
        event.data = data
        event.flow_controlled_length = length
        return [], events

    def _handle_data_on_closed_stream(self, events: Any, exc: Any, frame: Any) -> Any:
        frames, events = super()._handle_data_on_closed_stream(events, exc, frame)
        if self._reset_before:
            # RFC 9113 §5.1: after our RST_STREAM, frames in flight on the stream are ignored.
            # h2 answers each with another RST_STREAM, which a peer uploading to a response
            # that came early would be charged for; its WINDOW_UPDATE credit is kept.
            frames = [f for f in frames if f.type != RstStreamFrame.type]
        return frames, events

    def _receive_goaway_frame(self, frame: Any) -> Any:
        if frame.error_code:
            return super()._receive_goaway_frame(frame)  # the peer fails the connection
        # A graceful GOAWAY only stops new streams (RFC 9113 §6.8). h2 would go CLOSED, drop
        # the bytes queued for the peer and refuse to finish the streams still open.
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    @property
    def open_inbound_streams(self) -> int:
        # h2 treats one stream over SETTINGS_MAX_CONCURRENT_STREAMS as a connection error;
        # RFC 9113 §5.1.2 lets us refuse just that stream, which the stream table does. The
        # base property is still where h2 forgets closed streams, by a walk over all of them:
        # once per _SWEEP_EVERY new streams, not per stream (a closed stream h2 has not yet
        # forgotten behaves as one it has; at most that many wait to be forgotten).
        self._unswept += 1
        if self._unswept >= _SWEEP_EVERY:
            self._unswept = 0
            super().open_inbound_streams  # noqa: B018
        return 0
