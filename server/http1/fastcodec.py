"""The fast HTTP/1.1 codec (codec.HTTP1Codec): llhttp through httptools (the `httptools` extra).

It gives the events and the bytes `h11codec.H11Codec` gives, for plain requests. llhttp parses
what it is fed in one call (pipelined requests too), so its events are queued and handed out one
request at a time, as h11 does. Whatever is not a plain request is handed to the reference codec
with the raw bytes from that request's first byte, and the connection stays on h11 from then
on (`SWITCH`): a request llhttp refuses or our checks below would have h11 refuse (so a bad
head gets h11's answer, word for word), one that is too large for its head, an `Upgrade` or
a `CONNECT`. Only input llhttp refuses inside a body, or a head whose bytes were not kept (more
than `_RAW_LIMIT` of a pipelined run), is answered here, with the statuses h11 would give (in
a chunked body llhttp refuses a few forms h11 accepts: the README lists them).

The response side writes what h11 writes: the same status line, the fields in the same order,
h11's framing rules (`transfer-encoding: chunked` for a body of unknown length to an HTTP/1.1
client, `connection: close` for HTTP/1.0 or a client that asked for it) and its errors for
bodies that do not match their content-length. Fields that are not plain (a field our quick
checks cannot pass, a repeated or listed content-length) are checked by h11's public
`h11.Response`, which raises as h11 would.

A module longer than 400 lines: the request side and the response side share the exchange's
state (method, version, keep-alive, 100-continue), which h11 keeps in one object too.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import h11
import httptools

from ..asgi.http import TOKEN_CHARS
from .codec import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    SWITCH,
    BadRequest,
    Event,
    HTTP1Codec,
    Request,
    ResponseError,
)

# What h11 allows in a field value (no NUL, CR, LF, VT, FF), as a translate() table.
_VALUE_CHARS = bytes(byte for byte in range(256) if byte not in b"\x00\n\r\x0b\x0c")
_WHITESPACE = b" \t"
# Response fields the one-pass path leaves to the general one (content-length only when plain).
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection", b"host"))
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
# Raw input kept so that a request can be handed to h11 from its first byte.
_RAW_LIMIT = 256 * 1024

# Our side of the exchange, as h11 names it.
_IDLE, _SEND_BODY, _DONE, _MUST_CLOSE, _ERROR = range(5)
# Body writers.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = range(3)


class _Refer(Exception):
    """The head is not plain: h11 decides."""


class HttptoolsCodec:
    __slots__ = (
        "_parser", "_reference", "_max_head_size", "_events", "_heads", "_queued", "_paused",
        "_in_message", "_in_body", "_upgrading", "_head_size", "_began", "_body_seen", "_raw", "_raw_size", "_completed",
        "_successor", "_closed_input", "_after_close", "_url", "_headers",
        "_method", "_version", "_keep_alive", "_expect", "_their_done", "_our_state", "_writer", "_remaining",
    )

    def __init__(self, max_head_size: int, reference: Callable[..., HTTP1Codec]) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._reference = reference
        self._max_head_size = max_head_size
        self._events: deque[Any] = deque()
        self._heads: deque[tuple[bool, bool, int]] = deque()  # (keep-alive, expects 100, size) per queued Request
        self._queued = 0  # bytes (about) in queued events
        self._paused = False  # a request was read whole: nothing more until start_next_cycle
        self._in_message = False  # llhttp is inside a request
        self._in_body = False  # ... past its head
        self._upgrading = False  # the request is an Upgrade or a CONNECT: h11's
        self._head_size = 0
        self._began = False  # a request began in the chunk being parsed
        self._body_seen = False  # ... or a body was read in it
        self._raw: list[bytes] | None = []  # input since a request began at a chunk's start
        self._raw_size = 0
        self._completed = 0  # requests llhttp completed since the raw input's start
        self._successor: HTTP1Codec | None = None
        self._closed_input = False  # an error or the end of input is queued: nothing more parsed
        self._after_close = False  # bytes came after a last request: refused without pausing
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # The exchange in flight (the request last handed out).
        self._method: bytes | None = None
        self._version: bytes | None = None
        self._keep_alive = True
        self._expect = False
        self._their_done = False
        self._our_state = _IDLE
        self._writer = _LENGTH
        self._remaining = 0

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = self._began = True
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            return  # a chunked body's trailer section: dropped, as the reference codec does
        # h11 drops trailing whitespace from values (llhttp keeps it); rstrip returns the
        # same object when there is none.
        self._headers.append((name.lower(), value.rstrip(_WHITESPACE)))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser.should_upgrade():
            self._upgrading = self._in_body = True  # handed to h11 when llhttp stops behind the head
            return
        target = self._url
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise _Refer
        # llhttp refuses every byte in a target, a field name or a field value that h11 refuses
        # (tests/test_http1_codecs.py checks all 256), so those are not checked again here.
        headers = self._headers
        hosts = 0
        keep_alive = version == b"1.1"
        expect = False
        size = len(target) + 16
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"host":
                hosts += 1
            elif name == b"connection":
                if b"close" in _tokens(value):
                    keep_alive = False
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked" or version != b"1.1":
                    raise _Refer  # h11 takes exactly one `chunked` (else 501), from an HTTP/1.1 client
            elif name == b"expect":
                # h11 reads every Expect field as one list.
                expect = expect or (version == b"1.1" and b"100-continue" in _tokens(value))
        if hosts != 1 and (hosts or version == b"1.1"):
            raise _Refer  # h11: exactly one Host in HTTP/1.1, at most one in 1.0
        self._events.append(Request(parser.get_method(), target, version, headers))
        self._heads.append((keep_alive, expect, size))
        self._queued += size
        self._head_size = 0
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self._events.append(body)
        self._queued += len(body)

    def on_message_complete(self) -> None:
        self._in_message = self._in_body = False
        if self._upgrading:
            return
        self._completed += 1
        self._events.append(END_OF_MESSAGE)
        self._queued += 1

    # -- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._successor is not None:
            self._successor.receive_data(data)  # handed over: the rest is h11's
            return
        if self._closed_input:
            return
        if not data:
            self._end_of_input()
            return
        raw = self._raw
        if raw is not None:
            raw.append(data)
            self._raw_size += len(data)
            if self._raw_size > _RAW_LIMIT:
                self._raw = None  # too much to keep: a bad head now is answered here
        self._began = self._body_seen = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._raw is None:
                # Behind more than _RAW_LIMIT of pipelined input: its bytes are gone, refuse it.
                self._queue_last(BadRequest(400, "malformed request"))
            else:
                self._hand_over()
            return
        except httptools.HttpParserError as exc:
            self._refused(exc)
            return
        if not self._in_message:
            # At a request boundary at the end of the chunk: the next request starts a new run.
            self._raw = []
            self._raw_size = 0
            self._completed = 0
        elif not self._in_body:
            if self._began:
                # The head began in this chunk, behind the requests completed in it: count from
                # the last blank line (a head being read holds none), not the whole chunk. That
                # is its exact start unless a body ended here (a body may hold any bytes): then
                # an excess goes to h11 to judge from the raw bytes, or, with those dropped,
                # only the chunks after this one are counted.
                end = data.rfind(b"\r\n\r\n")
                size = len(data) - (end + 4 if end >= 0 else 0)
                uncertain = self._body_seen and self._raw is None and size > self._max_head_size
                self._head_size = 0 if uncertain else size
            else:
                self._head_size += len(data)
            if self._head_size > self._max_head_size:
                self._refused(None, 431, "request header block too large")

    def _refused(self, exc: Exception | None, status: int = 400, reason: str = "") -> None:
        if exc is not None and str(exc).lower().startswith("data after"):
            # Bytes behind a request that said `Connection: close` (or HTTP/1.0): h11 refuses
            # them at once, even before the response, rather than pausing.
            self._after_close = True
            self._queue_last(BadRequest(400, "malformed request"))
            return
        if not self._in_body and self._raw is not None:
            self._hand_over()  # the head is h11's to judge, from its first byte
            return
        if not reason:
            message = str(exc).lower()
            reason = ("a chunk size line is malformed" if "chunk size" in message
                      else "a chunk does not end with CRLF" if "chunk" in message
                      else "malformed request")
        self._queue_last(BadRequest(status, reason))

    def _end_of_input(self) -> None:
        if not self._in_message:
            self._queue_last(CONNECTION_CLOSED)
        elif not self._in_body and self._raw is not None:
            self._hand_over()
            self._successor.receive_data(b"")  # type: ignore[union-attr]
        else:
            self._queue_last(BadRequest(400, "the connection ended inside the request body" if self._in_body
                                        else "the connection ended inside a request"))

    def _queue_last(self, event: Any) -> None:
        self._events.append(event)
        self._queued += 1
        self._closed_input = True

    def _hand_over(self) -> None:
        """From the request being parsed on, the connection is h11's: feed it the raw bytes
        from that request's first byte (after the requests completed before it here)."""
        raw = b"".join(self._raw or ())
        for _ in range(self._completed):
            raw = _skip_request(raw, self._max_head_size)
        successor = self._reference(self._max_head_size)
        successor.receive_data(raw)
        self._successor = successor
        self._raw = None
        self._queue_last(SWITCH)

    def next_event(self) -> Event:
        if self._paused and not (self._after_close and self._events and self._events[0].__class__ is BadRequest):
            # Bytes behind a last request are refused at once, as h11 does, but only once the
            # requests before them (answered in turn) are handed out.
            return PAUSED
        events = self._events
        if not events:
            return NEED_DATA
        event = events.popleft()
        kind = event.__class__
        if kind is bytes:
            self._queued -= len(event)
            self._expect = False
            return event  # type: ignore[no-any-return]
        if kind is Request:
            self._keep_alive, self._expect, size = self._heads.popleft()
            self._method = event.method
            self._version = event.http_version
            self._their_done = False
            self._queued -= size
            return event  # type: ignore[no-any-return]
        self._queued -= 1
        if event is END_OF_MESSAGE:
            self._paused = True
            self._their_done = True
            self._expect = False
            return event  # type: ignore[no-any-return]
        if kind is BadRequest:
            events.appendleft(event)  # h11 raises again if asked again
            self._queued += 1
            raise event
        return event  # type: ignore[no-any-return]

    def buffered_input(self) -> int:
        return self._queued + self._in_message

    def trailing_data(self) -> bytes:
        return b""  # after an Upgrade the connection is the reference codec's

    @property
    def request_complete(self) -> bool:
        return self._their_done

    @property
    def waiting_for_100_continue(self) -> bool:
        return self._expect

    def successor(self) -> HTTP1Codec:
        return self._successor or self

    # -- output -----------------------------------------------------------------------------
    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        if self._our_state is not _IDLE:
            raise ResponseError("a response was sent already")
        self._expect = False  # a final response answers Expect: 100-continue too (no 100 after it)
        status = int(status)  # an IntEnum's str() is its name
        if self._keep_alive and status != 204 and status != 304:
            # The common case in one pass: plain fields, at most one content-length, no framing
            # or connection field of the app's, a keep-alive request. Names are tokens already
            # (an app's passed asgi/http.py's _header_list, the server's own are checked by Config).
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
            length: bytes | None = None
            for name, value in headers:
                if (value.translate(None, _VALUE_CHARS) or not name.islower()
                        or (value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE))):
                    break
                if name in _FRAMING:
                    if name != b"content-length" or length is not None or not value.isdigit() or len(value) > 20:
                        break
                    length = value
                lines.append(b"%s: %s\r\n" % (name, value))
            else:
                if length is not None:
                    self._writer, self._remaining = _LENGTH, int(length)
                elif self._version == b"1.1":
                    lines.append(b"Transfer-Encoding: chunked\r\n")
                    self._writer = _CHUNKED
                else:
                    return self._checked_response(status, headers, reason)
                if self._method == b"HEAD":
                    self._writer, self._remaining = _LENGTH, 0
                lines.append(b"\r\n")
                self._our_state = _SEND_BODY
                return b"".join(lines)
        return self._checked_response(status, headers, reason)

    def _checked_response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        fields = _fields(headers, status, reason)
        method = self._method
        version = self._version
        length: bytes | None = None
        chunked = False
        close_asked = False
        for _, name, value in fields:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and b"close" in _tokens(value):
                close_asked = True
        empty = status in (204, 304) or (method == b"CONNECT" and 200 <= status < 300)
        need_close = False
        if not empty and (chunked or length is None):
            # A body of unknown length (h11's cleanup, with HEAD answered as GET would be).
            fields = [field for field in fields if field[1] != b"content-length" and field[1] != b"transfer-encoding"]
            length = None
            if version is None or version < b"1.1":
                chunked = False
                need_close = method != b"HEAD"
            else:
                chunked = True
                fields.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
        if not self._keep_alive or need_close:
            tokens = {token for _, name, value in fields if name == b"connection" for token in _tokens(value)}
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            fields = [field for field in fields if field[1] != b"connection"]
            fields += [(b"Connection", b"connection", token) for token in sorted(tokens)]
            close_asked = True
        if close_asked:
            self._keep_alive = False
        if empty or method == b"HEAD":
            self._writer, self._remaining = _LENGTH, 0
        elif chunked:
            self._writer = _CHUNKED
        elif length is not None:
            self._writer, self._remaining = _LENGTH, int(length)
        else:
            self._writer = _UNTIL_CLOSE
        self._our_state = _SEND_BODY
        return _head(b"HTTP/1.1 %d %s\r\n" % (status, reason), fields)

    def informational(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        if self._our_state is not _IDLE:
            raise ResponseError("a response was sent already")
        try:
            checked = h11.InformationalResponse(status_code=status, headers=headers, reason=reason)
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None
        if status == 100:
            self._expect = False
        return _head(b"HTTP/1.1 %d %s\r\n" % (status, reason),
                     [(raw, raw.lower(), value) for raw, value in checked.headers.raw_items()])

    def body(self, data: bytes) -> bytes:
        if self._our_state is not _SEND_BODY:
            raise ResponseError("no response body can be sent now")
        writer = self._writer
        if writer is _LENGTH:
            self._remaining -= len(data)
            if self._remaining < 0:
                self._our_state = _ERROR
                raise ResponseError("Too much data for declared Content-Length")
            return data
        if writer is _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        return data

    def end(self, trailers: list[tuple[bytes, bytes]]) -> bytes:
        if self._our_state is not _SEND_BODY:
            raise ResponseError("no response can end now")
        writer = self._writer
        data = b""
        if writer is _LENGTH:
            if self._remaining:
                self._our_state = _ERROR
                raise ResponseError("Too little data for declared Content-Length")
        elif writer is _CHUNKED:
            if trailers:
                try:
                    checked = h11.EndOfMessage(headers=trailers)
                except h11.LocalProtocolError as exc:
                    self._our_state = _ERROR
                    raise ResponseError(str(exc)) from None
                data = _head(b"0\r\n", [(raw, raw.lower(), value) for raw, value in checked.headers.raw_items()])
            else:
                data = b"0\r\n\r\n"
        self._our_state = _DONE if self._keep_alive else _MUST_CLOSE
        return data

    def file_framing(self, count: int) -> tuple[bytes, bytes]:
        if self._our_state is not _SEND_BODY:
            raise ResponseError("no response body can be sent now")
        writer = self._writer
        if writer is _LENGTH:
            self._remaining -= count
            if self._remaining < 0:
                self._our_state = _ERROR
                raise ResponseError("Too much data for declared Content-Length")
        elif writer is _CHUNKED and count:
            return b"%x\r\n" % count, b"\r\n"
        return b"", b""

    @property
    def can_respond(self) -> bool:
        return self._our_state is _IDLE

    @property
    def reusable(self) -> bool:
        return self._our_state is _DONE and self._their_done

    def start_next_cycle(self) -> None:
        self._our_state = _IDLE
        self._paused = False
        self._their_done = False
        self._method = self._version = None
        self._keep_alive = True


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated field value's items, lower-case (h11's get_comma_header)."""
    return [token.strip().lower() for token in value.split(b",") if token.strip()]


def _fields(headers: list[tuple[bytes, bytes]], status: int, reason: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(name as given, lower-case name, value) of a response's fields, as h11 normalises them."""
    fields = []
    seen_length = False
    for name, value in headers:
        if (name.translate(None, TOKEN_CHARS) or value.translate(None, _VALUE_CHARS) or not name.islower()
                or (value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE))
                or name == b"host" or name == b"transfer-encoding"
                or (name == b"content-length" and (seen_length or not value.isdigit() or len(value) > 20))):
            break  # not plain: h11 checks them all
        seen_length = seen_length or name == b"content-length"
        fields.append((name, name, value))
    else:
        return fields
    try:
        checked = h11.Response(status_code=status, headers=headers, reason=reason)
    except h11.LocalProtocolError as exc:
        raise ResponseError(str(exc)) from None
    items = [(raw, raw.lower(), value) for raw, value in checked.headers.raw_items()]
    # h11 writes `host` first.
    return [item for item in items if item[1] == b"host"] + [item for item in items if item[1] != b"host"]


def _head(start: bytes, fields: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join([start, *[b"%s: %s\r\n" % (raw, value) for raw, _, value in fields], b"\r\n"])


def _skip_request(raw: bytes, max_head_size: int) -> bytes:
    """`raw` after its first request (which llhttp has handled already), read with the
    connection's head limit."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
    conn.receive_data(raw)
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return raw
        if type(event) is h11.EndOfMessage:
            return conn.trailing_data[0]
        if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
            return raw
