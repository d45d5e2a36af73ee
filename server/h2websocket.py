"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream as carrier.

The stream's DATA frames carry the WebSocket's bytes both ways, so everything a
stream has applies unchanged: the scheduler's turns, per-stream flow control (the
client's window re-opens only as the app receives) and the bounded send queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from .asgi import ResponseState
from .h2stream import HTTP2Stream
from .websocket import WebSocketSession

if TYPE_CHECKING:
    from .http2 import HTTP2Protocol


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
        self._wire_start(200, headers)  # logged when the stream ends, with the bytes sent

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
        self.protocol.reset_stream(self, ErrorCodes.CANCEL)

    def ws_consumed(self, size: int) -> None:
        self._wire_consumed(size)
