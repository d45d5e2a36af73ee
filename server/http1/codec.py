"""The HTTP/1.1 codec: bytes in, request events out; response parts in, bytes out.

`HTTP1Protocol` knows HTTP/1.1 only through this interface, so the parser behind it can be h11
(`h11codec.H11Codec`, the reference), our pure-Python one (`pycodec.PythonCodec`) or llhttp
through httptools (`llhttpcodec.HttptoolsCodec`, the `httptools` extra), chosen by
`--http1-parser` (`parser.codec_factory`). All give the same events and the same bytes for plain
requests; the fast ones (`fastcodec.FastCodec`) hand a connection to the reference one for
anything beyond them (`Upgrade`, `CONNECT`, a head their checks refuse), so malformed and
ambiguous heads are judged by h11 (the few inputs llhttp itself judges otherwise, none about
where a request ends, are listed in the README).

Events returned by `next_event()`:
    Request            a request head (method, target, http_version as bytes; headers as a list
                       of (lower-case name, value)), with the facts about it request.py checks
    bytes/bytearray    a piece of the request body
    END_OF_MESSAGE     the request is read whole
    CONNECTION_CLOSED  the client closed its side between requests
    NEED_DATA          nothing more until more bytes come
    PAUSED             a request is read whole: nothing more until `start_next_cycle()`
    SWITCH             the connection continues on `successor()`'s codec (the fast codec
                       handing over to the reference one), which has the rest of the input
`next_event()` raises `BadRequest` (status and reason in words) for malformed input; the
response methods raise `ResponseError` for what the app sends that HTTP/1.1 cannot carry (a
body longer than its content-length, a bad field); the exchange then cannot complete.
"""

from __future__ import annotations

from typing import Protocol, Union


class Request:
    """A request head, with what the connection's checks need (request.py), found by the codec in
    its own pass over the fields: the head's size, the last content-length value (None: none),
    whether a transfer-encoding and an upgrade field came.

    `head_size` is len(method) + len(target) + 12, and len(name) + len(value) + 4 for each field:
    h11 applies its own size limit only to an incomplete head, so a whole one read at once is
    measured so."""

    __slots__ = ("method", "target", "http_version", "headers", "head_size", "content_length", "chunked",
                 "upgrade")

    def __init__(self, method: bytes, target: bytes, http_version: bytes, headers: list[tuple[bytes, bytes]],
                 head_size: int, content_length: bytes | None, chunked: bool, upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.head_size = head_size
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade


def read_head(method: bytes, target: bytes, http_version: bytes, headers: list[tuple[bytes, bytes]]) -> Request:
    """A Request with its facts found in one pass over `headers` (the reference codec's way; the
    fast codecs find them in their own pass)."""
    size = len(method) + len(target) + 12
    length: bytes | None = None
    chunked = upgrade = False
    for name, value in headers:
        size += len(name) + len(value) + 4
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"upgrade":
            upgrade = True
    return Request(method, target, http_version, headers, size, length, chunked, upgrade)


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END_OF_MESSAGE = _Sentinel("END_OF_MESSAGE")
CONNECTION_CLOSED = _Sentinel("CONNECTION_CLOSED")
NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")
SWITCH = _Sentinel("SWITCH")

Event = Union[Request, bytes, bytearray, _Sentinel]


class BadRequest(Exception):
    """The client's bytes are not HTTP/1.1 we accept: answer `status` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ResponseError(Exception):
    """What we were asked to send does not fit HTTP/1.1's framing or field rules."""


class HTTP1Codec(Protocol):
    # -- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" for its end of input."""

    def next_event(self) -> Event:
        """The next event (see the module's docstring); BadRequest for malformed input."""

    def buffered_input(self) -> int:
        """Bytes received and not yet returned as events (0: nothing of a next request)."""

    def trailing_data(self) -> bytes:
        """The bytes received behind the request (after a `101`: the new protocol's)."""

    @property
    def request_complete(self) -> bool:
        """The request in flight is read to its end (or waits for an upgrade's answer)."""

    @property
    def waiting_for_100_continue(self) -> bool:
        """The client sent `Expect: 100-continue` and holds its body until we answer."""

    def successor(self) -> HTTP1Codec:
        """After SWITCH: the codec that has the connection from now on."""

    # -- output -----------------------------------------------------------------------------
    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        """The final response head, framing fields completed as h11 completes them."""

    def informational(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        """A 1xx head; only a 100 (or 101) answers `Expect: 100-continue`."""

    def body(self, data: bytes) -> bytes:
        """A piece of the response body, framed."""

    def end(self, trailers: list[tuple[bytes, bytes]]) -> bytes:
        """The end of the response; trailers are sent only where there is room (chunked)."""

    def file_framing(self, count: int) -> tuple[bytes, bytes]:
        """The framing around `count` body bytes the OS sends from a file: (before, after)."""

    @property
    def can_respond(self) -> bool:
        """No response has been started for the current request (a 4xx may still go out)."""

    @property
    def reusable(self) -> bool:
        """The response is complete, the request read whole, and neither side asked to close."""

    def start_next_cycle(self) -> None:
        """Both sides are done: read the next request."""
