"""The ASGI side of one HTTP request, shared by HTTP/1.1 and HTTP/2.

`HTTPCycle` is the receive/send pair handed to the application. It owns the
request-body buffer and the response state machine; the protocol subclasses only
say how a response start, a body chunk or an abort reaches the wire, and how
consumed request bytes re-open the peer's flow (reading or WINDOW_UPDATE).

A module longer than 400 lines: the request body's buffer, its limits (`BodyLimits`: size and
stall timeout, shared by both protocols) and the response state machine all turn on the one
cycle's state, which splitting would expose across modules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable, ClassVar, Iterable, NamedTuple, NoReturn

from ..runtime.states import NamedState
from .headers import plain_response, response_head
from .scope import PATHSEND
from .waiters import Waiters

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


logger = logging.getLogger("plexicorn.error")

INTERNAL_ERROR_BODY = b"Internal Server Error"

# Bytes read per step when a file is the response body (pathsend, the sendfile fallback).
FILE_CHUNK = 64 * 1024
ZEROCOPYSEND = "http.response.zerocopysend"


# Counters.limit_hits keys of the limits a request body can hit.
BODY_SIZE = "request body size"
BODY_TIMEOUT = "body timeout"


class BodyLimits(NamedTuple):
    """What one request body may cost (ServerContext.body_limits), for every HTTP exchange.

    A request over either limit ends as if its client had left (the app's `receive()` returns
    `http.disconnect`, its sends raise ClientDisconnected), with 413 or 408 if nothing was sent
    yet (HTTP/1.1 then closes; HTTP/2 resets the stream with NO_ERROR once the answer is out),
    else the response cut short (HTTP/1.1: close; HTTP/2: RST_STREAM(CANCEL))."""

    max_size: int  # body bytes (--max-request-body-size); 0: no limit
    timeout: float  # seconds between two pieces while the app waits in receive(); 0: none
    call_later: Callable[..., Any]  # the Runtime's
    hit: Callable[[str], None]  # counts a limit hit (Counters.limit_hit)


class ClientDisconnected(OSError):
    """Raised by `send()` once the client has gone away (ASGI spec 2.4)."""


class ASGIMessageError(RuntimeError):
    """The application sent a message that is not valid at this point of the exchange."""


class ResponseState(NamedState):
    __slots__ = ()
    WAITING_START: ClassVar[ResponseState]
    STREAMING: ClassVar[ResponseState]
    TRAILERS: ClassVar[ResponseState]  # body done, trailers promised at start
    COMPLETE: ClassVar[ResponseState]


ResponseState.define(WAITING_START="waiting for http.response.start", STREAMING="sending the body",
                     TRAILERS="waiting for http.response.trailers", COMPLETE="complete")


class HTTPCycle:
    """One request/response exchange; protocols subclass it and implement the `_wire_*` hooks."""

    __slots__ = ("scope", "client", "method", "head", "extra_headers", "response_state", "status", "bytes_sent", "disconnected", "_body",
                 "buffered", "_body_complete", "_final_body_delivered", "_receivers", "expect_trailers",
                 "_trailers", "_head", "limits", "_received", "_body_timer", "started")

    def __init__(self, scope: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None,
                 method: str | None = None) -> None:
        self.scope = scope
        # For the access log: the client as the scope was built (forwarding headers applied),
        # whatever the app does to its scope.
        self.client: tuple[str, int] | None = scope["client"]
        # The request's method; a websocket scope has none (GET over HTTP/1.1, CONNECT over HTTP/2).
        self.method: str = scope["method"] if method is None else method
        self.head = self.method == "HEAD"  # no body goes out; the access log counts none
        # Server-wide response headers (HSTS); an app's own header of the same name wins.
        self.extra_headers = extra_headers
        self.response_state = ResponseState.WAITING_START
        self.status = 0
        self.bytes_sent = 0
        self.disconnected = False
        # Request body pieces not yet read: receive() takes them all at once (a list costs less
        # to make than a deque, and most requests have no body).
        self._body: list[bytes] = []
        self.buffered = 0  # request body bytes received and not yet read by the app (read only)
        self._body_complete = False
        self._final_body_delivered = False
        self._receivers: Waiters | None = None  # made by the first receive() that waits
        self.expect_trailers = False  # http.response.start said "trailers": True
        self._trailers: list[tuple[bytes, bytes]] = []  # collected until more_trailers is False
        self._head: list[tuple[bytes, bytes]] = []  # the response's fields, once started
        self.limits: BodyLimits | None = None  # set by the protocol for requests (not WebSockets)
        self._received = 0  # request body bytes received
        self._body_timer: Any = None  # the --body-timeout timer while the app waits for body
        self.started = time.monotonic()  # the access log's duration counts from here

    # -- request side, fed by the protocol ------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        if self.disconnected:
            return  # nobody will read it
        limits = self.limits
        if limits is not None and limits.max_size:
            self._received += len(data)
            if self._received > limits.max_size:
                self._end_request(413, BODY_SIZE, f"the request body is larger than {limits.max_size} bytes")
                return
        self._body.append(data)
        self.buffered += len(data)
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
    def body_complete(self) -> bool:
        return self._body_complete

    def _wake_receiver(self) -> None:
        if self._receivers is not None:
            self._receivers.wake()

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected or self.response_state is ResponseState.COMPLETE:
                return {"type": "http.disconnect"}
            if self._body:
                data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self.buffered = 0
                self._wire_consumed(len(data))
                more = not self._body_complete
                self._final_body_delivered = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self._body_complete and not self._final_body_delivered:
                self._final_body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self._receivers is None:
                self._receivers = Waiters()
            if not self._body_complete:
                self._wire_receive_waiting()
                limits = self.limits
                if limits is not None and limits.timeout and self._body_timer is None:
                    self._body_timer = limits.call_later(limits.timeout, self._body_stalled)
            try:
                await self._receivers.wait(asyncio.get_running_loop().create_future())
            finally:
                # The timer runs only while someone waits (a cancelled is_disconnected() probe
                # must not leave it running while the app does other work).
                if self._body_timer is not None and not self._receivers.waiting:
                    self._body_timer.cancel()
                    self._body_timer = None

    # -- request limits (BodyLimits) ------------------------------------------------------
    def _body_stalled(self) -> None:
        self._body_timer = None
        receivers = self._receivers
        if self._body or self._body_complete or self.disconnected or receivers is None or not receivers.waiting:
            return  # the body moved on in the same loop turn, or nobody waits any more
        limits = self.limits
        assert limits is not None
        if self._wire_reading_held(limits.timeout):
            # The body is not coming because we stopped reading (the client leaves our
            # response unread) at some time since the timer started: the client did not have
            # the whole period to send in, wait again.
            self._body_timer = limits.call_later(limits.timeout, self._body_stalled)
            return
        self._end_request(408, BODY_TIMEOUT, f"no request body for {limits.timeout:g} s")

    def _end_request(self, status: int, limit: str, reason: str) -> None:
        """The request broke a limit: answer `status` if nothing was sent yet, else cut the
        response short; the app sees a client that left."""
        assert self.limits is not None
        self.limits.hit(limit)
        if logger.isEnabledFor(logging.DEBUG):
            client = self.scope.get("client")
            logger.debug("request %s %s from %s ended (%d): %s", self.method, self.scope["path"],
                         f"{client[0]}:{client[1]}" if client else "-", status, reason)
        self._body.clear()
        self.buffered = 0
        # The app's next send() meets `disconnected` and raises ClientDisconnected, as for a
        # client that left, never an ASGI error. A response the app started stays STREAMING: it
        # is cut short, and logged as a reset when the protocol sees the exchange end.
        answered = self.response_state is ResponseState.WAITING_START
        if answered:
            # The server's 4xx is the response, logged once when it is out: not a reset too.
            self.response_state = ResponseState.COMPLETE
            head, body = plain_response(status, reason, date=self._wire_date(), defaults=self.extra_headers or (),
                                        extra=[(b"connection", b"close")])  # HTTP/2 drops it
            self.status = status
            self.bytes_sent = 0 if self.head else len(body)
            self._wire_start(status, head)
            self._wire_body_nowait(body, False)
        self._wire_request_ended(answered)
        self.disconnect()

    # -- response side, called by the application -----------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        state = self.response_state
        # The kinds by how often they come: a body on every response, a start once; the rest rarely.
        if kind == "http.response.body" or kind == PATHSEND or kind == ZEROCOPYSEND:
            if state is not ResponseState.STREAMING:
                self._refuse_body(kind, state)
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            if self.disconnected:
                if not body and not more_body and not self.expect_trailers and self._body_written():
                    # The client had the whole response and left before the app's closing empty
                    # message: the response is complete, not cut short (and is logged as such).
                    self._body_ended()
                    self._wire_completed_unsent()
                    return
                raise ClientDisconnected("client disconnected")
            if body.__class__ is not bytes:
                # Checked before the state moves on: a body that is not bytes is the app's error,
                # which fail() answers (the response is cut short) like any other.
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise ASGIMessageError(
                        f"'http.response.body' body must be a byte string, not {type(body).__name__}")
                body = bytes(body)  # its length in bytes is what goes out and is logged
            if kind != "http.response.body":
                if kind == PATHSEND:
                    await self._send_path(message.get("path"))
                else:
                    await self._send_zerocopy(message)
                return
            if not more_body:
                self._body_ended()
            if not self.head:
                self.bytes_sent += len(body)
            if more_body or self.expect_trailers or self.final_body_waits:
                await self._wire_body(body, more_body or self.expect_trailers)
            else:
                self._wire_body_nowait(body, False)  # no coroutine to make and await
            return
        if kind == "http.response.start" and state is ResponseState.WAITING_START:
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise ASGIMessageError(f"invalid response status {status!r}")
            if 100 <= status < 200:
                raise ASGIMessageError(f"status {status} is informational; send a final status")
            self.status = status
            self._head = self._complete_head(_header_list(message.get("headers", ())))
            self._wire_start(status, self._head)
            self.expect_trailers = bool(message.get("trailers", False))
            self.response_state = ResponseState.STREAMING
            return
        if kind == "http.response.early_hint":
            # Only meaningful before the final response; afterwards (or gone) it is ignored.
            if state is ResponseState.WAITING_START and not self.disconnected:
                links = message.get("links", ())
                if not all(isinstance(link, bytes) and not link.translate(None, FIELD_VALUE_CHARS)
                           for link in links):
                    raise ASGIMessageError(f"invalid early hint links {links!r}")
                if links:
                    self._wire_early_hint(list(links))
            return
        if kind == "http.response.push":
            path = message.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ASGIMessageError(f"invalid push path {path!r}")
            headers = _header_list(message.get("headers", ()))
            if state is not ResponseState.COMPLETE and not self.disconnected:
                self._wire_push(path, headers)
            return
        if kind == "http.response.trailers":
            await self._send_trailers(message)
            return
        if state is ResponseState.WAITING_START:
            raise ASGIMessageError(f"expected 'http.response.start' first, got {kind!r}")
        if self.disconnected:  # e.g. the start of a response a limit has answered already
            raise ClientDisconnected("client disconnected")
        raise ASGIMessageError(f"unexpected {kind!r} while {state.value}")

    def _refuse_body(self, kind: str, state: ResponseState) -> NoReturn:
        """Why a body message cannot be sent while the response is in `state` (not STREAMING)."""
        if state is ResponseState.WAITING_START:
            raise ASGIMessageError(f"expected 'http.response.start' first, got {kind!r}")
        if state is ResponseState.COMPLETE:
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            raise ASGIMessageError("'http.response.body' after the response was complete")
        raise ASGIMessageError("'http.response.body' after the final body; expected 'http.response.trailers'")

    async def _send_trailers(self, message: dict[str, Any]) -> None:
        state = self.response_state
        if not self.expect_trailers or state is ResponseState.WAITING_START or state is ResponseState.COMPLETE:
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            raise ASGIMessageError(f"unexpected 'http.response.trailers' while {state.value}"
                                   + ("" if self.expect_trailers else " (the start did not set 'trailers')"))
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        # Like Hypercorn, trailers while the body is still open end the body.
        self.response_state = ResponseState.TRAILERS
        self._trailers += _header_list(message.get("headers", ()))
        if message.get("more_trailers", False):
            return
        self.response_state = ResponseState.COMPLETE
        self._wake_receiver()
        self._wire_trailers(self._trailers)

    async def _send_path(self, path: Any) -> None:
        """The file at `path` is the rest of the body, sent through the ordinary body path so
        that the connection's flow control and bounded buffers apply to it."""
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ASGIMessageError(f"'http.response.pathsend' needs an absolute path, got {path!r}")
        loop = asyncio.get_running_loop()
        # File system calls may block (cold cache, network file system): off the event loop.
        file = await loop.run_in_executor(None, open, path, "rb")
        try:
            # HEAD: the file must still exist (else the app's error shows), its bytes are not sent.
            while not self.head:
                chunk = await loop.run_in_executor(None, file.read, FILE_CHUNK)
                if not chunk:
                    break
                if self.disconnected:
                    raise ClientDisconnected("client disconnected")
                self.bytes_sent += len(chunk)
                await self._wire_body(chunk, True)
        finally:
            file.close()
        await self._end_body()

    async def _send_zerocopy(self, message: dict[str, Any]) -> None:
        offset = message.get("offset")
        count = message.get("count")
        for name, value in (("offset", offset), ("count", count)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ASGIMessageError(f"'http.response.zerocopysend' {name} must be a non-negative int")
        self.bytes_sent += await self._wire_zerocopy(message["file"], offset, count)
        if not message.get("more_body", False):
            await self._end_body()

    async def _end_body(self) -> None:
        """The body is over after a file: as an `http.response.body` without more_body."""
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        self._body_ended()
        await self._wire_body(b"", self.expect_trailers)

    def _complete_head(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return response_head(headers, date=self._wire_date(), defaults=self.extra_headers or ())

    def _body_written(self) -> bool:
        """Whether the client can tell it has the whole body: none is due, or the declared length is sent."""
        if self.head or self.status in (204, 304):
            return True
        length = next((value for name, value in self._head if name == b"content-length"), None)
        return length is not None and length.isdigit() and int(length) == self.bytes_sent

    def _body_ended(self) -> None:
        if self.expect_trailers:
            # The response ends with the trailers: the wire stays open for them.
            self.response_state = ResponseState.TRAILERS
        else:
            self.response_state = ResponseState.COMPLETE
            self._wake_receiver()

    def server_shutdown(self) -> None:
        """The server is shutting down: a response ends by itself, so nothing to do here."""

    def fail(self) -> None:
        """The application raised or returned early: 500 if possible, else abort the exchange."""
        if self.disconnected:
            return
        if self.response_state is ResponseState.WAITING_START:
            self.status = 500
            self.response_state = ResponseState.COMPLETE
            self.bytes_sent = 0 if self.head else len(INTERNAL_ERROR_BODY)
            # The server's own answer carries the same fields as the app's would (date, HSTS).
            self._wire_start(500, self._complete_head([(b"content-type", b"text/plain; charset=utf-8"),
                                                       (b"content-length", b"%d" % len(INTERNAL_ERROR_BODY))]))
            self._wire_body_nowait(INTERNAL_ERROR_BODY, False)
        elif self.response_state in (ResponseState.STREAMING, ResponseState.TRAILERS):
            self.response_state = ResponseState.COMPLETE
            self._wire_abort()
            self._wire_aborted()

    # -- hooks for the protocols ---------------------------------------------------------
    def _wire_date(self) -> bytes | None:
        """The `date` value for the response head (asgi/headers.py); None: `_wire_start` adds its own."""
        return None

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the response head: `headers` is complete (date, connection fields added)."""
        raise NotImplementedError

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        """Queue a body chunk; return once it fits the connection's bounded send buffer."""
        raise NotImplementedError

    # Whether the last body chunk also waits in `_wire_body` (HTTP/2: for its stream's share of
    # the send buffer); else `send` queues it with `_wire_body_nowait` and returns at once.
    final_body_waits = True

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        raise NotImplementedError

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """End the response with these trailer fields (http.response.trailers extension)."""
        raise NotImplementedError

    def _wire_early_hint(self, links: list[bytes]) -> None:
        """Send a 103 Early Hints with one link field per entry; protocols that cannot, ignore it."""

    def _wire_push(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        """Push a GET of `path` (HTTP/2 server push); protocols that cannot, ignore it."""

    async def _wire_zerocopy(self, file: Any, offset: int | None, count: int | None) -> int:
        """Send `count` bytes (None: to the end) of `file` from `offset` (None: its position) as
        body with the OS's sendfile; return how many. Only where the protocol advertises it."""
        raise ASGIMessageError("'http.response.zerocopysend' is not available on this connection")

    def _wire_abort(self) -> None:
        """End a started response abnormally (reset the stream / close the connection)."""
        raise NotImplementedError

    def _wire_aborted(self) -> None:
        """The app failed after starting its response, now cut short: its one access-log line
        (event `aborted`, the status as sent), as the exchange will not complete."""

    def _wire_consumed(self, size: int) -> None:
        """The app consumed `size` request bytes: let the peer send more."""

    def _wire_receive_waiting(self) -> None:
        """The app waits for request body that has not arrived (e.g. 100-continue)."""

    def _wire_disconnected(self) -> None:
        """Wake anything the protocol has blocked on this exchange."""

    def _wire_request_ended(self, answered: bool) -> None:
        """A limit ended the request: `answered`, the 4xx is queued (the exchange is complete
        once it is out); else a response the app started must be cut short."""
        raise NotImplementedError

    def _wire_reading_held(self, within: float) -> bool:
        """Whether the protocol stopped reading this request's input itself at some moment of
        the last `within` seconds."""
        return False

    def _wire_completed_unsent(self) -> None:
        """The client left with the whole response before the app's final empty message:
        count the response as complete (its access-log line), though nothing more is sent."""


# RFC 9110 token characters; bytes.translate(None, chars) leaves only what is not allowed.
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Anything but CR, LF and NUL (RFC 9110 §5.5, RFC 9113 §8.2.1).
FIELD_VALUE_CHARS = bytes(byte for byte in range(256) if byte not in (0, 10, 13))


# Response fields found valid, each as `_header_list` returns it (name lower-case): an app sends
# the same few fields on every response, and one lookup costs less than the checks. Bounded
# (emptied when full, so that a run of one-off values cannot keep the common ones out for good);
# long fields are not kept.
_CHECKED_FIELDS: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_CHECKED_FIELDS_LIMIT = 1024
_CHECKED_FIELD_SIZE_LIMIT = 256  # name and value


def _header_list(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    result = []
    cache = _CHECKED_FIELDS
    for pair in headers:
        name, value = pair
        # Only a tuple of exact bytes is looked up or kept: a memoryview equals, and hashes as,
        # the bytes it shows, and must be refused as before.
        exact = pair.__class__ is tuple and name.__class__ is bytes and value.__class__ is bytes
        if exact:
            checked = cache.get(pair)
            if checked is not None:
                result.append(checked)
                continue
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise ASGIMessageError(f"response header {pair!r} must be a pair of byte strings")
        # h11 checks this for HTTP/1.1, h2 does not: without it an app's CR/LF reaches HTTP/2
        # peers (and proxies that downgrade), and a name h2 refuses leaves the stream hanging.
        # A value may hold any byte but CR, LF and NUL (FIELD_VALUE_CHARS), looked for as ints (a
        # memchr; `b"\r" in value` would first fail, and format, a TypeError inside CPython).
        if not name or name.translate(None, TOKEN_CHARS):
            raise ASGIMessageError(f"invalid response header {pair!r}")
        if 13 in value or 10 in value or 0 in value:
            raise ASGIMessageError(f"invalid response header {pair!r}")
        checked = (name.lower(), value)
        result.append(checked)
        if exact and len(name) + len(value) <= _CHECKED_FIELD_SIZE_LIMIT:
            if len(cache) >= _CHECKED_FIELDS_LIMIT:
                cache.clear()
            cache[pair] = checked
    return result


async def run_http_app(app: ASGIApp, cycle: HTTPCycle,
                       on_done: Callable[[HTTPCycle], None] | None = None) -> None:
    """Run one ASGI call; whatever the app does, the exchange ends and the server carries on."""
    try:
        await app(cycle.scope, cycle.receive, cycle.send)
    except ClientDisconnected:
        if logger.isEnabledFor(logging.DEBUG):  # logging caches the answer: no call made at info
            logger.debug("client disconnected while the app was sending")
    except asyncio.CancelledError:
        cycle.fail()
        raise
    except Exception:
        # Adapted apps (WSGI) name their own interface, so the log says what the user wrote.
        logger.exception("Exception in %s application (%s %s)", getattr(app, "interface_name", "ASGI"),
                         cycle.method, cycle.scope["path"])
        cycle.fail()
    else:
        state = cycle.response_state
        if state is not ResponseState.COMPLETE and not cycle.disconnected:  # else fail() has nothing to do
            if state is ResponseState.WAITING_START:
                logger.error("ASGI app returned without starting a response (%s %s)",
                             cycle.method, cycle.scope["path"])
            else:
                logger.error("ASGI app returned before completing its response (%s %s)",
                             cycle.method, cycle.scope["path"])
            cycle.fail()
    finally:
        if on_done is not None:
            on_done(cycle)
