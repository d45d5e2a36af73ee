"""What the codec (h11's rules) accepts in a request but Plexicorn refuses, with the status and reason to answer."""

from __future__ import annotations

from .codec import Request


def request_problem(request: Request, headers: list[tuple[bytes, bytes]], max_header_size: int,
                    max_body_size: int = 0) -> tuple[tuple[int, str] | None, bool]:
    """(What the codec accepts but we refuse, whether the request asks for an `Upgrade`), in one
    pass over the fields: an oversized header block, ambiguous body framing, a declared body over
    `max_body_size` (0: no limit; a chunked one is counted as it comes).
    `headers`: the request's fields (`Request.headers`)."""
    # h11 applies its size limit only to an incomplete head, so a whole one read at once passes.
    size = len(request.method) + len(request.target) + 12
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
    if size > max_header_size:
        return (431, "request header block too large"), upgrade
    if request.http_version[:2] != b"1.":
        # h11 parses any digit.digit version, the HTTP/2 preface `PRI * HTTP/2.0` (h2c off) included.
        return (505, f"HTTP/{request.http_version.decode('ascii')} is not supported"), upgrade
    if length is not None and chunked:
        # RFC 9112 §6.3: a request-smuggling vector; never read further requests behind it.
        return (400, "both Content-Length and Transfer-Encoding"), upgrade
    # The codec has checked that the length is one number (repeated fields agreeing).
    if max_body_size and length is not None and int(length) > max_body_size:
        return (413, f"the request body is larger than {max_body_size} bytes"), upgrade
    return None, upgrade
