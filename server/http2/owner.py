"""The one interface between an HTTP/2 stream's ASGI side and its connection.

`HTTP2Stream` and `HTTP2WebSocket` (stream.py, websocket.py) reach their connection only
through these verbs, never through its attributes; `HTTP2Protocol` (connection.py) implements
them. Each verb names the stream it is about: a verb for a stream the connection has already
finished or reset is ignored (or, for `reset`, a no-op), so a late call from a handler is
always safe. The other direction is small too: the connection calls the stream's `feed_body`,
`end_body`, `disconnect`, `writable`, `server_shutdown` and `log_completed`.
"""

from __future__ import annotations

from typing import Protocol

from h2.errors import ErrorCodes

Headers = list[tuple[bytes, bytes]]


class OwnedStream(Protocol):
    """What the connection knows a stream by."""

    stream_id: int

    def writable(self) -> None:
        """Its queued response bytes are back within the send buffer, or were dropped."""


class StreamOwner(Protocol):
    def start_response(self, stream: OwnedStream, block: Headers) -> None:
        """Send the response's HEADERS (`block` starts with `:status`), without END_STREAM."""

    def early_hint(self, stream: OwnedStream, links: list[bytes]) -> None:
        """Send a 103 Early Hints HEADERS frame with one `link` field per entry."""

    def enqueue(self, stream: OwnedStream, data: bytes, end: bool, trailers: Headers | None = None) -> None:
        """Queue response body bytes; `end`: the response ends after them, with `trailers`
        (a final HEADERS frame) if given. The scheduler frames them as windows allow."""

    def backlogged(self, stream: OwnedStream) -> bool:
        """More than the stream's send buffer is queued: its sender should wait for `writable`."""

    def sending(self, stream: OwnedStream) -> bool:
        """The stream is still open here: what it queued can still go out (no reset, no lost
        connection), and its end is logged when its END_STREAM is sent."""

    def consumed(self, stream: OwnedStream, size: int) -> None:
        """The application consumed `size` request bytes: re-open the client's window for them."""

    def reading_held(self, within: float) -> bool:
        """Whether the connection stopped reading its peer (which leaves our writes unread) at
        some moment of the last `within` seconds: no request body could arrive meanwhile."""

    def reset(self, stream: OwnedStream, code: ErrorCodes, *, send_queued: bool = False) -> None:
        """RST_STREAM(code) and forget the stream; `send_queued`: what is queued goes out first
        if the window takes it at once (a WebSocket's last Close)."""

    def reprioritize(self, stream: OwnedStream, field: bytes) -> None:
        """Apply an RFC 9218 `priority` field the application set on its response."""

    def push(self, stream: OwnedStream, path: str, headers: Headers) -> None:
        """Promise a GET of `path` on this stream and serve it (skipped when it cannot be)."""
