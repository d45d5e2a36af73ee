"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream as carrier.

The stream's DATA frames carry the WebSocket's bytes both ways, so everything a
stream has applies unchanged: the scheduler's turns, per-stream flow control (the
client's window re-opens only as the app receives) and the bounded send queue.
"""

from __future__ import annotations

from typing import Any

from h2.errors import ErrorCodes

from ..asgi.http import ResponseState
from ..asgi.websocket import WebSocketSession
from ..runtime.context import ConnectionInfo, ServerContext, log_access
from .owner import StreamOwner
from .stream import HTTP2Stream


class HTTP2WebSocket(HTTP2Stream):
    __slots__ = ("session",)
    session: WebSocketSession

    def __init__(self, owner: StreamOwner, context: ServerContext, info: ConnectionInfo, stream_id: int,
                 scope: dict[str, Any], target: str) -> None:
        super().__init__(owner, context, info, stream_id, scope, target, method="CONNECT")

    # -- input, from the connection --------------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        self.session.feed(data)

    def end_body(self) -> None:
        super().end_body()
        self.session.remote_ended()

    def _wire_disconnected(self) -> None:
        # No access line here (HTTP2Stream's reset line): a reset WebSocket stream is logged by
        # ws_ended (1006).
        self.writable()
        self.session.disconnect()

    def server_shutdown(self) -> None:
        self.session.shutdown()

    # -- the carrier -----------------------------------------------------------------------
    def ws_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        # RFC 8441 §5: a 2xx without END_STREAM opens the WebSocket.
        self.status = 200
        self.response_state = ResponseState.STREAMING
        self._wire_start(200, self._complete_head(list(headers)))  # date and HSTS, as any response
        if self.context.access_log:  # at accept, as over HTTP/1.1 (the stream may never end cleanly)
            log_access(self, self.info.tls_log, self.target, "2", self.stream_id)

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
        # What is queued (the last Close) goes out ahead of the reset when the window allows.
        self.owner.reset(self, ErrorCodes.CANCEL, send_queued=True)

    def ws_backlogged(self) -> bool:
        return self.owner.backlogged(self)

    def writable(self) -> None:
        # The scheduler's call once the queue is back within its send buffer (or dropped).
        super().writable()
        self.session.writable()

    def ws_ended(self, code: int) -> None:
        if self.context.access_log:
            log_access(self, self.info.tls_log, self.target, "2", self.stream_id,
                       event="websocket-close", close_code=code)


    def ws_flood_closed(self, reason: str) -> None:
        self.context.counters.flood_closed(reason)

    def ws_consumed(self, size: int) -> None:
        self._wire_consumed(size)
