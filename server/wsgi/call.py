"""The thread side of one WSGI call: `wsgi.input`, `start_response`, `write()`, the iterable.

Everything here runs in a pool thread and reaches the request only through `Bridge.ask`.
The request body is pulled one received chunk at a time, when the app has used up the previous
one, so flow-control credit goes back to the client as the app reads (HTTP/2 WINDOW_UPDATE,
HTTP/1.1 resumed reading). Each response chunk is handed over and the thread waits until the
connection's bounded send buffer has room for it.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable, Iterable

from ..asgi.http import ZEROCOPYSEND, ClientDisconnected
from ..asgi.scope import PATHSEND
from .bridge import RECEIVE, SEND, Bridge

# RFC 9110 §7.6.1 hop-by-hop fields: PEP 3333 forbids them to applications (the server frames).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})


class RequestInput:
    """`wsgi.input`: the request body as a read-only binary stream."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._buffer = b""
        self._offset = 0
        self._eof = False

    def _fill(self) -> bool:
        """Fetch the next received chunk; False at the end of the body."""
        if self._eof:
            return False
        message = self._bridge.ask(RECEIVE)
        if message["type"] != "http.request":
            raise ClientDisconnected("client disconnected while the app read the request body")
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)  # h11 hands over bytearrays; PEP 3333 promises bytes
        self._eof = not message.get("more_body", False)
        self._buffer = self._buffer[self._offset:] + body if self._offset < len(self._buffer) else body
        self._offset = 0
        return bool(body) or not self._eof

    def _take(self, size: int) -> bytes:
        data = self._buffer[self._offset:self._offset + size]
        self._offset += len(data)
        return data

    def _rest(self) -> bytes:
        return self._take(len(self._buffer) - self._offset)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._rest()
        while len(self._buffer) - self._offset < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        searched = 0  # bytes after the read position already searched for a newline
        while True:
            end = self._buffer.find(b"\n", self._offset + searched)
            if end >= 0:
                length = end + 1 - self._offset
                return self._take(length if limit is None else min(length, limit))
            searched = len(self._buffer) - self._offset
            if limit is not None and searched >= limit:
                return self._take(limit)
            if not self._fill():
                return self._rest()

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> RequestInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class FileWrapper:
    """`wsgi.file_wrapper`: a file the server may send its own way (pathsend, sendfile)."""

    def __init__(self, filelike: Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.block_size)
        if data:
            return data
        raise StopIteration


class WSGICall:
    """One call of the app, in its thread: what PEP 3333 asks of a server's side."""

    def __init__(self, bridge: Bridge, scope: dict[str, Any]) -> None:
        self._bridge = bridge
        self._scope = scope
        self._head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._headers_sent = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self._headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to replace
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self._head is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"WSGI status must be a str like '200 OK', got {status!r}")
        fields = []
        for pair in headers:
            name, value = pair
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI response header {pair!r} must be a pair of str")
            if name.lower() in HOP_BY_HOP:
                raise ValueError(f"hop-by-hop header {name!r} is not allowed in a WSGI response (PEP 3333)")
            fields.append((name.encode("latin-1"), value.encode("latin-1")))
        self._head = (int(status[:3]), fields)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy `write()` callable: sent before returning, as PEP 3333 asks."""
        if self._head is None:
            raise AssertionError("write() before start_response")
        if type(data) is not bytes:
            raise TypeError(f"WSGI body data must be bytes, got {type(data).__name__}")
        if data:
            self._send({"type": "http.response.body", "body": data, "more_body": True})

    def _with_head(self, messages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        """`messages`, after the response head if it has not gone yet (it goes with the first)."""
        if self._headers_sent:
            return messages
        assert self._head is not None
        status, fields = self._head
        self._headers_sent = True
        return ({"type": "http.response.start", "status": status, "headers": fields}, *messages)

    def _send(self, *messages: dict[str, Any]) -> None:
        self._bridge.ask(SEND, self._with_head(messages))

    def run(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        """Call the app and send its body; return the messages that end the response, for the
        loop to send after the call (so that no thread waits for them)."""
        result = app(environ, self.start_response)
        try:
            head_only = self._scope["method"] == "HEAD"
            if isinstance(result, FileWrapper) and not head_only and self._send_file(result):
                return ()
            last = len(result) - 1 if isinstance(result, (list, tuple)) else -1
            for index, chunk in enumerate(result):
                if type(chunk) is not bytes:
                    raise TypeError(f"WSGI body chunks must be bytes, got {type(chunk).__name__}")
                if self._head is None:
                    raise AssertionError("the app yielded body before calling start_response")
                if head_only:
                    break  # the head is known: a HEAD response has no body to compute
                if index == last:
                    # A list's last item: the body ends with it.
                    return self._with_head(({"type": "http.response.body", "body": chunk},))
                if chunk:
                    self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self._head is None:
                raise AssertionError("the app returned without calling start_response")
            return self._with_head(({"type": "http.response.body"},))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Send a wrapped regular file without the thread copying it; False: iterate it instead."""
        if self._head is None:
            raise AssertionError("the app returned a file_wrapper without calling start_response")
        file = wrapper.filelike
        try:
            info = os.fstat(file.fileno())
            position = file.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        extensions = self._scope["extensions"]
        if ZEROCOPYSEND in extensions:
            # Cleartext HTTP/1.1: the kernel copies the file (sendfile(2)) from where it stands.
            self._send({"type": ZEROCOPYSEND, "file": file, "offset": position})
            return True
        name = getattr(file, "name", None)
        if PATHSEND in extensions and position == 0 and isinstance(name, str) and os.path.isabs(name) \
                and _same_file(name, info):
            # The file read off the loop in 64 KiB pieces into the ordinary, flow-controlled body path.
            self._send({"type": PATHSEND, "path": name})
            return True
        return False


def _same_file(path: str, info: os.stat_result) -> bool:
    """Whether `path` still names the open file (pathsend opens it again by name)."""
    try:
        named = os.stat(path)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (info.st_dev, info.st_ino)
