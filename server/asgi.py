"""The ASGI side of one HTTP request, shared by HTTP/1.1 and HTTP/2.

`HTTPCycle` is the receive/send pair handed to the application. It owns the
request-body buffer and the response state machine; the protocol subclasses only
say how a response start, a body chunk or an abort reaches the wire, and how
consumed request bytes re-open the peer's flow (reading or WINDOW_UPDATE).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import unquote

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


logger = logging.getLogger("plexicorn.error")

INTERNAL_ERROR_BODY = b"Internal Server Error"


class ClientDisconnected(OSError):
    """Raised by `send()` once the client has gone away (ASGI spec 2.4)."""


class ASGIMessageError(RuntimeError):
    """The application sent a message that is not valid at this point of the exchange."""


class ResponseState(enum.Enum):
    WAITING_START = "waiting for http.response.start"
    STREAMING = "sending the body"
    COMPLETE = "complete"


def build_http_scope(*, http_version: str, method: str, scheme: str, target: bytes,
                     headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None,
                     server: tuple[str, int | None] | None, root_path: str,
                     state: dict[str, Any] | None, extensions: dict[str, Any]) -> dict[str, Any]:
    raw_path, _, query_string = target.partition(b"?")
    # Like uvicorn and Starlette >= 0.33 expect: `path` includes root_path, `raw_path` is as received.
    path = root_path + unquote(raw_path.decode("latin-1"))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # fresh per request: apps may mutate scopes
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": extensions,
    }
    if state is not None:
        # Each request gets a shallow copy, so a request cannot rebind keys for later requests.
        scope["state"] = state.copy()
    return scope


class HTTPCycle:
    """One request/response exchange; protocols subclass it and implement the `_wire_*` hooks."""

    __slots__ = ("scope", "extra_headers", "response_state", "status", "bytes_sent", "disconnected", "_body",
                 "_buffered", "_body_complete", "_final_body_delivered", "_receive_waiter")

    def __init__(self, scope: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.scope = scope
        # Server-wide response headers (HSTS); an app's own header of the same name wins.
        self.extra_headers = extra_headers
        self.response_state = ResponseState.WAITING_START
        self.status = 0
        self.bytes_sent = 0
        self.disconnected = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._body_complete = False
        self._final_body_delivered = False
        self._receive_waiter: asyncio.Future[None] | None = None

    # -- request side, fed by the protocol ------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        self._wake_receiver()

    def end_body(self) -> None:
        self._body_complete = True
        self._wake_receiver()

    def disconnect(self) -> None:
        """The client went away (connection lost, stream reset)."""
        self.disconnected = True
        self._wake_receiver()
        self._wire_disconnected()

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def body_complete(self) -> bool:
        return self._body_complete

    def _wake_receiver(self) -> None:
        waiter = self._receive_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected or self.response_state is ResponseState.COMPLETE:
                return {"type": "http.disconnect"}
            if self._body:
                data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self._buffered = 0
                self._wire_consumed(len(data))
                more = not self._body_complete
                self._final_body_delivered = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self._body_complete and not self._final_body_delivered:
                self._final_body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not self._body_complete:
                self._wire_receive_waiting()
            self._receive_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._receive_waiter
            finally:
                self._receive_waiter = None

    # -- response side, called by the application -----------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.response_state is ResponseState.WAITING_START:
            if kind != "http.response.start":
                raise ASGIMessageError(f"expected 'http.response.start' first, got {kind!r}")
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise ASGIMessageError(f"invalid response status {status!r}")
            if 100 <= status < 200:
                raise ASGIMessageError(f"status {status} is informational; send a final status")
            headers = message.get("headers", ())
            self.status = status
            header_list = _header_list(headers)
            if self.extra_headers:
                present = {name for name, _ in header_list}
                header_list += [header for header in self.extra_headers if header[0] not in present]
            self._wire_start(status, header_list)
            self.response_state = ResponseState.STREAMING
            return
        if kind != "http.response.body":
            raise ASGIMessageError(
                f"unexpected {kind!r} while {self.response_state.value}")
        if self.response_state is ResponseState.COMPLETE:
            raise ASGIMessageError("'http.response.body' after the response was complete")
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if not more_body:
            self.response_state = ResponseState.COMPLETE
            self._wake_receiver()
        self.bytes_sent += len(body)
        await self._wire_body(bytes(body) if not isinstance(body, bytes) else body, more_body)

    def fail(self) -> None:
        """The application raised or returned early: 500 if possible, else abort the exchange."""
        if self.disconnected:
            return
        if self.response_state is ResponseState.WAITING_START:
            self.status = 500
            self.response_state = ResponseState.COMPLETE
            self.bytes_sent = len(INTERNAL_ERROR_BODY)
            self._wire_start(500, [(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode())])
            self._wire_body_nowait(INTERNAL_ERROR_BODY, False)
        elif self.response_state is ResponseState.STREAMING:
            self.response_state = ResponseState.COMPLETE
            self._wire_abort()

    # -- hooks for the protocols ---------------------------------------------------------
    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        """Queue a body chunk; return once it fits the connection's bounded send buffer."""
        raise NotImplementedError

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        raise NotImplementedError

    def _wire_abort(self) -> None:
        """End a started response abnormally (reset the stream / close the connection)."""
        raise NotImplementedError

    def _wire_consumed(self, size: int) -> None:
        """The app consumed `size` request bytes: let the peer send more."""

    def _wire_receive_waiting(self) -> None:
        """The app waits for request body that has not arrived (e.g. 100-continue)."""

    def _wire_disconnected(self) -> None:
        """Wake anything the protocol has blocked on this exchange."""


# RFC 9110 token characters; bytes.translate(None, chars) leaves only what is not allowed.
_FIELD_NAME_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Anything but CR, LF and NUL (RFC 9110 §5.5, RFC 9113 §8.2.1).
FIELD_VALUE_CHARS = bytes(byte for byte in range(256) if byte not in (0, 10, 13))


def _header_list(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    result = []
    for pair in headers:
        name, value = pair
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise ASGIMessageError(f"response header {pair!r} must be a pair of byte strings")
        # h11 checks this for HTTP/1.1, h2 does not: without it an app's CR/LF reaches HTTP/2
        # peers (and proxies that downgrade), and a name h2 refuses leaves the stream hanging.
        if not name or name.translate(None, _FIELD_NAME_CHARS) or value.translate(None, FIELD_VALUE_CHARS):
            raise ASGIMessageError(f"invalid response header {pair!r}")
        result.append((name.lower(), value))
    return result


async def run_http_app(app: ASGIApp, cycle: HTTPCycle,
                       on_done: Callable[[HTTPCycle], None] | None = None) -> None:
    """Run one ASGI call; whatever the app does, the exchange ends and the server carries on."""
    try:
        await app(cycle.scope, cycle.receive, cycle.send)
    except ClientDisconnected:
        logger.debug("client disconnected while the app was sending")
    except asyncio.CancelledError:
        cycle.fail()
        raise
    except Exception:
        logger.exception("Exception in ASGI application (%s %s)", cycle.scope["method"], cycle.scope["path"])
        cycle.fail()
    else:
        if cycle.response_state is ResponseState.WAITING_START and not cycle.disconnected:
            logger.error("ASGI app returned without starting a response (%s %s)",
                         cycle.scope["method"], cycle.scope["path"])
        elif cycle.response_state is ResponseState.STREAMING and not cycle.disconnected:
            logger.error("ASGI app returned before completing its response (%s %s)",
                         cycle.scope["method"], cycle.scope["path"])
        cycle.fail()
    finally:
        if on_done is not None:
            on_done(cycle)
