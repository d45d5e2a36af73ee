"""--limit-concurrency: how many requests this worker process runs at once.

`Admission` is the one gate, shared by HTTP/1.1 and HTTP/2 and by every listener of the process
(`ServerContext.admission`). It wraps the ASGI app, so a request is counted exactly while its
ASGI call runs: an HTTP request until the app returns, a WebSocket for its whole life. A request
beyond the limit never reaches the app; it is answered at once with a server-made 503 and
`Retry-After`, through the same exchange an app's response would take (so the protocol's framing,
flow control, keep-alive and access log apply unchanged):

- HTTP/1.1: `503`; the connection stays open unless the request's body is still coming.
- HTTP/2: `503` on that stream, not RST_STREAM(REFUSED_STREAM): clients retry a refused stream
  at once and silently (RFC 9113 §8.7), which under overload multiplies the load, while a 503
  carries `Retry-After` and tells proxies and load balancers to back off. The connection and its
  other streams go on.
- WebSocket (either protocol): the handshake is denied with the same 503 (the ASGI denial
  response, `websocket.http.response.*`).

Lifespan calls are never counted. With a limit of 0 the app is not wrapped at all.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..asgi.headers import plain_response

logger = logging.getLogger("plexicorn.error")

CONCURRENCY = "concurrency"  # the Counters.limit_hits key
# Seconds a refused client is asked to wait: overload is usually a burst; a longer wait would
# idle a server that has recovered.
RETRY_AFTER = b"1"


class Admission:
    __slots__ = ("limit", "in_flight", "_hit")

    def __init__(self, limit: int, hit: Callable[[str], None]) -> None:
        self.limit = limit  # 0: no limit
        self.in_flight = 0  # ASGI calls (HTTP and WebSocket) running now
        self._hit = hit

    def gate(self, app: Any) -> Any:
        """`app`, counted against the limit (the app itself when there is none)."""
        if not self.limit:
            return app

        async def gated(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await app(scope, receive, send)
                return
            if self.in_flight >= self.limit:
                await self._refuse(scope, send)
                return
            self.in_flight += 1
            try:
                await app(scope, receive, send)
            finally:
                self.in_flight -= 1

        return gated

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        self._hit(CONCURRENCY)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s refused with 503: %d requests in flight (--limit-concurrency)",
                         scope["path"], self.in_flight)
        # The exchange completes the head (date, HSTS) as for any response.
        extra = [(b"retry-after", RETRY_AFTER)]
        if _has_body(scope["headers"]):
            # HTTP/1.1 closes the connection rather than read a body nobody wants: say so
            # (HTTP/2 drops the field; its stream is reset with NO_ERROR instead).
            extra.append((b"connection", b"close"))
        head, body = plain_response(503, f"more than {self.limit} requests in flight, retry later",
                                    date=None, extra=extra)
        prefix = "websocket.http" if scope["type"] == "websocket" else "http"
        await send({"type": f"{prefix}.response.start", "status": 503, "headers": head})
        await send({"type": f"{prefix}.response.body", "body": body})


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any((name == b"content-length" and value != b"0") or name == b"transfer-encoding"
               for name, value in headers)
