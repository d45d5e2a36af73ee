"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream as carrier.

The stream's DATA frames carry the WebSocket's bytes both ways, so everything a
stream has applies unchanged: the scheduler's turns, per-stream flow control (the
client's window re-opens only as the app receives) and the bounded send queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from ..asgi.http import ResponseState
from ..asgi.websocket import WebSocketSession
from ..runtime.context import log_access
from .stream import STREAM_SEND_BUFFER, HTTP2Stream

if TYPE_CHECKING:
    from .connection import HTTP2Protocol


class HTTP2WebSocket(HTTP2Stream):
    __slots__ = ("session",)
    session: WebSocketSession

    def __init__(self, protocol: HTTP2Protocol, stream_id: int, scope: dict[str, Any], target: str) -> None:
        super().__init__(protocol, stream_id, scope, target, method="CONNECT")
        # Messages go out as they are sent: round-robin with the other streams of their urgency
        # rather than one after another (RFC 9218 §4), unless the request's priority says otherwise.
        self.incremental = True

    # -- input, from the connection --------------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        self.session.feed(data)

    def end_body(self) -> None:
        super().end_body()
        self.session.remote_ended()

    def _wire_disconnected(self) -> None:
        super()._wire_disconnected()
        self.session.disconnect()

    def server_shutdown(self) -> None:
        self.session.shutdown()

    # -- the carrier -----------------------------------------------------------------------
    def ws_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        # RFC 8441 §5: a 2xx without END_STREAM opens the WebSocket.
        self.status = 200
        self.response_state = ResponseState.STREAMING
        self._wire_start(200, headers)
        protocol = self.protocol
        if protocol.context.access_log:  # at accept, as over HTTP/1.1 (the stream may never end cleanly)
            log_access(protocol.info.client, "CONNECT", self.target, "2", 200, 0)

    def log_completed(self) -> None:
        pass  # logged at accept

    def ws_write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self._wire_body_nowait(data, True)

    async def ws_drain(self) -> None:
        await self.drain()

    def ws_finish(self) -> None:
        if self.response_state is ResponseState.STREAMING:
            self.response_state = ResponseState.COMPLETE
            self._wire_body_nowait(b"", False)  # END_STREAM after the queued frames

    def ws_abort(self) -> None:
        self.response_state = ResponseState.COMPLETE
        protocol = self.protocol
        conn = protocol.conn
        size = self.pending_size
        # What is queued (the last Close) goes out ahead of the reset when the window allows.
        if size and size <= min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size):
            conn.send_data(self.stream_id, self.take(size))
        protocol.reset_stream(self, ErrorCodes.CANCEL)

    def ws_backlogged(self) -> bool:
        return self.pending_size > STREAM_SEND_BUFFER

    def wake_sender(self) -> None:
        # The scheduler's call once the queue is back within STREAM_SEND_BUFFER (or dropped).
        super().wake_sender()
        self.session.writable()

    def ws_flood_closed(self, reason: str) -> None:
        self.protocol.context.counters.flood_closed(reason)

    def ws_consumed(self, size: int) -> None:
        self._wire_consumed(size)
