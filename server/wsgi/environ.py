"""The PEP 3333 `environ` of one request, built from its ASGI scope."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_to_bytes

logger = logging.getLogger("plexicorn.error")


class ErrorStream:
    """`wsgi.errors`: text written by the app goes to the server's error log, a line at a time."""

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            logger.error("%s", self._pending)
            self._pending = ""


def build_environ(scope: dict[str, Any], *, wsgi_input: Any, multiprocess: bool,
                  file_wrapper: Any) -> dict[str, Any]:
    http_version = scope["http_version"]
    raw_path = scope["raw_path"]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope["root_path"],
        # PEP 3333: the percent-decoded bytes of the path, as latin-1 (the app re-encodes them).
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/2" if http_version == "2" else f"HTTP/{http_version}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope["scheme"],
        "wsgi.input": wsgi_input,
        "wsgi.input_terminated": True,  # reading to the end is safe: the body always ends (EOF)
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": file_wrapper,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    fields: dict[str, str] = {}
    host = None
    for name, value in scope["headers"]:
        if b"_" in name:
            # HTTP_X_USER would be the same key for x-user and x_user: a proxy that strips one
            # spelling would let a client smuggle the other in (nginx and gunicorn drop them too).
            continue
        text = value.decode("latin-1")
        if name == b"content-type":
            environ["CONTENT_TYPE"] = text
            continue
        if name == b"content-length":
            environ["CONTENT_LENGTH"] = text
            continue
        if name == b"host":
            host = text
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        previous = fields.get(key)
        if previous is None:
            fields[key] = text
        else:
            # RFC 9110 §5.3 joins repeated fields with commas; cookies (HTTP/2 splits them, RFC 9113 §8.2.3) with "; ".
            fields[key] = previous + ("; " if name == b"cookie" else ", ") + text
    environ.update(fields)
    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:
        # A Unix socket: the Host the client asked for is the best name there is.
        name, sep, port = (host or "").rpartition(":")
        if not sep or not port.isdigit() or name.endswith(":"):  # no port (or a bare IPv6 address)
            name, port = host or "localhost", "443" if scope["scheme"] == "https" else "80"
        environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
    return environ

