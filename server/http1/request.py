"""What the codec (h11's rules) accepts in a request but Plexicorn refuses, with the status and reason to answer."""

from __future__ import annotations

from .codec import Request


def request_problem(request: Request, max_header_size: int, max_body_size: int = 0) -> tuple[int, str] | None:
    """What the codec accepts but we refuse, from the facts the codec found in the head
    (codec.Request): an oversized header block, ambiguous body framing, a declared body over
    `max_body_size` (0: no limit; a chunked one is counted as it comes)."""
    if request.head_size > max_header_size:
        return 431, "request header block too large"
    if request.http_version[:2] != b"1.":
        # h11 parses any digit.digit version, the HTTP/2 preface `PRI * HTTP/2.0` (h2c off) included.
        return 505, f"HTTP/{request.http_version.decode('ascii')} is not supported"
    length = request.content_length
    if length is not None and request.chunked:
        # RFC 9112 §6.3: a request-smuggling vector; never read further requests behind it.
        return 400, "both Content-Length and Transfer-Encoding"
    # The codec has checked that the length is one number (repeated fields agreeing).
    if max_body_size and length is not None and int(length) > max_body_size:
        return 413, f"the request body is larger than {max_body_size} bytes"
    return None
