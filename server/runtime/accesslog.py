"""The access log: one structured record per request, rendered as text or JSON by `logs.py`.

Connections call `log_access(...)` once per finished exchange (and WebSocket close, and stream
the client reset). It builds an `AccessEntry`, a small object holding references to what the
exchange already has (its scope, status, byte count, start time); the fields themselves
(user agent, query, duration...) are computed only when a handler formats the record, so a
filtered or disabled access log costs nothing beyond the entry. The entry is both the log
record's single argument (`%(message)s` renders it with `--access-log-format`) and its
`access` attribute (a custom formatter reads `record.access.fields()`).
"""

from __future__ import annotations

import logging
import string
import time
from typing import Any, Callable

access_logger = logging.getLogger("plexicorn.access")

# Every field an access line has, with what it means (the README's table is this one).
FIELDS: dict[str, str] = {
    "client": "the client's address, HOST:PORT (`unix` on a Unix socket)",
    "method": "the request method (`CONNECT` for a WebSocket over HTTP/2)",
    "target": "the request target as sent: path and query string",
    "path": "the decoded path (ASGI `path`)",
    "query": "the query string, without `?` (empty if none)",
    "http_version": "`1.1`, `1.0` or `2`",
    "status": "the response status (`101`/`200` for an accepted WebSocket; `-` if none was sent)",
    "size": "response body bytes sent (WebSocket: bytes of the frames sent)",
    "duration_ms": "milliseconds from the request's arrival to this line, 3 decimals",
    "user_agent": "the `user-agent` request header (`-` if none)",
    "referer": "the `referer` request header (`-` if none)",
    "tls_version": "`TLSv1.2` or `TLSv1.3` on TLS connections (`-` in cleartext)",
    "alpn": "the protocol ALPN chose (`h2`, `http/1.1`; `-` in cleartext or without ALPN)",
    "stream_id": "the HTTP/2 stream id (`-` on HTTP/1.1)",
    "event": "empty for a completed response; `reset` when the client reset the stream or left "
             "before the response was complete (or a request limit cut a started response short); "
             "`aborted` when the app failed after starting its response, which was cut short "
             "(HTTP/2: RST_STREAM INTERNAL_ERROR; HTTP/1.1: the connection closed); "
             "`websocket-close` when a WebSocket ended",
    "close_code": "the WebSocket close code (`websocket-close` lines; `-` otherwise)",
}

DEFAULT_FORMAT = ('{client} - "{method} {target} HTTP/{http_version}" {status} {size} '
                  '{duration_ms}ms "{user_agent}" {event} {close_code}')


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class AccessEntry:
    """One access-log record. `fields()` gives them as a dict (None where a field has no value)."""

    __slots__ = ("scope", "tls", "method", "target", "http_version", "status", "size", "duration",
                 "stream_id", "event", "close_code")

    # The --access-log-format, set once at start-up by `logs.configure_logging` (`set_format`).
    text_format = DEFAULT_FORMAT
    _used: tuple[str, ...] = ()
    _strip_tail = True

    def __init__(self, scope: dict[str, Any], tls: tuple[str, str | None] | None, method: str, target: str,
                 http_version: str, status: int, size: int, duration: float, stream_id: int | None,
                 event: str, close_code: int | None) -> None:
        self.scope = scope
        self.tls = tls
        self.method = method
        self.target = target
        self.http_version = http_version
        self.status = status
        self.size = size
        self.duration = duration
        self.stream_id = stream_id
        self.event = event
        self.close_code = close_code

    def fields(self) -> dict[str, Any]:
        return {name: get(self) for name, get in _GETTERS.items()}

    def __str__(self) -> str:
        # Only the fields the format names are computed (the default skips the TLS ones, referer...).
        values = {}
        for name in self._used:
            value = _GETTERS[name](self)
            if value is None:
                value = "-"
            elif isinstance(value, str) and not value.isprintable():
                # Control characters (CR, LF, ESC, U+0085...) a client put in its target or headers
                # must not start a forged line or reach the terminal: escaped, as \r, \x1b...
                value = value.encode("unicode_escape").decode("ascii")
            values[name] = value
        line = self.text_format.format_map(values)
        # The default's last fields (event, close code) are empty on an ordinary line: no tail.
        return line.rstrip(" -") if self._strip_tail else line

    @classmethod
    def set_format(cls, text: str) -> None:
        cls.text_format = check_format(text)
        cls._used = tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(text) if name))
        cls._strip_tail = text == DEFAULT_FORMAT


def _client(entry: AccessEntry) -> str | None:
    client = entry.scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unix"  # no address: a Unix-socket peer


# How each field is read from an entry; FIELDS says what each means.
_GETTERS: dict[str, Callable[[AccessEntry], Any]] = {
    "client": _client,
    "method": lambda e: e.method,
    "target": lambda e: e.target,
    "path": lambda e: e.scope.get("path"),
    "query": lambda e: (e.scope.get("query_string") or b"").decode("latin-1"),
    "http_version": lambda e: e.http_version,
    "status": lambda e: e.status or None,
    "size": lambda e: e.size,
    "duration_ms": lambda e: round(e.duration * 1000, 3),
    "user_agent": lambda e: _header(e.scope.get("headers") or [], b"user-agent"),
    "referer": lambda e: _header(e.scope.get("headers") or [], b"referer"),
    "tls_version": lambda e: e.tls[0] if e.tls else None,
    "alpn": lambda e: e.tls[1] if e.tls else None,
    "stream_id": lambda e: e.stream_id,
    "event": lambda e: e.event,
    "close_code": lambda e: e.close_code,
}
assert _GETTERS.keys() == FIELDS.keys()


def log_access(cycle: Any, tls: tuple[str, str | None] | None, target: str, http_version: str,
               stream_id: int | None = None, *, status: int = 0, event: str = "",
               close_code: int | None = None) -> None:
    """Log one access line for `cycle` (an `HTTPCycle`: its scope, method, status, bytes sent and
    start time); `status` overrides the cycle's (a WebSocket's 101). Callers check
    `ServerContext.access_log` first."""
    entry = AccessEntry(cycle.scope, tls, cycle.method, target, http_version, status or cycle.status,
                        cycle.bytes_sent, time.monotonic() - cycle.started, stream_id, event, close_code)
    access_logger.info("%s", entry, extra={"access": entry})


def check_format(text: str) -> str:
    """The --access-log-format if every `{field}` in it is known, else a one-line ValueError."""
    if "%(" in text and "{" not in text:  # Hypercorn's and Gunicorn's atoms would be printed as they are
        raise ValueError(f"--access-log-format {text!r}: Plexicorn's fields are written {{field}}, "
                         "e.g. {client} {method} {path} {status}")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"--access-log-format {text!r}: {exc}") from None
    for name in names:
        if name not in FIELDS:
            raise ValueError(f"--access-log-format: unknown field {{{name}}}; fields: {', '.join(FIELDS)}")
    # A format spec or conversion a value cannot take ({status:s}: status is a number; {status:d}:
    # it is `-` before a response) fails now, not at every request: the format is tried on a line
    # with every field set and on one with every optional field missing (`-`).
    for sample in _SAMPLES:
        values = {name: "-" if (value := get(sample)) is None else value for name, get in _GETTERS.items()}
        try:
            text.format_map(values)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise ValueError(f"--access-log-format {text!r}: {exc} (with {_describe(values, names)}; "
                             "a field without a value is -)") from None
    return text


def _describe(values: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{name}={values[name]!r}" for name in dict.fromkeys(names))


# Access lines the format is tried on at start-up: every field present, every optional one absent.
_SAMPLES = (
    AccessEntry({"client": ("192.0.2.1", 50000), "path": "/a", "query_string": b"b=1",
                 "headers": [(b"user-agent", b"curl/8"), (b"referer", b"https://example.com/")]},
                ("TLSv1.3", "h2"), "GET", "/a?b=1", "2", 200, 1234, 0.0125, 1, "reset", 1000),
    AccessEntry({"client": None, "path": "/", "query_string": b"", "headers": []},
                None, "GET", "/", "1.1", 0, 0, 0.0, None, "", None),
)


AccessEntry.set_format(DEFAULT_FORMAT)
