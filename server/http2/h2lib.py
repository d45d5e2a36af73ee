"""h2's `H2Connection` with the server-side behaviour RFC 9113 asks for where h2 differs.

Each override names what h2 does and why Plexicorn needs otherwise; they touch h2
internals, which is why h2 is pinned to one major version.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy
from hpack.exceptions import HPACKError
from hyperframe.frame import DataFrame, RstStreamFrame, SettingsFrame

from .flood import FloodGuard

# Server resets the peer did not cause: the app failed (INTERNAL_ERROR), a WebSocket timed out
# (CANCEL), a response completed before its request body (NO_ERROR), a stream refused because of
# our own handlers (REFUSED_STREAM: HTTP2Protocol charges the refusals that are the peer's fault).
_BLAMELESS_RESETS = frozenset({ErrorCodes.NO_ERROR, ErrorCodes.INTERNAL_ERROR, ErrorCodes.CANCEL,
                               ErrorCodes.REFUSED_STREAM})
_DATA_TYPE = 0x0
_PADDED = 0x8


class _FrameSizeError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.FRAME_SIZE_ERROR


class _CompressionError(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class _EagerFrameBuffer(h2.frame_buffer.FrameBuffer):
    def __init__(self, guard: FloodGuard) -> None:
        super().__init__(server=True)
        self.guard = guard

    def __next__(self) -> Any:
        data = self._data
        if len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            # h2 checks a frame's length only once the whole payload is in; a peer announcing an
            # oversized frame (e.g. garbage after the preface) would wait, unanswered, for up to
            # 16 MiB. Check it from the header, so FRAME_SIZE_ERROR goes out at once.
            self._validate_frame_length(length)
            if data[3] == SettingsFrame.type and data[4] & 0x1 and length:
                # hyperframe refuses it as malformed (PROTOCOL_ERROR); RFC 9113 §6.5 names the code.
                raise _FrameSizeError("SETTINGS ACK with a payload")
            # Every whole frame passes the flood guard before h2 parses it; a refused one stays
            # in the buffer (a later turn parses it) or with the connection (it is ending).
            if len(data) >= 9 + length:
                frame_type, flags = data[3], data[4]
                if frame_type == _DATA_TYPE and flags & _PADDED and length:
                    length -= 1 + data[9]  # judged by what it delivers, not by its padding
                if not self.guard.admit(frame_type, flags, length):
                    raise StopIteration
        return super().__next__()

    @property
    def backlog(self) -> bool:
        """Whole frames wait that this turn did not parse."""
        return self.guard.backlog and len(self._data) >= 9


class ServerH2Connection(h2.connection.H2Connection):
    def __init__(self, config: h2.config.H2Configuration, guard: FloodGuard) -> None:
        super().__init__(config)
        self.guard = guard
        self.incoming_buffer: _EagerFrameBuffer = _EagerFrameBuffer(guard)
        self._reset_before = False  # the DATA frame being received is on a stream we had reset
        self._settings_received = False

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        # The one place every frame we send passes, h2's own RST_STREAMs included (flow-control
        # errors, frames on closed streams): resets the peer provoked count against its budget,
        # DATA frames earn it control frames back.
        guard = self.guard
        for frame in frames:
            frame_type = frame.type
            if frame_type == DataFrame.type:
                guard.data_frame_sent(len(frame.data))
            elif frame_type == RstStreamFrame.type and frame.error_code not in _BLAMELESS_RESETS:
                guard.reset()
        super()._prepare_for_sending(frames)

    def _receive_frame(self, frame: Any) -> Any:
        if not self._settings_received:
            # RFC 9113 §3.4: the client preface is the magic then a SETTINGS frame; h2 takes anything.
            if not isinstance(frame, SettingsFrame) or "ACK" in frame.flags:
                raise h2.exceptions.ProtocolError("the connection preface must end with a SETTINGS frame")
            self._settings_received = True
        try:
            return super()._receive_frame(frame)
        except h2.exceptions.DenialOfServiceError:
            raise  # an HPACK bomb: ENHANCE_YOUR_CALM
        except h2.exceptions.ProtocolError as exc:
            # h2 reports a header block HPACK cannot decode as a generic PROTOCOL_ERROR;
            # RFC 9113 §4.3 makes it COMPRESSION_ERROR.
            if isinstance(exc.__cause__, (HPACKError, IndexError, TypeError, UnicodeDecodeError)):
                raise _CompressionError(str(exc)) from exc.__cause__
            raise

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        # h2 fails the whole connection on a content-length it cannot parse; h2request rejects
        # such a request as a stream error (RFC 9113 §8.1.1), so h2 need only track valid ones.
        check = stream._initialize_content_length

        def lenient(headers: Any) -> None:
            try:
                check(headers)
            except h2.exceptions.ProtocolError:
                stream._expected_content_length = None
        stream._initialize_content_length = lenient  # type: ignore[method-assign]
        return stream

    def _receive_headers_frame(self, frame: Any) -> Any:
        frames, events = super()._receive_headers_frame(frame)
        # HPACK decoding costs per field, whatever the block's size on the wire.
        for event in events:
            headers = getattr(event, "headers", None)
            if headers is not None:
                self.guard.decoded_fields(len(headers))
        return frames, events

    def _receive_data_frame(self, frame: Any) -> Any:
        # How the stream was closed *before* this frame: h2 marks a stream it resets because of
        # this very frame (DATA after END_STREAM) as reset by us too.
        self._reset_before = self._stream_closed_by(frame.stream_id) is StreamClosedBy.SEND_RST_STREAM
        try:
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
        # RFC 9113 §5.1.2 lets us refuse just that stream, which HTTP2Protocol does. The
        # base property is still evaluated because it is where h2 forgets closed streams.
        super().open_inbound_streams  # noqa: B018
        return 0
