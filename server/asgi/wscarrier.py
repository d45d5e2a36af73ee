"""What carries a WebSocket: the opening handshake's checks (RFC 6455 §4.2.1, RFC 8441 §5) and
the interface an HTTP/1.1 connection or an HTTP/2 stream implements for a `WebSocketSession`."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Protocol

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def websocket_key_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """What is wrong with an HTTP/1.1 handshake's key and version (RFC 6455 §4.2.1), if anything."""
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    if len(keys) != 1:
        return "exactly one Sec-WebSocket-Key is required"
    try:
        if len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        return "Sec-WebSocket-Key must be 16 bytes in base64"
    return version_problem(headers)


def version_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    versions = [value for name, value in headers if name == b"sec-websocket-version"]
    if versions != [b"13"]:
        return "Sec-WebSocket-Version must be 13"
    return None


def accept_token(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Sec-WebSocket-Accept for the request's (validated) key."""
    key = next(value for name, value in headers if name == b"sec-websocket-key")
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class SessionInput(Protocol):
    """What a carrier tells its WebSocket session (a `websocket.WebSocketSession`)."""

    def feed(self, data: bytes) -> None:
        """Bytes of the WebSocket, in order."""

    def remote_ended(self) -> None:
        """The client will send nothing more (HTTP/2 END_STREAM) without having closed first."""

    def disconnect(self) -> None:
        """The connection is gone or the stream was reset."""

    def shutdown(self) -> None:
        """The server is shutting down."""

    def writable(self) -> None:
        """The carrier caught up with the client after being backlogged."""


class WebSocketCarrier(Protocol):
    """What a protocol provides to carry a WebSocket: an `HTTPCycle` (for the HTTP answer
    before accepting) with these `ws_*` operations for the open WebSocket."""

    scope: dict[str, Any]
    disconnected: bool
    session: SessionInput

    async def send(self, message: dict[str, Any]) -> None:
        """HTTPCycle.send: an `http.response.*` message (a denial)."""

    def fail(self) -> None:
        """HTTPCycle.fail: 500 if nothing was answered yet, else cut the answer short."""

    def ws_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Answer the handshake (101 / 200) with these extra fields; the WebSocket is open."""

    def ws_write(self, data: bytes) -> None:
        """Queue WebSocket frames for the client."""

    async def ws_drain(self) -> None:
        """Wait while more is queued than the bounded send buffer holds."""

    def ws_finish(self) -> None:
        """The WebSocket is over: end the connection (HTTP/1.1) or the stream (HTTP/2) after what is queued."""

    def ws_abort(self) -> None:
        """Give up on the client: no close handshake is possible."""

    def ws_consumed(self, size: int) -> None:
        """`size` input bytes are dealt with: let the client send more."""

    def ws_backlogged(self) -> bool:
        """Whether more is queued for the client than the bounded send buffer holds.

        A carrier calls its session's `writable()` once that is no longer so."""
        return False

    def ws_ended(self, code: int) -> None:
        """The accepted WebSocket is over, with this close code (1006: no close handshake):
        the access log's closing line."""

    def ws_flood_closed(self, reason: str) -> None:
        """The WebSocket is being closed for a flood: count it (`Counters.flood_closed`)."""
