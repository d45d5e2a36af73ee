"""A strict HTTP/1.1 response reader over a raw socket, for tests that must see the bytes."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Response:
    status_line: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"repeated header {name!r}"
        return values[0] if values else None


class Reader:
    """Parses HTTP/1.1 responses off a raw socket; strict about framing so stray bytes fail tests."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        self.buffer += data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    def exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def until_closed(self) -> bytes:
        while True:
            try:
                self._fill()
            except EOFError:
                data = bytes(self.buffer)
                self.buffer.clear()
                return data

    def head(self) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
        status_line = self.line()
        version, status, _ = status_line.split(b" ", 2)
        assert version == b"HTTP/1.1", status_line
        headers = []
        while line := self.line():
            name, sep, value = line.partition(b":")
            assert sep, f"malformed header line {line!r}"
            headers.append((name.lower(), value.strip()))
        return status_line, int(status), headers

    def response(self, method: bytes = b"GET") -> Response:
        status_line, status, headers = self.head()
        response = Response(status_line, status, headers, b"")
        if method == b"HEAD" or status < 200 or status in (204, 304):
            return response  # no body (a 101's connection goes on in another protocol)
        if response.header(b"transfer-encoding") == b"chunked":
            chunks = []
            while size := int(self.line().split(b";")[0], 16):
                chunks.append(self.exact(size))
                assert self.exact(2) == b"\r\n"
            assert self.line() == b""  # no trailers
            response.body = b"".join(chunks)
        elif (length := response.header(b"content-length")) is not None:
            response.body = self.exact(int(length))
        else:
            response.body = self.until_closed()
        return response
