"""The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a proxy in
TCP mode sends first, saying whose connection it relays. Socket-free: `parse` takes the bytes
received so far and says "need more", "here is the header and its length" or raises.

v1 is one text line: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN...\r\n`, at
most 107 bytes. v2 is binary: a 12-byte signature, version/command, family/transport, a length,
the addresses, then TLVs (skipped, but for PP2_TYPE_SSL's "client used TLS" bit).
`LOCAL` (v2: the proxy's own health check) and `UNKNOWN`/`UNSPEC` keep the connection's own
addresses, as the specification asks.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import NamedTuple

V1_PREFIX = b"PROXY "
V1_MAX = 107  # including the CRLF
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = struct.Struct("!12sBBH")  # signature, version|command, family|transport, length

VERSIONS = {"v1": (1,), "v2": (2,), "any": (1, 2)}

_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_TRANSPORT_UNSPEC, _TRANSPORT_STREAM = 0x0, 0x1
# Address block sizes per family (v2): two addresses and, for IP, two ports.
_ADDRESS_SIZE = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY header we accept; the message says why, in words."""


class ProxyHeader(NamedTuple):
    """What a PROXY header says. `local`: keep the connection's own addresses (LOCAL, UNKNOWN)."""

    version: int
    local: bool
    client: tuple[str, int] | None = None  # None for a Unix-socket client
    server: tuple[str, int | None] | None = None  # a Unix socket: (path, None)
    ssl: bool = False  # v2 PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS to the proxy


def parse(data: bytes, versions: tuple[int, ...] = (1, 2)) -> tuple[ProxyHeader, int] | None:
    """The header at the start of `data` and its length, or None if more bytes are needed."""
    if 2 in versions and data[:12] == V2_SIGNATURE[:len(data[:12])]:
        return _parse_v2(data) if len(data) >= V2_HEADER.size else None
    if 1 in versions and data[:6] == V1_PREFIX[:len(data[:6])]:
        return _parse_v1(data)
    expected = " or ".join(("a v1 line (PROXY ...)", "the v2 signature")[version - 1] for version in versions)
    raise ProxyHeaderError(f"the connection does not start with a PROXY protocol header ({expected})")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("a PROXY v1 line longer than 107 bytes")
        return None
    fields = data[:end].split(b" ")
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return ProxyHeader(1, local=True), end + 2
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("a PROXY v1 line is not PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    kind = ipaddress.IPv4Address if fields[1] == b"TCP4" else ipaddress.IPv6Address
    try:
        source, destination = (str(kind(field.decode("ascii"))) for field in fields[2:4])
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError(f"a PROXY v1 address is not {fields[1].decode()}") from None
    ports = [_v1_port(field) for field in fields[4:6]]
    return ProxyHeader(1, local=False, client=(source, ports[0]), server=(destination, ports[1])), end + 2


def _v1_port(field: bytes) -> int:
    # Decimal, no leading zero (the specification), 0 to 65535.
    if not field.isdigit() or len(field) > 5 or (len(field) > 1 and field[:1] == b"0") or int(field) > 65535:
        raise ProxyHeaderError("a PROXY v1 port is not a number from 0 to 65535")
    return int(field)


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    signature, version_command, family_transport, length = V2_HEADER.unpack_from(data)
    if signature != V2_SIGNATURE:
        raise ProxyHeaderError("the PROXY v2 signature is wrong")
    if version_command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError("a PROXY v2 header with an unknown version or command")
    total = V2_HEADER.size + length
    if len(data) < total:
        return None
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family not in _ADDRESS_SIZE or transport not in (_TRANSPORT_UNSPEC, _TRANSPORT_STREAM):
        raise ProxyHeaderError("a PROXY v2 header with an unknown address family or a datagram transport")
    if version_command == _V2_LOCAL:
        return ProxyHeader(2, local=True), total  # the whole block is to be ignored
    size = _ADDRESS_SIZE[family]
    if length < size:
        raise ProxyHeaderError("a PROXY v2 header too short for its addresses")
    body = data[V2_HEADER.size:total]
    ssl = _client_ssl(body[size:])
    if family == _AF_UNSPEC:
        return ProxyHeader(2, local=True, ssl=ssl), total
    client: tuple[str, int] | None
    server: tuple[str, int | None]
    if family == _AF_UNIX:
        client, server = None, (_unix_path(body[108:216]), None)
    else:
        width = 4 if family == _AF_INET else 16
        kind = socket.AF_INET if family == _AF_INET else socket.AF_INET6
        source = socket.inet_ntop(kind, body[:width])
        destination = socket.inet_ntop(kind, body[width:2 * width])
        source_port, destination_port = struct.unpack_from("!HH", body, 2 * width)
        client, server = (source, source_port), (destination, destination_port)
    return ProxyHeader(2, local=False, client=client, server=server, ssl=ssl), total


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _client_ssl(tlvs: bytes) -> bool:
    """Walk the TLVs (type, 2-byte length, value); a TLV running past the header is malformed."""
    ssl = False
    position, end = 0, len(tlvs)
    while position < end:
        if end - position < 3:
            raise ProxyHeaderError("a PROXY v2 TLV is cut short")
        kind, length = tlvs[position], int.from_bytes(tlvs[position + 1:position + 3], "big")
        value = tlvs[position + 3:position + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError("a PROXY v2 TLV runs past the header")
        if kind == PP2_TYPE_SSL and value:
            ssl = bool(value[0] & PP2_CLIENT_SSL)
        position += 3 + length
    return ssl

