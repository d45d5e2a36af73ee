"""`Upgrade: h2c` (RFC 7540 §3.2): the checks and conversions between the HTTP/1.1 request and stream 1."""

from __future__ import annotations

import base64
import binascii

import h2.exceptions
import h2.settings

from ..http2.request import CONNECTION_SPECIFIC
from .codec import Request


class H2CUpgrade:
    __slots__ = ("request", "settings", "body", "size")

    def __init__(self, request: Request, settings: bytes) -> None:
        self.request = request
        self.settings = settings
        self.body: list[bytes] = []
        self.size = 0


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def h2c_upgrade_settings(request: Request, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The HTTP2-Settings value (padded for base64) of a valid h2c upgrade request, else None.

    RFC 7540 §3.2: `Upgrade: h2c`, exactly one `HTTP2-Settings` and both named in `Connection`.
    Anything less, and the upgrade is ignored: the request is served over HTTP/1.1.
    """
    if request.http_version != b"1.1" or request.method == b"CONNECT" or not (
            request.target[:1] == b"/" or (request.target == b"*" and request.method == b"OPTIONS")):
        return None  # nothing HTTP/2 could carry as stream 1's :path
    upgrade: set[bytes] = set()
    connection: set[bytes] = set()
    settings: list[bytes] = []
    for name, value in headers:
        if name == b"upgrade":
            upgrade.update(token.strip().lower() for token in value.split(b","))
        elif name == b"connection":
            connection.update(token.strip().lower() for token in value.split(b","))
        elif name == b"http2-settings":
            settings.append(value)
    if b"h2c" not in upgrade or not {b"upgrade", b"http2-settings"} <= connection or len(settings) != 1:
        return None
    value = settings[0]
    if not value or value.translate(None, _BASE64URL):
        return None
    value += b"=" * (-len(value) % 4)  # token68 omits the padding; h2 decodes with it
    try:
        payload = base64.urlsafe_b64decode(value)
    except binascii.Error:
        return None
    if len(payload) % 6:
        return None  # SETTINGS parameters are 6 bytes each
    check = h2.settings.Settings(client=True)
    try:
        for offset in range(0, len(payload), 6):
            code = int.from_bytes(payload[offset:offset + 2], "big")
            check[code] = int.from_bytes(payload[offset + 2:offset + 6], "big")
    except h2.exceptions.InvalidSettingsValueError:
        return None  # refused now, while HTTP/1.1 can still answer
    return value


def h2c_request_block(request: Request) -> list[tuple[bytes, bytes]]:
    """The upgrade request as an HTTP/2 header block, for stream 1."""
    hop_by_hop = set(CONNECTION_SPECIFIC) | {b"http2-settings", b"host"}
    for name, value in request.headers:
        if name == b"connection":
            hop_by_hop.update(token.strip().lower() for token in value.split(b","))
    host = next((value for name, value in request.headers if name == b"host"), b"")
    block = [(b":method", request.method), (b":scheme", b"http"), (b":path", request.target), (b":authority", host)]
    for name, value in request.headers:
        if name in hop_by_hop or (name == b"te" and value.lower() != b"trailers"):
            continue  # HTTP/2 carries no connection-specific fields (RFC 9113 §8.2.2)
        block.append((name, b"trailers" if name == b"te" else value))
    return block


