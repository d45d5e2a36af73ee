"""Forwarding headers from a trusted proxy: `X-Forwarded-For`/`-Proto`/`-Host` and RFC 7239
`Forwarded`, turned into the scope's `client`, `scheme` and `server`.

Only a connection whose peer is trusted (trust.py) gets a `Forwarding` (runtime/context.py
decides once per connection); the scope builder (asgi/scope.py) then calls `apply` per request.
The headers themselves reach the app untouched, whoever sent them.

Which hop is the client: proxies append the address they received the request from, so the
list is read from the right, skipping addresses that are trusted proxies themselves; the first
other one is the client (entries to its left were written by the client and prove nothing).
If both families are present, `X-Forwarded-*` wins: nginx, HAProxy and most load balancers
set those and pass a client's own `Forwarded` through unchanged, so it cannot be believed.
Malformed values are ignored: the scope keeps what the connection says.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from .trust import TrustedPeers, parse_ip

# Trusted hops walked from the right before a list is given up on (a longer chain is not one
# we were told about; the walk stays bounded whatever the header holds).
MAX_HOPS = 32

_SECURE = {"https": True, "wss": True, "http": False, "ws": False}
_SCHEMES = {("http", True): "https", ("http", False): "http", ("websocket", True): "wss", ("websocket", False): "ws"}

X_FORWARDED_FOR = b"x-forwarded-for"
X_FORWARDED_PROTO = b"x-forwarded-proto"
X_FORWARDED_HOST = b"x-forwarded-host"
FORWARDED = b"forwarded"
_NAMES = frozenset((X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, FORWARDED))

# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string. Pairs are
# separated by ";" within an element, elements by ",". Unquoted values are read leniently (an
# IPv6 node without its quotes), so the separator is the only thing that ends them.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^;,"\s]*))[ \t]*([;,]|$)')
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z._~!$&'()*+;=%-]+)(?::([0-9]{1,5}))?")
_UNESCAPE = re.compile(r"\\(.)")


class Forwarded(NamedTuple):
    """What the trusted hops said: each part None if not said (or not believable)."""

    client: tuple[str, int] | None
    secure: bool | None
    host: tuple[str, int | None] | None


# The longest node: "[" + 45 characters of IPv6 + "]:65535"; and the longest host name and port.
NODE_MAX = 64
HOST_MAX = 260
# Forwarded values up to this length are cached whole.
CACHED_FORWARDED_MAX = 1024


# The same proxies and clients come back request after request: their parsed forms are cached
# (pure functions of the text; the caches hold a bounded number of short values, and a peer
# sending new values each time only costs the parsing it would cost anyway).
@lru_cache(maxsize=4096)
def parse_node(text: str) -> tuple[str, int] | None:
    """A `for=` node or an X-Forwarded-For entry: an IP address with an optional port
    (`192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`), as
    (address, port), port 0 when absent. None for anything else (`unknown`, `_hidden`, garbage)."""
    text = text.strip()
    if len(text) > NODE_MAX:
        return None
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
        if rest and not port_text:
            return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            return None
    else:
        host = text
    address = parse_ip(host)
    if address is None or "%" in host:
        return None
    port = 0
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 or int(port_text) > 65535:
            return None
        port = int(port_text)
    return str(address), port


@lru_cache(maxsize=1024)
def parse_host(text: str) -> tuple[str, int | None] | None:
    """An X-Forwarded-Host or `host=` value (`example.com`, `example.com:8443`, `[::1]:8443`) as
    (host, port or None); None if it is not a host."""
    text = text.strip()
    if len(text) > HOST_MAX:
        return None
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    host, port = match.group(1), match.group(2)
    if port is not None and int(port) > 65535:
        return None
    return host.lower(), int(port) if port is not None else None


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 elements, left to right, each {lower-cased name: value}; None if malformed.
    Callers must not change what it returns (short values' answers are cached)."""
    return _parse_forwarded_cached(value) if len(value) <= CACHED_FORWARDED_MAX else _parse_forwarded(value)


def _parse_forwarded(value: str) -> list[dict[str, str]] | None:
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    position, end = 0, len(value)
    while position < end:
        match = _PAIR.match(value, position)
        if match is None:
            return None
        name, quoted, plain, separator = match.groups()
        element[name.lower()] = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else plain
        if separator != ";":
            elements.append(element)
            element = {}
        position = match.end()
        if separator == "," and position == end:
            return None  # a trailing comma: an empty element
    return elements


_parse_forwarded_cached = lru_cache(maxsize=1024)(_parse_forwarded)


def _rightmost(value: str) -> str:
    return value.rpartition(",")[2].strip()


def resolve(headers: list[tuple[bytes, bytes]], trusted: TrustedPeers, take_host: bool) -> Forwarded | None:
    """What the forwarding headers among `headers` say, or None when there are none."""
    found: dict[bytes, list[str]] | None = None
    for name, value in headers:
        if name in _NAMES:
            if found is None:
                found = {}
            found.setdefault(name, []).append(value.decode("latin-1"))
    if found is None:
        return None
    if X_FORWARDED_FOR in found or X_FORWARDED_PROTO in found or X_FORWARDED_HOST in found:
        return _x_forwarded(found, trusted, take_host)
    return _forwarded(found[FORWARDED], trusted, take_host)


def _x_forwarded(found: dict[bytes, list[str]], trusted: TrustedPeers, take_host: bool) -> Forwarded:
    client = None
    entries = found.get(X_FORWARDED_FOR)
    if entries is not None:
        # Several header lines are one comma list (RFC 9110 §5.3).
        hops = ",".join(entries).split(",")
        index = _client_index(hops, trusted)
        client = parse_node(hops[index]) if index is not None else None
    secure = None
    proto = found.get(X_FORWARDED_PROTO)
    if proto is not None:
        # The hop nearest to us set the rightmost value; it is the one we can believe.
        secure = _SECURE.get(_rightmost(proto[-1]).lower())
    host = None
    if take_host and X_FORWARDED_HOST in found:
        host = parse_host(_rightmost(found[X_FORWARDED_HOST][-1]))
    return Forwarded(client, secure, host)


def _client_index(hops: list[str], trusted: TrustedPeers) -> int | None:
    """Index of the client's entry: the rightmost one that is not a trusted proxy; the leftmost
    if all are trusted; None past MAX_HOPS trusted ones."""
    index = len(hops) - 1
    for _ in range(MAX_HOPS):
        if index < 0:
            return 0 if hops else None
        node = parse_node(hops[index])
        if node is None or node[0] not in trusted:
            return index
        index -= 1
    return 0 if index < 0 else None


def _forwarded(values: list[str], trusted: TrustedPeers, take_host: bool) -> Forwarded | None:
    elements = parse_forwarded(",".join(values))
    if not elements:
        return None
    # Every part comes from the element the client's first proxy wrote: the rightmost element
    # whose `for=` is not a trusted proxy.
    index = _client_index([element.get("for", "") for element in elements], trusted)
    if index is None:
        return None
    element = elements[index]
    client = parse_node(element.get("for", ""))
    proto = element.get("proto")
    secure = _SECURE.get(proto.lower()) if proto is not None else None
    host = parse_host(element["host"]) if take_host and "host" in element else None
    return Forwarded(client, secure, host)


class Forwarding:
    """Applies a trusted peer's forwarding headers to the scopes of its requests."""

    __slots__ = ("trusted", "take_host")

    def __init__(self, trusted: TrustedPeers, take_host: bool) -> None:
        self.trusted = trusted
        self.take_host = take_host

    def apply(self, scope: dict[str, Any]) -> None:
        headers = scope["headers"]
        for name, _ in headers:
            if name in _NAMES:
                break
        else:
            return  # none: what resolve() would find, without its call (this runs for every request)
        said = resolve(headers, self.trusted, self.take_host)
        if said is None:
            return
        client, secure, host = said
        if client is not None:
            scope["client"] = client
        if secure is not None:
            scope["scheme"] = _SCHEMES[scope["type"], secure]
        if host is not None:
            name, port = host
            if port is None:
                port = 443 if scope["scheme"] in ("https", "wss") else 80
            scope["server"] = (name.strip("[]"), port)
