"""Everything Plexicorn takes from h11 beyond its public API, in one place, checked at import.

h11 has no public way to ask how much input it holds or how a response body is framed; the
private attributes below answer both. Its `_parsed` flag skips its checks of response fields that
`response` has made already. If an h11 release renames them, importing Plexicorn
fails at once with one line naming the installed h11, not with an AttributeError mid-request.
It also turns h11's error messages, which embed reprs of the raw bytes, into plain reasons.
"""

from __future__ import annotations

import importlib
import inspect

import h11

from ..asgi.http import TOKEN_CHARS

# (module, attribute) read from h11 beyond its public API.
_CHUNKED_WRITER = ("h11._writers", "ChunkedWriter")
# Attributes of an h11.Connection: the buffer of bytes received and not yet parsed into events,
# and the writer framing the body of the response being sent.
_CONNECTION_ATTRIBUTES = ("_receive_buffer", "_writer")


def missing_internals() -> str | None:
    """The first private h11 name Plexicorn needs that the installed h11 lacks, if any."""
    module_name, attribute = _CHUNKED_WRITER
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return module_name
    if not hasattr(module, attribute):
        return f"{module_name}.{attribute}"
    if "_parsed" not in inspect.signature(h11.Response).parameters:
        return "h11.Response(_parsed=...)"
    probe = h11.Connection(h11.SERVER)
    for name in _CONNECTION_ATTRIBUTES:
        if not hasattr(probe, name):
            return f"h11.Connection.{name}"
    return None


def require_internals() -> None:
    missing = missing_internals()
    if missing is not None:
        raise ImportError(f"plexicorn needs {missing}, which h11 {h11.__version__} lacks "
                          "(supported: h11 0.14 to 0.16)")


require_internals()
_ChunkedWriter = getattr(importlib.import_module(_CHUNKED_WRITER[0]), _CHUNKED_WRITER[1])


def buffered_input(conn: h11.Connection) -> int:
    """Bytes h11 holds that are not yet parsed (pipelined requests); the public
    `trailing_data` would copy them all to say the same."""
    return len(conn._receive_buffer)


def body_is_chunked(conn: h11.Connection) -> bool:
    """Whether the response being sent is chunked: only then has it room for trailers."""
    return isinstance(conn._writer, _ChunkedWriter)


# h11's messages for malformed input, by their start, as plain reasons: several of them embed a
# repr of the offending bytes (`illegal request line: bytearray(b'...')`), which is not for clients.
_REASONS = (
    ("illegal request line", "the request line is not METHOD TARGET HTTP/VERSION"),
    ("no request line", "the request has no request line"),
    ("illegal header line", "a header line is not NAME: VALUE"),
    ("continuation line", "a header line is folded (obsolete line folding is not accepted)"),
    ("illegal header name", "a header name has characters a token does not allow"),
    ("illegal header value", "a header value has control characters"),
    ("illegal method", "the method has characters a token does not allow"),
    ("illegal target", "the request target has invalid characters"),
    ("missing mandatory host", "an HTTP/1.1 request needs a Host header"),
    ("found multiple host", "the request has more than one Host header"),
    ("conflicting content-length", "the request has conflicting Content-Length headers"),
    ("bad content-length", "the Content-Length is not a number"),
    ("multiple transfer-encoding", "the request has more than one Transfer-Encoding"),
    ("only transfer-encoding: chunked", "only Transfer-Encoding: chunked is supported"),
    ("illegal chunk header", "a chunk size line is malformed"),
    ("malformed chunk footer", "a chunk does not end with CRLF"),
    ("receive buffer too long", "request header block too large"),
    ("peer closed connection without sending complete message body",
     "the connection ended inside the request body"),
    ("peer unexpectedly closed", "the connection ended inside a request"),
)


def plain_reason(error: h11.ProtocolError) -> str:
    """Why h11 refused the client's bytes, in words, never echoing those bytes."""
    message = str(error).lower()
    for start, reason in _REASONS:
        if message.startswith(start):
            return reason
    return "malformed request"


# What h11's own checks of a header field allow (h11._abnf: a name is a token; a value is runs
# of bytes other than NUL and whitespace, separated by spaces or tabs), as translate() tables.
_VALUE_CHARS = bytes(byte for byte in range(256) if byte not in b"\x00\n\r\x0b\x0c")
_EDGE_WHITESPACE = b" \t"


def response(status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> h11.Response:
    """An h11.Response for `headers`, which h11 need not check again when they pass the same
    checks here, done with translate() instead of two regular expressions per field (h11's
    `_parsed`, meant for its parser's own output). Any field that fails goes through h11's
    checks, which raise as before."""
    for name, value in headers:
        if not name or name.translate(None, TOKEN_CHARS) or value.translate(None, _VALUE_CHARS):
            return h11.Response(status_code=status, headers=headers, reason=reason)
        if value and (value[0] in _EDGE_WHITESPACE or value[-1] in _EDGE_WHITESPACE):
            return h11.Response(status_code=status, headers=headers, reason=reason)
    # int(): h11 itself turns an IntEnum status into an int only on its checking path.
    return h11.Response(status_code=int(status), headers=headers, reason=reason, _parsed=True)
