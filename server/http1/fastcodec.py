"""The fast HTTP/1.1 codecs' shared part (codec.HTTP1Codec): events, the exchange, the response side.

A fast codec gives the events and the bytes `h11codec.H11Codec` gives, for plain requests, with
a quicker request parser than h11's: llhttp through httptools (`llhttpcodec.HttptoolsCodec`, the
`httptools` extra) or our own pure-Python one (`pycodec.PythonCodec`). Both parse ahead what they
are fed (pipelined requests too), so their events are queued here and handed out one request at
a time, as h11 does. Whatever is not a plain request is handed to the reference codec with the
raw bytes from that request's first byte, and the connection stays on h11 from then on
(`SWITCH`): so every bad or unusual request gets h11's answer, word for word.

A parser subclass implements `receive_data` and `buffered_input` and reports what it reads
through `_queue_request` (which raises `Refer` for a head h11 must judge), `_queue_body`,
`_queue_end`, `_queue_last`, `_refuse_after_close` and `_hand_over`; nothing else here is its.

The response side writes what h11 writes: the same status line, the fields in the same order,
h11's framing rules (`transfer-encoding: chunked` for a body of unknown length to an HTTP/1.1
client, `connection: close` for HTTP/1.0 or a client that asked for it) and its errors for
bodies that do not match their content-length. Fields that are not plain (a field our quick
checks cannot pass, a repeated or listed content-length) are checked by h11's public
`h11.Response`, which raises as h11 would.

A module longer than 400 lines: the request events and the response side turn on one exchange's
state (keep-alive, 100-continue, method, version, framing), which splitting would expose.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import h11

from ..asgi.http import TOKEN_CHARS
from .codec import (
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
VALUE_CHARS = bytes(byte for byte in range(256) if byte not in b"\x00\n\r\x0b\x0c")
_WHITESPACE = b" \t"
# Response fields the one-pass path leaves to the general one (content-length only when plain).
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection", b"host"))
# Plain response fields (not _FRAMING) as written, by (name, value): an app sends the same few
# on every response, and one lookup costs less than checking and formatting each (bytes.translate
# builds a 256-byte table per call). Bounded: emptied when full, long fields not kept.
_PLAIN_LINES: dict[tuple[bytes, bytes], bytes] = {}
_PLAIN_LINES_LIMIT = 1024
# Status lines, by (status, reason); a server's statuses are few.
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_PLAIN_FIELD_SIZE_LIMIT = 256  # name and value

# Our side of the exchange, as h11 names it.
_IDLE, _SEND_BODY, _DONE, _MUST_CLOSE, _ERROR = range(5)
# Body writers.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = range(3)


class Refer(Exception):
    """The head is not plain: h11 decides."""


class _AfterClose(BadRequest):
    """Bytes behind the request that closes the connection."""


class FastCodec:
    __slots__ = (
        "_reference", "_max_head_size", "_events", "_heads", "_queued", "_paused", "_successor",
        "_closed_input", "_after_close",
        "_method", "_version", "_keep_alive", "_expect", "_their_done", "_our_state", "_writer", "_remaining",
    )

    def __init__(self, max_head_size: int, reference: Callable[..., HTTP1Codec]) -> None:
        self._reference = reference
        self._max_head_size = max_head_size
        self._events: deque[Any] = deque()
        self._heads: deque[tuple[bool, bool]] = deque()  # (keep-alive, expects 100) per queued Request
        self._queued = 0  # bytes (about) in queued events
        self._paused = False  # a request was read whole: nothing more until start_next_cycle
        self._successor: HTTP1Codec | None = None
        self._closed_input = False  # an error, a SWITCH or the end of input is queued: nothing more parsed
        self._after_close = False  # an _AfterClose is queued
        # The exchange in flight (the request last handed out).
        self._method: bytes | None = None
        self._version: bytes | None = None
        self._keep_alive = True
        self._expect = False
        self._their_done = False
        self._our_state = _IDLE
        self._writer = _LENGTH
        self._remaining = 0

    # -- what a parser reports ----------------------------------------------------------------
    def _queue_request(self, method: bytes, target: bytes, version: bytes,
                       headers: list[tuple[bytes, bytes]]) -> bool:
        """Queue a parsed head (lower-case names, values without edge whitespace) after h11's
        checks of its fields, with the facts the connection checks (codec.Request) found in the
        same pass; Refer when they would not pass, or pass differently. Returns whether the
        connection stays open after this request (h11's keep-alive rule)."""
        hosts = 0
        keep_alive = version == b"1.1"
        expect = chunked = False
        length: bytes | None = None
        size = len(method) + len(target) + 12  # as codec.Request.head_size counts it
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"host":
                hosts += 1
            elif name == b"connection":
                if b"close" in _tokens(value):
                    keep_alive = False
            elif name == b"transfer-encoding":
                if value != b"chunked" or version != b"1.1":
                    raise Refer  # h11 takes exactly one `chunked` (else 501, and it lower-cases it)
                chunked = True
            elif name == b"content-length":
                if len(value) > 20 or not value.isdigit():
                    raise Refer  # h11 merges lists, and refuses more than 20 digits
                length = value
            elif name == b"upgrade":
                raise Refer  # h11 takes any Upgrade field as a proposal to switch, even without Connection: upgrade
            elif name == b"expect":
                # h11 reads every Expect field's items together.
                expect = expect or (version == b"1.1" and b"100-continue" in _tokens(value))
        if hosts != 1 and (hosts or version == b"1.1"):
            raise Refer  # h11: exactly one Host in HTTP/1.1, at most one in 1.0
        # An Upgrade field went to h11 above (Refer).
        self._events.append(Request(method, target, version, headers, size, length, chunked, False))
        self._heads.append((keep_alive, expect))
        self._queued += size
        return keep_alive

    def _queue_body(self, data: bytes) -> None:
        self._events.append(data)
        self._queued += len(data)

    def _queue_end(self) -> None:
        self._events.append(END_OF_MESSAGE)
        self._queued += 1

    def _queue_last(self, event: Any) -> None:
        """An event after which the parser reads nothing more (an error, the end of input)."""
        self._events.append(event)
        self._queued += 1
        self._closed_input = True

    def _refuse_after_close(self) -> None:
        # Bytes behind a request that said `Connection: close` (or HTTP/1.0): h11 refuses
        # them as soon as that request is read whole, even before its response, rather than pausing.
        self._after_close = True
        self._queue_last(_AfterClose(400, "malformed request"))

    def _hand_over(self, raw: bytes) -> None:
        """From the request that starts at `raw`'s first byte on, the connection is h11's."""
        successor = self._reference(self._max_head_size)
        successor.receive_data(raw)
        self._successor = successor
        self._queue_last(SWITCH)

    # -- input ------------------------------------------------------------------------------
    def next_event(self) -> Event:
        events = self._events
        if self._paused and not (self._after_close and events[0].__class__ is _AfterClose):
            return PAUSED
        if not events:
            return NEED_DATA
        event = events.popleft()
        kind = event.__class__
        if kind is bytes:
            self._queued -= len(event)
            self._expect = False
            return event  # type: ignore[no-any-return]
        if kind is Request:
            self._keep_alive, self._expect = self._heads.popleft()
            self._method = event.method
            self._version = event.http_version
            self._their_done = False
            self._queued -= event.head_size  # type: ignore[union-attr]
            return event  # type: ignore[no-any-return]
        self._queued -= 1
        if event is END_OF_MESSAGE:
            self._paused = True
            self._their_done = True
            self._expect = False
            return event  # type: ignore[no-any-return]
        if kind is BadRequest or kind is _AfterClose:
            events.appendleft(event)  # h11 raises again if asked again
            self._queued += 1
            raise event
        return event  # type: ignore[no-any-return]

    def trailing_data(self) -> bytes:
        return b""  # after an Upgrade the connection is the reference codec's

    @property
    def request_complete(self) -> bool:
        return self._their_done

    @property
    def waiting_for_100_continue(self) -> bool:
        return self._expect

    def _handed_over_input(self) -> int:
        # Until the connection takes SWITCH (after the request in flight), input goes on to
        # h11: it counts here, or reading would never pause for it. (A parser's buffered_input
        # calls this only once there is a successor: it runs twice for every request.)
        successor = self._successor
        return 0 if successor is None else successor.buffered_input()

    def successor(self) -> HTTP1Codec:
        return self._successor or self

    # -- output -----------------------------------------------------------------------------
    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        if self._our_state is not _IDLE:
            raise ResponseError("a response was sent already")
        if status.__class__ is not int:
            status = int(status)  # an IntEnum's str() is its name
        if self._keep_alive and status != 204 and status != 304:
            # The common case in one pass: plain fields, at most one content-length, no framing
            # or connection field of the app's, a keep-alive request. Names are tokens already
            # (an app's passed asgi/http.py's _header_list, the server's own are checked by Config).
            start = _STATUS_LINES.get((status, reason))
            if start is None:
                start = b"HTTP/1.1 %d %s\r\n" % (status, reason)
                if len(_STATUS_LINES) < _PLAIN_LINES_LIMIT:
                    _STATUS_LINES[status, reason] = start
            lines = [start]
            length: bytes | None = None
            plain = _PLAIN_LINES
            for field in headers:
                line = plain.get(field)
                if line is None:
                    name, value = field
                    if name in _FRAMING:
                        # content-length, when plain: digits only (so nothing to check further).
                        if name != b"content-length" or length is not None or not value.isdigit() or len(value) > 20:
                            break
                        length = value
                        lines += (b"content-length: ", value, b"\r\n")  # joined below
                        continue
                    if (value.translate(None, VALUE_CHARS) or not name.islower()
                            or (value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE))):
                        break
                    line = b"%s: %s\r\n" % (name, value)
                    if (len(name) + len(value) <= _PLAIN_FIELD_SIZE_LIMIT and name.__class__ is bytes
                            and value.__class__ is bytes):
                        if len(plain) >= _PLAIN_LINES_LIMIT:
                            plain.clear()
                        plain[field] = line
                lines.append(line)
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
                self._expect = False  # h11: a response ends the wait for 100 Continue
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
        self._expect = False
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
        if (name.translate(None, TOKEN_CHARS) or value.translate(None, VALUE_CHARS) or not name.islower()
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
