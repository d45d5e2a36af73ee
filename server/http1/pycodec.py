"""The fast HTTP/1.1 codec with a pure-Python request parser (`--http1-parser python`).

It reads only what is plainly valid and reads it exactly as h11 would: a head whose every line
ends in CRLF, a request line `METHOD SP TARGET SP HTTP/1.1` (or 1.0) whose method is a token and
whose target is visible ASCII, fields `NAME:VALUE` whose name is a token and whose value, without
its edge spaces and tabs, holds no byte h11 refuses, at most one plain `Content-Length`, and no
`Transfer-Encoding`, `Upgrade` or `CONNECT`. Anything else (a chunked body, obsolete line
folding, a bare LF or CR, a head h11 would find bad or too large, a first byte h11 rejects at
once) is handed to h11 from the request's first byte (`FastCodec._hand_over`), so that h11
answers it, and the connection stays on h11.

Timing matches h11's too: an incomplete head is waited for only while h11 would wait (no blank
line by h11's measure, `\\n\\r?\\n`; no more than the head size limit; a first byte h11 accepts).
The bytes of an incomplete head are kept in a bytearray and searched only where they are new,
so a head sent a byte at a time costs linear time.
"""

from __future__ import annotations

from typing import Callable

from ..asgi.http import TOKEN_CHARS
from .codec import CONNECTION_CLOSED, BadRequest, HTTP1Codec
from .fastcodec import VALUE_CHARS, FastCodec, Refer

_VERSIONS = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
# h11's request target: visible ASCII.
_TARGET_CHARS = bytes(range(0x21, 0x7F))
_WHITESPACE = b" \t"
# The longest content-length h11 takes.
_LENGTH_DIGITS = 20


class PythonCodec(FastCodec):
    __slots__ = ("_pending", "_scanned", "_body_left", "_last")

    def __init__(self, max_head_size: int, reference: Callable[..., HTTP1Codec]) -> None:
        super().__init__(max_head_size, reference)
        self._pending = bytearray()  # the start of a request head, waiting for the rest
        self._scanned = 0  # how much of _pending is known to hold no blank line
        self._body_left = 0  # content-length bytes of the request being read still to come
        self._last = False  # the request read last closes the connection (h11's keep-alive)

    def receive_data(self, data: bytes) -> None:
        if self._successor is not None:
            self._successor.receive_data(data)  # handed over: the rest is h11's
            return
        if self._closed_input:
            return
        if not data:
            self._end_of_input()
            return
        start = 0
        if self._body_left:
            start = self._read_body(data, 0, self._body_left)
            if start < 0:
                return
        pending = self._pending
        if pending:
            pending += data[start:] if start else data
            scan_from = max(0, self._scanned - 3)
            if pending.find(b"\r\n\r\n", scan_from) < 0:
                self._wait_or_hand_over(scan_from)
                return
            data = bytes(pending)
            pending.clear()
            start = 0
        self._parse(data, start)

    def _parse(self, data: bytes, start: int) -> None:
        """Queue the requests that `data` holds from `start` (a request's first byte) on."""
        size = len(data)
        while start < size:
            if self._last:
                self._refuse_after_close()
                return
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                self._pending += data[start:] if start else data
                self._wait_or_hand_over(0)
                return
            try:
                if data[start] < 0x21:
                    raise Refer  # h11: "no request line" (an empty line first) or a bad one
                length = self._head(data[start:end])
            except Refer:
                self._hand_over(data[start:] if start else data)
                return
            start = end + 4
            if length:
                start = self._read_body(data, start, length)
                if start < 0:
                    return
            else:
                self._queue_end()

    def _head(self, head: bytes) -> int:
        """Queue a request head (without its last CRLF CRLF): its content-length, or Refer."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise Refer
        method, target, version_text = parts
        version = _VERSIONS.get(version_text)
        if (version is None or not method or method.translate(None, TOKEN_CHARS) or method == b"CONNECT"
                or not target or target.translate(None, _TARGET_CHARS)):
            raise Refer
        headers = []
        length = 0
        seen_length = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, TOKEN_CHARS):
                raise Refer  # no colon, a folded line (it starts with whitespace), a bad name
            value = value.strip(_WHITESPACE)
            if value.translate(None, VALUE_CHARS):
                raise Refer
            name = name.lower()
            if name == b"content-length":
                if seen_length or not value.isdigit() or len(value) > _LENGTH_DIGITS:
                    raise Refer  # h11 merges repeats and lists, or refuses them
                seen_length = True
                length = int(value)
            elif name == b"transfer-encoding":
                raise Refer  # a chunked body is h11's to read (FastCodec refers Upgrade)
            headers.append((name, value))
        self._last = not self._queue_request(method, target, version, headers)
        return length

    def _read_body(self, data: bytes, start: int, left: int) -> int:
        """Queue the `left` body bytes (or as many as there are) `data` holds from `start`; the
        index behind the body, or -1 when `data` ends inside it."""
        end = start + left
        size = len(data)
        if size < end:
            if size > start:
                self._queue_body(data[start:] if start else data)
            self._body_left = end - size
            return -1
        self._queue_body(data if start == 0 and end == size else data[start:end])
        self._body_left = 0
        self._queue_end()
        return end

    def _wait_or_hand_over(self, scanned_from: int) -> None:
        """An incomplete head is in `_pending`: wait for more while h11 would, else hand over."""
        pending = self._pending
        if (pending[0] < 0x21 or len(pending) > self._max_head_size
                or pending.find(b"\n\n", scanned_from) >= 0 or pending.find(b"\n\r\n", scanned_from) >= 0):
            self._scanned = 0
            data = bytes(pending)
            pending.clear()
            self._hand_over(data)
            return
        self._scanned = len(pending)

    def _end_of_input(self) -> None:
        if self._body_left:
            self._queue_last(BadRequest(400, "the connection ended inside the request body"))
        elif self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._hand_over(data)
            self.receive_data(b"")  # to the successor, which judges the incomplete head
        else:
            self._queue_last(CONNECTION_CLOSED)

    def buffered_input(self) -> int:
        return (self._queued + len(self._pending) + (self._body_left > 0)
                + (0 if self._successor is None else self._handed_over_input()))  # no call on every request
