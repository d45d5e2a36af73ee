"""WebSockets over HTTP/1.1 (RFC 6455): the opening handshake and the connection as carrier.

Until the app accepts, the request is an ordinary HTTP/1.1 exchange (so a denial is an
ordinary response and the connection may stay open); `101 Switching Protocols` hands the
connection's bytes to the `WebSocketSession` for good.
"""

from __future__ import annotations

from typing import Any

from ..asgi.websocket import WebSocketSession
from ..asgi.wscarrier import accept_token, websocket_key_problem
from .codec import Request
from .exchange import HTTP1Cycle
from .owner import ExchangeOwner


def is_websocket_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"upgrade" and b"websocket" in value.lower() for name, value in headers)


def handshake_problem(request: Request) -> str | None:
    """Why an `Upgrade: websocket` request cannot open a WebSocket (RFC 6455 §4.2.1), if it cannot."""
    if request.method != b"GET":
        return "a WebSocket handshake must be a GET"
    if request.http_version != b"1.1":
        return "a WebSocket handshake needs HTTP/1.1"
    headers = request.headers
    upgrade = {token.strip().lower() for name, value in headers if name == b"upgrade" for token in value.split(b",")}
    connection = {token.strip().lower() for name, value in headers if name == b"connection"
                  for token in value.split(b",")}
    if b"websocket" not in upgrade or b"upgrade" not in connection:
        return "a WebSocket handshake needs Upgrade: websocket and Connection: Upgrade"
    if any(name in (b"content-length", b"transfer-encoding") and value != b"0" for name, value in headers):
        return "a WebSocket handshake has no body"
    return websocket_key_problem(headers)


class HTTP1WebSocket(HTTP1Cycle):
    __slots__ = ("session",)
    session: WebSocketSession

    def __init__(self, owner: ExchangeOwner, scope: dict[str, Any], target: bytes,
                 extra_headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(owner, scope, target, extra_headers, method="GET")

    def ws_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = 101
        self.owner.accept_websocket(self.session, [
            (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(self.scope["headers"])), *headers])

    def ws_write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.owner.write(data)

    async def ws_drain(self) -> None:
        await self.owner.drain()

    def ws_finish(self) -> None:
        # RFC 6455 §7.1.1: the server closes the TCP connection first.
        self.owner.close()

    def ws_abort(self) -> None:
        # The client is not answering: the last Close goes to the socket if it takes it, but
        # nothing waits for the client to read what is queued, which could take forever.
        self.owner.close(now=True)

    def ws_backlogged(self) -> bool:
        return self.owner.backlogged  # HTTP1Protocol.resume_writing calls session.writable()

    def ws_ended(self, code: int) -> None:
        self.owner.websocket_ended(code)

    def ws_flood_closed(self, reason: str) -> None:
        self.owner.flood_closed(reason)

    def server_shutdown(self) -> None:
        self.session.shutdown()

    def ws_consumed(self, size: int) -> None:
        self.owner.consumed()

    def _wire_disconnected(self) -> None:
        self.session.disconnect()
