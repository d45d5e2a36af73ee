"""What an HTTP/1.1 exchange, and the WebSocket carrier after it, may ask of their connection.

`HTTP1Protocol` implements it; `HTTP1Cycle` and `HTTP1WebSocket` know nothing else of the
connection (not its codec, outbox or transport), so they can be driven by any object with
these verbs. The exchange speaks in response parts; what they mean for the connection
(`connection: close`, 100 Continue, trailers only on chunked bodies, the next request after
the response) is the connection's business.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..asgi.websocket import WebSocketSession


class ExchangeOwner(Protocol):
    def respond(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the final response head (`headers` complete, asgi/headers.py); the connection
        adds `connection: close` when it will close after this response."""

    def informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send a 1xx (a 103); it does not count as the answer to `Expect: 100-continue`."""

    def send_body(self, data: bytes) -> None:
        """Frame a piece of body and queue it; codec.ResponseError if it does not fit the framing."""

    def end_response(self, trailers: list[tuple[bytes, bytes]], last_body: bytes = b"") -> None:
        """End the response with `last_body`, its last piece of body, if any (trailers only where
        a chunked body has room for them) and complete the exchange: its access-log line, then the
        next request or the close.
        codec.ResponseError if the body does not match its content-length or a trailer is refused."""

    def date(self) -> bytes | None:
        """The current `date` field value."""

    def want_body(self) -> None:
        """The app waits for request body: send `100 Continue` if the client waits for it."""

    def consumed(self) -> None:
        """The app took buffered input: reading may resume."""

    def write(self, data: bytes) -> None:
        """Queue bytes that need no framing (WebSocket frames)."""

    async def drain(self) -> None:
        """Wait while more is queued than the connection's bounded send buffer holds."""

    @property
    def backlogged(self) -> bool:
        """Whether the client is not reading what we send."""

    def reading_held(self, within: float) -> bool:
        """Whether the connection stopped reading the client (which leaves our writes unread)
        at some moment of the last `within` seconds."""

    def close(self, *, now: bool = False) -> None:
        """Close after what is queued has been written; `now`: hand it to the socket and abort,
        waiting for no one (a client that does not read)."""

    async def sendfile(self, file: Any, offset: int, count: int) -> int:
        """Send `count` bytes of `file` from `offset` as the next body piece, framed by the codec,
        with the OS's sendfile (cleartext connections only); returns the bytes sent, fewer if
        the file ends first. Raises ClientDisconnected if the client leaves meanwhile."""

    def accept_websocket(self, session: WebSocketSession, headers: list[tuple[bytes, bytes]]) -> None:
        """Answer `101 Switching Protocols` with these fields; the connection's bytes are the
        session's from now on."""

    def websocket_ended(self, code: int) -> None:
        """The WebSocket is over with this close code: its closing access-log line."""

    def flood_closed(self, reason: str) -> None:
        """Count a WebSocket closed for exceeding a flood budget."""

    def completed(self) -> None:
        """The client left with the whole response before the app ended it: log it as complete."""

    def aborted(self) -> None:
        """The app failed after starting its response, which the connection cuts short: log it
        (event `aborted`)."""
