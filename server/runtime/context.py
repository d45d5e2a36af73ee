"""State shared by every connection of one running server."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, NamedTuple, Protocol

from ..asgi.http import ASGIApp
from ..config import Config
from .accesslog import access_logger, log_access
from .services import Runtime

__all__ = ["ConnectionInfo", "Counters", "ServerContext", "describe_connection", "log_access"]


class Connection(Protocol):
    def shutdown(self) -> None:
        """Finish in-flight requests, accept no new ones, then close."""

    def abort(self) -> None:
        """Close now."""


@dataclass
class Counters:
    """What a running server has seen, for operators and tests (`Server.counters`)."""

    tls_handshake_failures: int = 0
    tls_reloads: int = 0
    tls_reload_failures: int = 0
    # Connections ended for exceeding a flood budget, by reason (e.g. "client resets").
    flood_closes: dict[str, int] = field(default_factory=dict)

    def flood_closed(self, reason: str) -> None:
        self.flood_closes[reason] = self.flood_closes.get(reason, 0) + 1


@dataclass
class ServerContext:
    app: ASGIApp
    config: Config
    # The lifespan state; each request's scope gets a shallow copy. None: no lifespan ran.
    state: dict[str, Any] | None = None
    # The TLS certificates and settings (a plexicorn.tls.ServerTLS) when this listener speaks TLS.
    tls: Any = None
    counters: Counters = field(default_factory=Counters)
    # Headers added to every response (--header, --server-header), computed once at start-up;
    # on TLS connections the TLS list (those and Strict-Transport-Security).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    tls_response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: set[Connection] = field(default_factory=set)
    # Loop services (timers, tasks): the running loop's unless a test passes its own.
    runtime: Runtime = field(default_factory=Runtime)
    shutting_down: bool = False
    _date_second: int = -1
    _date_header: bytes = b""

    @property
    def access_log(self) -> bool:
        return self.config.access_log and access_logger.isEnabledFor(logging.INFO)

    def date_header(self) -> bytes | None:
        """The HTTP `date` value, formatted at most once per second; None with --no-date-header."""
        if not self.config.date_header:
            return None
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_header = formatdate(now, usegmt=True).encode("ascii")
        return self._date_header

    @property
    def tasks(self) -> set[asyncio.Task]:
        """The ASGI calls still running, for a shutdown to wait for or cancel."""
        return self.runtime.tasks

    def spawn(self, coroutine: Any) -> asyncio.Task:
        """Start an ASGI call; the server tracks it so shutdown can wait for or cancel it."""
        return self.runtime.spawn(coroutine)


class ConnectionInfo(NamedTuple):
    """What every request of one connection shares in its ASGI scope."""

    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    tls: dict[str, Any] | None  # the ASGI "tls" extension
    response_headers: list[tuple[bytes, bytes]]  # added to every response (HSTS on TLS)
    tls_log: tuple[str, str | None] | None = None  # (TLS version, ALPN protocol) for the access log

    def scope_extensions(self) -> dict[str, Any]:
        """The ASGI extensions every exchange of this connection has: `tls` on TLS, copied
        per scope because apps may mutate scopes."""
        return {"tls": dict(self.tls)} if self.tls is not None else {}


def describe_connection(transport: asyncio.BaseTransport, context: ServerContext) -> ConnectionInfo:
    peer = transport.get_extra_info("peername")
    sock = transport.get_extra_info("sockname")
    client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
    if isinstance(sock, tuple):
        server: tuple[str, int | None] | None = (sock[0], sock[1])
    elif sock:
        server = (sock, None)
    else:
        server = None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ConnectionInfo(client, server, "http", None, context.response_headers)
    tls = context.tls.connection_info(ssl_object) if context.tls is not None else None
    return ConnectionInfo(client, server, "https", tls, context.tls_response_headers,
                          (ssl_object.version() or "-", ssl_object.selected_alpn_protocol()))
