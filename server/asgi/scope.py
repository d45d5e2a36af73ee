"""The ASGI scopes of `http` and `websocket` requests, the same for HTTP/1.1 and HTTP/2."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ..edge.forwarded import Forwarding

# ASGI extensions every protocol supports (HTTPCycle, WebSocketSession implement them).
PATHSEND = "http.response.pathsend"
WEBSOCKET_HTTP_RESPONSE = "websocket.http.response"


def build_scope(kind: str, *, http_version: str, scheme: str, target: bytes,
                headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None,
                server: tuple[str, int | None] | None, root_path: str,
                state: dict[str, Any] | None, extensions: dict[str, Any],
                forwarding: Forwarding | None = None) -> dict[str, Any]:
    """What an `http` and a `websocket` scope share; the caller adds the keys of its kind.

    `forwarding`: the connection's peer is a trusted proxy, whose forwarding headers set the
    scope's client, scheme and server (edge/forwarded.py)."""
    raw_path, _, query_string = target.partition(b"?")
    # Like uvicorn and Starlette >= 0.33 expect: `path` includes root_path, `raw_path` is as received.
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    if root_path:
        path = root_path + path
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # fresh per request: apps may mutate scopes
        "http_version": http_version,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": extensions,
    }
    if state is not None:
        # Each request gets a shallow copy, so a request cannot rebind keys for later requests.
        scope["state"] = state.copy()
    if forwarding is not None:
        forwarding.apply(scope)
    return scope


def build_http_scope(*, method: str, extensions: dict[str, Any], http_version: str, scheme: str, target: bytes,
                     headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None,
                     server: tuple[str, int | None] | None, root_path: str,
                     state: dict[str, Any] | None, forwarding: Forwarding | None = None) -> dict[str, Any]:
    """An `http` scope: build_scope's keys and `method`. `extensions`: a dict of the caller's, made
    for this scope (completed in place). Built here in one dict display, without build_scope's
    keyword hand-offs, because it runs for every request."""
    raw_path, _, query_string = target.partition(b"?")
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    if root_path:
        path = root_path + path
    # HTTPCycle implements pathsend for every protocol; the protocol adds what is its own.
    extensions[PATHSEND] = {}
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},  # fresh per request: apps may mutate scopes
        "http_version": http_version,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": extensions,
        "method": method,
    }
    if state is not None:
        scope["state"] = state.copy()  # see build_scope
    if forwarding is not None:
        forwarding.apply(scope)
    return scope


def comma_list(headers: list[tuple[bytes, bytes]], field: bytes) -> list[str]:
    return [item.strip() for name, value in headers if name == field
            for item in value.decode("latin-1").split(",") if item.strip()]


def build_websocket_scope(*, headers: list[tuple[bytes, bytes]], scheme: str, extensions: dict[str, Any],
                          **common: Any) -> dict[str, Any]:
    scope = build_scope("websocket", headers=headers, scheme="wss" if scheme == "https" else "ws",
                        extensions={WEBSOCKET_HTTP_RESPONSE: {}, **extensions}, **common)
    scope["subprotocols"] = comma_list(headers, b"sec-websocket-protocol")
    return scope
