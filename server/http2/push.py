"""Server push (ASGI `http.response.push`): the promised request, and when one may be made.

A push is only an optimisation, so every reason not to make one (push disabled by the client,
its limit on our streams, no authority to name, h2 refusing the promise) skips it silently;
only an application's malformed push request is reported, as its own mistake.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import h2.exceptions

from ..asgi.http import ASGIMessageError
from .h2lib import ServerH2Connection
from .request import MalformedRequest, RequestHead, parse_request_headers

logger = logging.getLogger("plexicorn.error")

Headers = list[tuple[bytes, bytes]]


def push_allowed(conn: ServerH2Connection, parent_id: int, pushes_open: int) -> bool:
    """Only client-initiated (odd) streams may carry a PUSH_PROMISE (RFC 9113 §8.4), while the
    client allows push and the streams we opened stay within its SETTINGS_MAX_CONCURRENT_STREAMS
    (which h2 does not enforce for pushes: counting every push not yet finished, its response
    can never exceed it)."""
    settings = conn.remote_settings
    return bool(parent_id % 2 and settings.enable_push and pushes_open < settings.max_concurrent_streams)


def promised_request(scheme: str, authority: bytes, path: str, headers: Headers) -> tuple[Headers, RequestHead]:
    """The header block of a pushed GET of `path`, and the request it stands for."""
    block = [(b":method", b"GET"), (b":scheme", scheme.encode()), (b":authority", authority),
             (b":path", quote(path, safe="/%?=&;:@!$'()*+,~").encode("ascii"))] + headers
    try:
        return block, parse_request_headers(block, ended=True)
    except MalformedRequest as exc:
        raise ASGIMessageError(f"invalid push request: {exc}") from None


def promise(conn: ServerH2Connection, parent_id: int, block: Headers) -> int | None:
    """Send the PUSH_PROMISE; the promised stream's id, or None when h2 refuses (before any HPACK
    encoding, so the connection is unharmed). Other ProtocolErrors propagate: HPACK state may
    be off, and the connection must end."""
    try:
        promised_id = conn.get_next_available_stream_id()
        conn.push_stream(parent_id, promised_id, block)
    except (h2.exceptions.TooManyStreamsError, h2.exceptions.StreamClosedError,
            h2.exceptions.NoAvailableStreamIDError) as exc:
        logger.debug("push skipped: %s", exc)
        return None
    return promised_id
