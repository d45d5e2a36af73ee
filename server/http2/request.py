"""HTTP/2 request header blocks: pseudo-headers split from fields, malformed requests rejected.

RFC 9113 §8.1.1 makes a malformed request a *stream* error. h2's own validation raises a
connection error instead (one bad request would end every stream of the connection), so
Plexicorn turns it off and applies the rules of §8.2-§8.3 here, per request.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from ..asgi.http import TOKEN_CHARS

_REQUEST_PSEUDO_HEADERS = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
# Connection-specific fields are forbidden in HTTP/2 (§8.2.2).
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"})
# Lower-case tchar (RFC 9110 §5.6.2): a name with anything else, upper case included, is malformed.
_NAME_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_WHITESPACE = (b" ", b"\t")
# NUL, LF and CR (RFC 9113 §8.2.1) are looked for as ints (`13 in value`: a memchr), not with
# bytes.translate; `b"\r" in value` would first fail, and format, a TypeError inside CPython.
# Field names and methods already found valid, so that the names a connection repeats on every
# request are checked once (bytes.translate builds a 256-byte table per call). Bounded: past
# the bound, new names are checked every time, as before.
_VALID_NAMES: set[bytes] = set()
_VALID_METHODS: set[bytes] = set()
_VALID_LIMIT = 1024


class MalformedRequest(Exception):
    """The request breaks RFC 9113 §8; answered with RST_STREAM PROTOCOL_ERROR."""


class RequestHead(NamedTuple):
    method: bytes
    scheme: bytes | None
    path: bytes | None
    authority: bytes | None
    protocol: bytes | None  # RFC 8441 extended CONNECT
    headers: list[tuple[bytes, bytes]]


def parse_request_headers(block: Iterable[tuple[bytes, bytes]], *, ended: bool = False,
                          allow_protocol: bool = False) -> RequestHead:
    """`ended`: the HEADERS frame carried END_STREAM (the request has no body)."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    host = None
    content_length = None
    for name, value in block:
        if name[:1] == b":":
            if headers:
                raise MalformedRequest(f"pseudo-header {name!r} after regular fields")
            if name not in _REQUEST_PSEUDO_HEADERS or (name == b":protocol" and not allow_protocol):
                raise MalformedRequest(f"pseudo-header {name!r} is not allowed in a request")
            if name in pseudo:
                raise MalformedRequest(f"duplicate pseudo-header {name!r}")
            # RFC 9113 §8.2.1 holds for pseudo-header values too (no CR/LF/NUL, no edge spaces):
            # they become the app's method, path and host, and the access log's line.
            if (13 in value or 10 in value or 0 in value or value[:1] in _WHITESPACE
                    or value[-1:] in _WHITESPACE or (name == b":method" and value not in _VALID_METHODS
                                                     and not _valid(_VALID_METHODS, value, TOKEN_CHARS))):
                raise MalformedRequest(f"invalid value for pseudo-header {name!r}")
            pseudo[name] = value
            continue
        if name not in _VALID_NAMES and (not name or not _valid(_VALID_NAMES, name, _NAME_CHARS)):
            raise MalformedRequest(f"invalid field name {name!r}")
        if name in CONNECTION_SPECIFIC:
            raise MalformedRequest(f"connection-specific field {name!r}")
        if 13 in value or 10 in value or 0 in value or value[:1] in _WHITESPACE or value[-1:] in _WHITESPACE:
            raise MalformedRequest(f"invalid value for field {name!r}")
        if name == b"te" and value != b"trailers":
            raise MalformedRequest("te may only be 'trailers'")
        if name == b"host":
            host = value
        elif name == b"content-length":
            if not value.isdigit() or (content_length is not None and value != content_length):
                raise MalformedRequest(f"invalid content-length {value!r}")
            content_length = value
        headers.append((name, value))

    method = pseudo.get(b":method")
    if not method:
        raise MalformedRequest("missing :method")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    scheme = pseudo.get(b":scheme")
    path = pseudo.get(b":path")
    if method == b"CONNECT" and protocol is None:
        # §8.5: a plain CONNECT names only the authority.
        if scheme is not None or path is not None or not authority:
            raise MalformedRequest("CONNECT needs :authority and no :scheme or :path")
    else:
        if protocol is not None and method != b"CONNECT":
            raise MalformedRequest(":protocol is only allowed with CONNECT")
        if not scheme:
            raise MalformedRequest("missing :scheme")
        if not path:
            raise MalformedRequest("missing or empty :path")
        if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
            raise MalformedRequest(":path must start with '/' (or be '*' for OPTIONS)")
    if ended and content_length is not None and int(content_length) != 0:
        raise MalformedRequest("content-length announces a body the request does not have")  # §8.1.1
    if authority is not None:
        if host is None:
            headers.insert(0, (b"host", authority))  # ASGI apps read the host header
        elif host != authority:
            raise MalformedRequest("host and :authority differ")  # §8.3.1
    return RequestHead(method, scheme, path, authority, protocol, headers)


def _valid(known: set[bytes], item: bytes, chars: bytes) -> bool:
    """`item` is made of `chars` only; remembered in `known` (under its bound) if not empty."""
    if item.translate(None, chars):
        return False
    if item and len(known) < _VALID_LIMIT:
        known.add(item)
    return True


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The request's content-length (parse_request_headers has checked it is digits), 0 if none."""
    return next((int(value) for name, value in headers if name == b"content-length"), 0)


def validate_trailers(block: Iterable[tuple[bytes, bytes]]) -> None:
    """Trailers carry no pseudo-headers (§8.1)."""
    for name, _ in block:
        if name[:1] == b":":
            raise MalformedRequest(f"pseudo-header {name!r} in trailers")
