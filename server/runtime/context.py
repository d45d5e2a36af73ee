"""State shared by every connection of one running server."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, NamedTuple, Protocol

from ..asgi.http import ASGIApp, BodyLimits
from ..config import Config
from .admission import Admission
from ..edge.forwarded import Forwarding
from ..edge.proxyprotocol import ProxyHeader
from ..edge.trust import TrustedPeers
from ..observe.metrics import NULL_METRICS, Metrics
from .accesslog import access_logger, log_access
from .services import Runtime

__all__ = ["ConnectionInfo", "Counters", "ServerContext", "describe_connection", "log_access"]

# The Counters.limit_hits key of --header-timeout, for both protocols.
HEADER_TIMEOUT = "header timeout"


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
    # Connections closed for a missing, malformed or untrusted PROXY protocol header.
    proxy_header_rejects: int = 0

    # Requests (or connections) ended by a limit, by limit: "concurrency" (503), "request body
    # size" (413), "header timeout" (408 or GOAWAY), "body timeout" (408 or RST_STREAM).
    limit_hits: dict[str, int] = field(default_factory=dict)

    def flood_closed(self, reason: str) -> None:
        self.flood_closes[reason] = self.flood_closes.get(reason, 0) + 1

    def limit_hit(self, limit: str) -> None:
        self.limit_hits[limit] = self.limit_hits.get(limit, 0) + 1


@dataclass
class ServerContext:
    app: ASGIApp
    config: Config
    # The lifespan state; each request's scope gets a shallow copy. None: no lifespan ran.
    state: dict[str, Any] | None = None
    # The TLS certificates and settings (a plexicorn.tls.ServerTLS) when this listener speaks TLS.
    tls: Any = None
    counters: Counters = field(default_factory=Counters)
    # What --metrics-bind exposes (observe/metrics.py); the null one, counting nothing, when off.
    metrics: Metrics = NULL_METRICS
    # Headers added to every response (--header, --server-header), computed once at start-up;
    # on TLS connections the TLS list (those and Strict-Transport-Security).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    tls_response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: set[Connection] = field(default_factory=set)
    # Loop services (timers, tasks): the running loop's unless a test passes its own.
    runtime: Runtime = field(default_factory=Runtime)
    shutting_down: bool = False
    # The --limit-concurrency gate; a context of the same process may share another's.
    admission: Admission | None = None
    # --forwarded-allow-ips; and what trusted peers' forwarding headers may change (None: ignored).
    trusted: TrustedPeers = field(init=False)
    forwarding: Forwarding | None = field(init=False)
    _date_second: int = -1
    _date_header: bytes = b""

    def __post_init__(self) -> None:
        config = self.config
        # One gate for every request of this context, HTTP/1.1 and HTTP/2 alike: it wraps the app.
        if self.admission is None:
            self.admission = Admission(config.limit_concurrency, self.counters.limit_hit)
        self.app = self.admission.gate(self.app)
        # What each request body may cost, handed to every HTTP exchange (asgi/http.py).
        self.body_limits = BodyLimits(config.max_request_body_size, config.body_timeout,
                                      self.runtime.call_later, self.counters.limit_hit)
        self.trusted = TrustedPeers(config.forwarded_allow_ips or "")
        self.forwarding = Forwarding(self.trusted, config.forwarded_host) if config.proxy_headers else None

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
    # Set when the peer is a trusted proxy and forwarding headers are on: applied to each scope.
    forwarding: Forwarding | None = None
    # The "proxy_protocol" extension of a connection that opened with a PROXY header.
    proxy_protocol: dict[str, Any] | None = None
    tls_log: tuple[str, str | None] | None = None  # (TLS version, ALPN protocol) for the access log

    def scope_extensions(self) -> dict[str, Any]:
        """The ASGI extensions every exchange of this connection has: `tls` on TLS,
        `proxy_protocol` after a PROXY header; copied per scope because apps may mutate scopes."""
        extensions = {"tls": dict(self.tls)} if self.tls is not None else {}
        if self.proxy_protocol is not None:
            extensions["proxy_protocol"] = dict(self.proxy_protocol)
        return extensions


def describe_connection(transport: asyncio.BaseTransport, context: ServerContext,
                        proxied: ProxyHeader | None = None) -> ConnectionInfo:
    """The connection's addresses (those of its PROXY header, `proxied`, if it had one), scheme
    and TLS details, and whether its peer's forwarding headers are believed."""
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    if proxied is not None and not proxied.local:
        client, server = proxied.client, proxied.server
    else:
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        if isinstance(sock, tuple):
            server = (sock[0], sock[1])
        elif sock:
            server = (sock, None)
        else:
            server = None
    forwarding = context.forwarding
    # Once per connection: whether its peer may speak for its clients.
    if forwarding is not None and (client[0] if client is not None else None) not in context.trusted:
        forwarding = None
    # A PROXY header without the client's address (LOCAL, UNKNOWN, UNIX) leaves the proxy relaying
    # the client's own bytes: its forwarding headers would be the client's word, not the proxy's.
    if proxied is not None and (proxied.local or client is None):
        forwarding = None
    # PP2_TYPE_SSL: whether the client spoke TLS to the proxy (which may have ended it).
    proxy = {"version": proxied.version, "ssl": proxied.ssl} if proxied is not None else None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ConnectionInfo(client, server, "http", None, context.response_headers, forwarding, proxy)
    tls = context.tls.connection_info(ssl_object) if context.tls is not None else None
    return ConnectionInfo(client, server, "https", tls, context.tls_response_headers, forwarding, proxy,
                          (ssl_object.version() or "-", ssl_object.selected_alpn_protocol()))
