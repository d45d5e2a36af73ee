"""Listening sockets, and the choice of protocol for each accepted connection.

TLS connections are dispatched by the ALPN protocol the handshake selected;
cleartext ones by their first bytes (the HTTP/2 connection preface or not). With
--proxy-protocol, a connection's PROXY header is read first, before TLS or the preface.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import stat
from typing import Callable

from h2.errors import ErrorCodes

from ..config import Bind
from ..edge.proxyprotocol import VERSIONS, ProxyHeader, ProxyHeaderError, parse
from ..errors import StartupError
from ..http1.connection import HTTP1Protocol
from ..http2.connection import HTTP2Protocol
from .context import ServerContext

logger = logging.getLogger("plexicorn.error")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Seconds a connection accepted but not yet speaking HTTP (no first bytes, or its TLS handshake
# under way) has, once the server shuts down, to get there: its request may be on its way (a
# worker draining in a rolling restart accepted it a moment ago) and is then served with
# `connection: close` or GOAWAY, rather than cut off unanswered.
SHUTDOWN_GRACE = 1.0


def _hand_over(transport: asyncio.BaseTransport, protocol: asyncio.Protocol, data: bytes = b"") -> None:
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)


def tls_connections(context: ServerContext) -> Callable[[], asyncio.Protocol]:
    """Protocol factory for a TLS listener: handshake, then HTTP/2 or HTTP/1.1 by ALPN."""
    # Imported here, once per listener: cleartext-only servers never load the TLS package.
    from ..tls.store import h2_adequate
    from ..tls.transport import TLSLayer

    def on_handshake(transport: asyncio.Transport, proxied: ProxyHeader | None) -> asyncio.Protocol:
        context.metrics.tls_handshake(True)
        ssl_object = transport.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol()
        # With --http 2, a client that negotiated nothing is spoken to in HTTP/2 (it may know it).
        if protocol == "h2" or (protocol is None and context.config.http == "2"):
            return HTTP2Protocol(context, refuse_with=None if h2_adequate(ssl_object)
                                 else ErrorCodes.INADEQUATE_SECURITY, proxied=proxied)  # RFC 9113 §9.2
        return HTTP1Protocol(context, proxied)

    def on_failure(exc: BaseException, peer: object) -> None:
        # Scanners, health checks, wrong clients, timeouts: routine, so debug and a count.
        context.counters.tls_handshake_failures += 1
        context.metrics.tls_handshake(False)
        logger.debug("TLS handshake with %s failed: %s: %s", peer, type(exc).__name__, exc)

    class TLSConnection(TLSLayer):
        """A TLS layer the server tracks until its handshake ends, so that a shutdown closes it
        (no request has started on it); from the hand-over on, the HTTP protocol tracks itself."""

        def __init__(self, proxied: ProxyHeader | None = None) -> None:
            super().__init__(context.tls.context, handshake_timeout=context.config.tls_handshake_timeout,
                             on_handshake=self._handed_over, on_failure=on_failure)
            self._grace: asyncio.TimerHandle | None = None
            self.proxied = proxied

        def _handed_over(self, transport: asyncio.Transport) -> asyncio.Protocol:
            context.connections.discard(self)
            if self._grace is not None:
                self._grace.cancel()
            return on_handshake(transport, self.proxied)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            context.connections.add(self)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            context.connections.discard(self)
            if self._grace is not None:
                self._grace.cancel()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            self._grace = context.runtime.call_later(SHUTDOWN_GRACE, self._give_up)

        def _give_up(self) -> None:
            context.connections.discard(self)
            self.abort()

    return TLSConnection


class PrefaceDispatcher(asyncio.Protocol):
    """Cleartext: HTTP/2 with prior knowledge if the first bytes are the h2 preface, else HTTP/1.1."""

    def __init__(self, context: ServerContext, proxied: ProxyHeader | None = None) -> None:
        self.context = context
        self.proxied = proxied
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        # Tracked until the hand-over, so that a shutdown closes it (no request has started).
        self.context.connections.add(self)
        # A client that connects and says nothing is closed like an idle keep-alive one.
        delay = SHUTDOWN_GRACE if self.context.shutting_down else self.context.config.keep_alive_timeout
        self._timer = self.context.runtime.call_later(delay, transport.close)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        buffer = self.buffer
        config = self.context.config
        if len(buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(buffer) and config.http != "2":
            return  # could still be the preface
        self._forget()
        # With --no-h2c, HTTP/1.1 answers the preface (`PRI * HTTP/2.0`) with 505 and closes; with
        # --http 2, HTTP/2 ends a connection that does not open with it (RFC 9113 §3.4).
        h2 = config.http == "2" or (config.h2c and buffer.startswith(H2_PREFACE))
        protocol_class = HTTP2Protocol if h2 else HTTP1Protocol
        _hand_over(self.transport, protocol_class(self.context, proxied=self.proxied), buffer)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def _forget(self) -> None:
        self.context.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self) -> None:
        if self._timer is not None and self.transport is not None:  # not handed over yet
            self._timer.cancel()
            self._timer = self.context.runtime.call_later(SHUTDOWN_GRACE, self.transport.close)

    def abort(self) -> None:
        self._forget()
        if self.transport is not None:
            self.transport.close()


class ProxyHeaderReader(asyncio.Protocol):
    """--proxy-protocol: the PROXY header a connection must start with, from a trusted peer, within
    --tls-handshake-timeout. Then the connection and the bytes after the header go to `then(header)`
    (the TLS layer, or the preface dispatcher). Anything else closes it: a debug line, a count."""

    def __init__(self, context: ServerContext, then: Callable[[ProxyHeader], asyncio.Protocol]) -> None:
        self.context = context
        self.then = then
        self.versions = VERSIONS[context.config.proxy_protocol]
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = bytearray()  # a header trickling in byte by byte is not copied each time
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        if host not in self.context.trusted:
            transport.close()
            self._reject(host or "a Unix-socket peer", "not in --forwarded-allow-ips")
            return
        self.transport = transport
        self.context.connections.add(self)
        delay = SHUTDOWN_GRACE if self.context.shutting_down else self.context.config.tls_handshake_timeout
        self._timer = self.context.runtime.call_later(delay, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # rejected: closing
        self.buffer += data
        try:
            parsed = parse(self.buffer, self.versions)
        except ProxyHeaderError as exc:
            self._close(str(exc))
            return
        if parsed is None:
            return
        header, length = parsed
        transport, rest = self.transport, bytes(self.buffer[length:])
        self._forget()
        _hand_over(transport, self.then(header), rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()  # gone before its header: nothing to say about it

    def _timed_out(self) -> None:
        self._timer = None
        self._close("no complete PROXY header in time" if self.buffer else "no PROXY header in time")

    def _close(self, reason: str) -> None:
        transport = self.transport
        if transport is not None:
            peer = transport.get_extra_info("peername")
            self._forget()
            transport.close()
            self._reject(peer, reason)

    def _reject(self, peer: object, reason: str) -> None:
        self.context.counters.proxy_header_rejects += 1
        logger.debug("PROXY protocol: closed the connection from %s: %s", peer, reason)

    def _forget(self) -> None:
        self.transport = None
        self.context.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self) -> None:
        if self._timer is not None and self.transport is not None:  # its header is due any moment
            self._timer.cancel()
            self._timer = self.context.runtime.call_later(SHUTDOWN_GRACE, self._timed_out)

    def abort(self) -> None:
        transport = self.transport
        self._forget()
        if transport is not None:
            transport.close()


def bind_socket(bind: Bind, backlog: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Create, bind and listen; one socket per resolved address."""
    if bind.path is not None:
        return [_bind_unix(bind.path, backlog)]
    try:
        infos = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {bind}: cannot resolve {bind.host!r} ({exc.strerror})") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if address in seen:
                continue
            seen.add(address)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(f"cannot listen on {bind}: {_reason(exc)}") from None
    return sockets


def _bind_unix(path: str, backlog: int) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StartupError(f"cannot listen on unix:{path}: {_reason(exc)}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on unix:{path}: {_reason(exc)}") from None
    sock.setblocking(False)
    return sock


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (is another server running?)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


async def start_listening(context: ServerContext, sock: socket.socket) -> asyncio.Server:
    """Serve `context` on a bound socket: TLS when the context has certificates."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol]
    if context.tls is not None:
        factory = tls_connections(context)
    else:
        factory = functools.partial(PrefaceDispatcher, context)
    if context.config.proxy_protocol != "off":
        after_header: Callable[..., asyncio.Protocol] = factory
        factory = lambda: ProxyHeaderReader(context, after_header)  # noqa: E731
    return await loop.create_server(factory, sock=sock, backlog=context.config.backlog)
