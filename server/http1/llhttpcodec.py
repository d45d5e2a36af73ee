"""The fast HTTP/1.1 codec on llhttp, through httptools' public API (the `httptools` extra).

llhttp parses what it is fed in one call, through callbacks, which report to `FastCodec`'s
queue. A request llhttp refuses or `FastCodec._queue_request` would have h11 judge, one that is
too large for its head, an `Upgrade` or a `CONNECT` is handed to h11 from its first byte: the
raw input is kept from the start of a run of requests that began at a chunk's start, and the
requests llhttp completed in that run are skipped. Only input llhttp refuses inside a body, or a
head whose bytes were not kept (more than `_RAW_LIMIT` of a pipelined run), is answered here,
with the same statuses.
"""

from __future__ import annotations

from typing import Callable

import h11
import httptools

from .codec import CONNECTION_CLOSED, BadRequest, HTTP1Codec
from .fastcodec import FastCodec, Refer

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
_WHITESPACE = b" \t"
# Raw input kept so that a request can be handed to h11 from its first byte.
_RAW_LIMIT = 256 * 1024


class HttptoolsCodec(FastCodec):
    __slots__ = ("_parser", "_in_message", "_in_body", "_upgrading", "_head_size", "_began", "_body_seen", "_raw", "_raw_size",
                 "_completed", "_url", "_headers", "_last")

    def __init__(self, max_head_size: int, reference: Callable[..., HTTP1Codec]) -> None:
        super().__init__(max_head_size, reference)
        self._parser = httptools.HttpRequestParser(self)
        self._in_message = False  # llhttp is inside a request
        self._in_body = False  # ... past its head
        self._upgrading = False  # the request is an Upgrade or a CONNECT: h11's
        self._head_size = 0
        self._began = False  # a request began in the chunk being parsed
        self._body_seen = False  # ... or a body was read in it
        self._raw: list[bytes] | None = []  # input since a request began at a chunk's start
        self._raw_size = 0
        self._completed = 0  # requests llhttp completed since the raw input's start
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._last = False  # the request read last closes the connection (h11's keep-alive rule)

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._last:
            raise Refer  # llhttp keeps an HTTP/1.0 `Connection: keep-alive` open, h11 does not
        self._in_message = self._began = True
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        if not self._url and self._parser.get_method() == b"PRI":
            raise Refer  # llhttp waits for HTTP/2's preface behind a PRI head, h11 answers the head
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
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise Refer
        # llhttp refuses every byte in a target, a field name or a field value that h11 refuses
        # (tests/test_http1_codecs.py checks all 256), so those are not checked again here.
        self._last = not self._queue_request(parser.get_method(), self._url, version, self._headers)
        self._head_size = 0
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self._queue_body(body)

    def on_message_complete(self) -> None:
        self._in_message = self._in_body = False
        if self._upgrading:
            return
        self._completed += 1
        self._queue_end()

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
        if not self._in_message and (self._last or (data[0] < 0x21 and self._raw == [])):
            if self._last:
                self._refuse_after_close()
            else:
                self._hand_over(data)  # llhttp skips empty lines before a request, h11 refuses them
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
                self._hand_over_raw()
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
        if self._last or (exc is not None and str(exc).lower().startswith("data after")):
            self._refuse_after_close()
            return
        if not self._in_body and self._raw is not None:
            self._hand_over_raw()  # the head is h11's to judge, from its first byte
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
            self._hand_over_raw()
            self.receive_data(b"")  # to the successor
        else:
            self._queue_last(BadRequest(400, "the connection ended inside the request body" if self._in_body
                                        else "the connection ended inside a request"))

    def _hand_over_raw(self) -> None:
        """Hand h11 the raw input from the first byte of the request being parsed (after the
        requests completed before it here)."""
        raw = b"".join(self._raw or ())
        for _ in range(self._completed):
            raw = _skip_request(raw, self._max_head_size)
        self._raw = None
        self._hand_over(raw)

    def buffered_input(self) -> int:
        return self._queued + self._in_message + (0 if self._successor is None else self._handed_over_input())


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
