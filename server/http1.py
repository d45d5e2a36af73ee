"""HTTP/1.1 connections, on h11: one request at a time, pipelined requests in order."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from http import HTTPStatus
from typing import Any

import h11
import h2.exceptions
import h2.settings
from h11._writers import ChunkedWriter  # h11 exposes no public way to ask how a body is framed

from .asgi import (FILE_CHUNK, ZEROCOPYSEND, ASGIMessageError, ClientDisconnected, HTTPCycle, build_http_scope,
                   run_http_app)
from .context import ConnectionInfo, ServerContext, describe_connection, log_access
from .h2request import CONNECTION_SPECIFIC
from .http2 import HTTP2Protocol
from .outbox import Outbox

logger = logging.getLogger("plexicorn.error")

# Request-body bytes buffered for an app that is not reading before we stop reading the socket.
READ_HIGH_WATER = 64 * 1024

# Reason phrases, computed once; h11 would otherwise send an empty one.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}

# Request body read before a `101 Switching Protocols` to h2c, held whole in memory; a larger
# body is served over HTTP/1.1 instead (a server may ignore an upgrade: RFC 9110 §7.8).
H2C_UPGRADE_BODY_LIMIT = READ_HIGH_WATER  # the body is buffered whole before the switch


class HTTP1Cycle(HTTPCycle):
    __slots__ = ("protocol", "target", "head")

    def __init__(self, protocol: HTTP1Protocol, scope: dict[str, Any], target: bytes) -> None:
        super().__init__(scope, protocol.info.response_headers)
        self.protocol = protocol
        self.target = target
        self.head = scope["method"] == "HEAD"

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        protocol = self.protocol
        headers.insert(0, (b"date", protocol.context.date_header()))
        # A client still waiting for 100 Continue holds its body back, so we will close rather
        # than read it: say so (RFC 9110 §10.1.1), or it may reuse the connection.
        if protocol.last_response or protocol.conn.they_are_waiting_for_100_continue:
            headers.append((b"connection", b"close"))
        protocol.send_event(h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b"")))

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        self._wire_body_nowait(body, more_body)
        if more_body:
            await self.protocol.outbox.drain()

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        protocol = self.protocol
        try:
            if body and not self.head:
                protocol.send_event(h11.Data(data=body))
            if not more_body:
                protocol.send_event(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The body does not match the declared content-length: the response cannot be
            # completed, and the client must not wait for the rest.
            self._wire_abort()
            raise
        if not more_body:
            protocol.response_complete(self)

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        protocol = self.protocol
        if headers and not isinstance(protocol.conn._writer, ChunkedWriter):
            # Only a chunked body has room for a trailer section (RFC 9112 §7.1.2); with a
            # content-length (or HEAD, HTTP/1.0) the response still completes, without them.
            logger.debug("dropping response trailers: the response to %s is not chunked", self.target)
            headers = []
        try:
            protocol.send_event(h11.EndOfMessage(headers=headers))
        except h11.LocalProtocolError:
            self._wire_abort()  # short of its content-length, or a trailer field h11 refuses
            raise
        protocol.response_complete(self)

    def _wire_early_hint(self, links: list[bytes]) -> None:
        protocol = self.protocol
        if self.scope["http_version"] != "1.1":
            return  # no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
        conn = protocol.conn
        # h11 takes any 1xx as the answer to `Expect: 100-continue`; a 103 is not (RFC 9110 §10.1.1).
        waiting = conn.client_is_waiting_for_100_continue
        protocol.send_event(h11.InformationalResponse(
            status_code=103, headers=[(b"link", link) for link in links], reason=b"Early Hints"))
        conn.client_is_waiting_for_100_continue = waiting

    def fail(self) -> None:
        try:
            super().fail()
        except h11.LocalProtocolError:
            # h11 refused what the app sent earlier (bad header, wrong length): it is in
            # its ERROR state and the only way left to end the exchange is to close.
            self._wire_abort()

    async def _wire_zerocopy(self, file: Any, offset: int | None, count: int | None) -> int:
        protocol = self.protocol
        if not protocol.sendfile_ok:
            return await super()._wire_zerocopy(file, offset, count)
        if offset is None:
            offset = file.tell()
        if count is None:
            count = max(os.fstat(file.fileno()).st_size - offset, 0)
        if not count or self.head:
            return 0
        # h11 frames a body it never sees: it counts the placeholder's length (content-length,
        # chunk size) and hands it back among the framing bytes, where the file goes instead.
        placeholder = _FileRange(count)
        try:
            pieces = protocol.conn.send_with_data_passthrough(h11.Data(data=placeholder))  # type: ignore[arg-type]
        except h11.LocalProtocolError:
            self._wire_abort()  # longer than the declared content-length
            raise
        outbox = protocol.outbox
        for piece in pieces:  # type: ignore[union-attr]
            if piece is not placeholder:
                outbox.write(piece)
                continue
            outbox.write_now()  # the framing must precede the file on the socket
            try:
                sent = await self._sendfile(file, offset, count)
            except BaseException as exc:
                # Part of the file may be out: the framing can no longer be kept.
                protocol.abort()
                if self.disconnected or isinstance(exc, ConnectionError):
                    raise ClientDisconnected("client disconnected") from exc
                raise
            if sent != count:
                protocol.abort()
                raise ASGIMessageError(f"'http.response.zerocopysend': the file ended after {sent} of {count} bytes")
        return count

    async def _sendfile(self, file: Any, offset: int, count: int) -> int:
        protocol = self.protocol
        loop = protocol._loop
        # Anything else written meanwhile (a 100 Continue) waits: the transport is the sendfile's.
        protocol.outbox.hold()
        try:
            # asyncio waits for the transport's buffer to empty, then os.sendfile (or read/write).
            return await loop.sendfile(protocol.transport, file, offset, count)  # type: ignore[arg-type]
        except NotImplementedError:
            pass  # uvloop has no loop.sendfile: copy through the outbox, reading off the loop
        finally:
            protocol.outbox.release()
        fd = file.fileno()
        sent = 0
        while sent < count:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(FILE_CHUNK, count - sent), offset + sent)
            if not chunk:
                break
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            protocol.outbox.write(chunk)
            sent += len(chunk)
            await protocol.outbox.drain()
        file.seek(offset + sent)  # where loop.sendfile leaves it
        return sent

    def _wire_abort(self) -> None:
        # A started HTTP/1.1 response can only be cut short by closing the connection.
        self.protocol.outbox.close_after_flush()

    def _wire_consumed(self, size: int) -> None:
        self.protocol.update_reading()

    def _wire_receive_waiting(self) -> None:
        protocol = self.protocol
        if protocol.conn.they_are_waiting_for_100_continue:
            protocol.send_event(h11.InformationalResponse(status_code=100, headers=[], reason=REASONS[100]))
        protocol.update_reading()


class HTTP1Protocol(asyncio.Protocol):
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.config = context.config
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=context.config.h2_max_header_list_size)
        self.cycle: HTTP1Cycle | None = None
        self.transport: asyncio.Transport | None = None
        self.outbox: Outbox
        self.info: ConnectionInfo
        self.requests = 0
        self._reading_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._upgrade: _H2CUpgrade | None = None  # an h2c upgrade request whose body is being read
        self.sendfile_ok = False

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.outbox = Outbox(self._loop, transport)
        # sendfile writes to the socket itself: not through TLS (ours encrypts in user space).
        self.sendfile_ok = (transport.get_extra_info("ssl_object") is None
                            and transport.get_extra_info("socket") is not None)
        self.info = describe_connection(transport, self.context)
        self.context.connections.add(self)
        self._start_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self.outbox.closed:
            return  # closing: input is dropped while the last response drains
        self.conn.receive_data(data)
        self.handle_events()

    def eof_received(self) -> bool | None:
        if not self.outbox.closed:
            self.conn.receive_data(b"")
            self.handle_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        self._cancel_idle_timer()
        self.outbox.connection_lost()
        if self.cycle is not None:
            self.cycle.disconnect()

    def pause_writing(self) -> None:
        self.outbox.pause()
        self.update_reading()

    def resume_writing(self) -> None:
        self.outbox.resume()
        self.update_reading()
        if self.cycle is None:
            self.handle_events()

    # -- server lifecycle -------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.cycle is None and self._upgrade is None:
            self.outbox.close_after_flush()
        # else: the response in flight gets `connection: close` or closes on completion.

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- protocol ---------------------------------------------------------------------------
    def handle_events(self) -> None:
        if self.outbox.closed:
            return  # the connection went away while pipelined requests waited
        if self.cycle is None and self.outbox.paused:
            return  # the client is not reading our responses: start no new one (resume_writing)
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.reject(exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            kind = type(event)
            if kind is h11.Request:
                problem = request_problem(event, self.config.h2_max_header_list_size)  # type: ignore[arg-type]
                if problem is not None:
                    self.reject(*problem)
                    return
                settings = (h2c_upgrade_settings(event)  # type: ignore[arg-type]
                            if self.config.h2c and self.info.scheme == "http" else None)
                if settings is None:
                    self.start_cycle(event)  # type: ignore[arg-type]
                else:
                    self._begin_upgrade(event, settings)  # type: ignore[arg-type]
            elif self._upgrade is not None:
                if self._upgrade_event(event):
                    return  # the connection is HTTP/2 now, or closed
            elif kind is h11.Data:
                self.cycle.feed_body(event.data)  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                self.cycle.end_body()  # type: ignore[union-attr]
            elif kind is h11.ConnectionClosed:
                if self.cycle is not None:
                    self.cycle.disconnect()
                self.outbox.close_after_flush()
                break
        self.update_reading()

    @property
    def last_response(self) -> bool:
        """Whether the response in flight is this connection's last (then `connection: close`)."""
        limit = self.config.max_requests_per_connection
        return self.context.shutting_down or bool(limit and self.requests >= limit)

    def start_cycle(self, request: h11.Request) -> None:
        self._cancel_idle_timer()
        self.requests += 1
        info = self.info
        scope = build_http_scope(
            http_version=request.http_version.decode("ascii"),
            method=request.method.decode("ascii"),
            scheme=info.scheme,
            target=request.target,
            headers=list(request.headers),
            client=info.client,
            server=info.server,
            root_path=self.config.root_path,
            state=self.context.state,
            extensions=self._extensions(request.http_version),
        )
        cycle = self.cycle = HTTP1Cycle(self, scope, request.target)
        self.context.spawn(run_http_app(self.context.app, cycle))

    def _extensions(self, http_version: bytes) -> dict[str, Any]:
        extensions: dict[str, Any] = {"tls": dict(self.info.tls)} if self.info.tls is not None else {}
        if http_version == b"1.1":
            # HTTP/1.0 has neither chunked bodies (for trailers) nor 1xx responses.
            extensions["http.response.trailers"] = {}
            extensions["http.response.early_hint"] = {}
        if self.sendfile_ok:
            extensions[ZEROCOPYSEND] = {}
        return extensions

    # -- Upgrade: h2c (RFC 7540 §3.2) ----------------------------------------------------
    def _begin_upgrade(self, request: h11.Request, settings: bytes) -> None:
        # The body is read before any app runs: a client that goes silent meanwhile is closed by
        # the keep-alive timer (restarted by each piece of body), as an idle connection would be.
        self._start_idle_timer()
        self._upgrade = _H2CUpgrade(request, settings)
        if self.conn.they_are_waiting_for_100_continue:
            self.send_event(h11.InformationalResponse(status_code=100, headers=[], reason=REASONS[100]))

    def _upgrade_event(self, event: Any) -> bool:
        """Body of an upgrade request; True once the connection is no longer ours to read."""
        upgrade = self._upgrade
        assert upgrade is not None
        kind = type(event)
        if kind is h11.Data:
            self._start_idle_timer()
            upgrade.body.append(event.data)
            upgrade.size += len(event.data)
            if upgrade.size > H2C_UPGRADE_BODY_LIMIT:
                # Too much to hold: ignore the upgrade, serve over HTTP/1.1 with what was read.
                self._upgrade = None
                self.start_cycle(upgrade.request)
                self.cycle.feed_body(b"".join(upgrade.body))  # type: ignore[union-attr]
            return False
        if kind is h11.EndOfMessage:
            self._switch_to_h2(upgrade)
            return True
        if kind is h11.ConnectionClosed:
            self._upgrade = None
            self.outbox.close_after_flush()
            return True
        return False

    def _switch_to_h2(self, upgrade: _H2CUpgrade) -> None:
        self._upgrade = None
        self.send_event(h11.InformationalResponse(
            status_code=101, headers=[(b"connection", b"Upgrade"), (b"upgrade", b"h2c")], reason=REASONS[101]))
        # What the client sent after the request: its HTTP/2 preface and first frames.
        rest, _ = self.conn.trailing_data
        self.context.connections.discard(self)
        self._cancel_idle_timer()
        transport = self.transport
        assert transport is not None
        if self._reading_paused:
            transport.resume_reading()
        protocol = HTTP2Protocol.upgraded(self.context, upgrade.settings, h2c_request_block(upgrade.request),
                                          b"".join(upgrade.body))
        # The 101 leaves in our outbox's flush, already scheduled (call_soon is FIFO), ahead of
        # the HTTP/2 protocol's first flush with the server preface.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            protocol.data_received(rest)

    def send_event(self, event: Any) -> None:
        self.outbox.write(self.conn.send(event))  # type: ignore[arg-type]

    def update_reading(self) -> None:
        """Stop reading while the app leaves its body unread or pipelined requests pile up.

        Reading goes on otherwise, also while a response is in flight, so that a client
        that hangs up is seen and the app's `receive()` yields `http.disconnect`.
        """
        cycle = self.cycle
        # h11's public trailing_data copies its whole buffer: its length is all that is needed.
        want_pause = self.outbox.paused or cycle is not None and (
            cycle.buffered > READ_HIGH_WATER
            or (self.conn.their_state is h11.DONE and len(self.conn._receive_buffer) > READ_HIGH_WATER))
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if want_pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not want_pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def response_complete(self, cycle: HTTP1Cycle) -> None:
        if self.context.access_log:
            log_access(self.info.client, cycle.scope["method"], cycle.target.decode("latin-1"),
                       cycle.scope["http_version"], cycle.status, cycle.bytes_sent)
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE or self.last_response:
            # The request body was not read to its end (or the client or we asked to close).
            self.outbox.close_after_flush()
            return
        conn.start_next_cycle()
        self.cycle = None
        self._start_idle_timer()
        # Pipelined requests h11 already holds are handled on the next loop turn.
        self._loop.call_soon(self.handle_events)

    def reject(self, status: int, reason: str) -> None:
        """Answer a malformed request and close the connection."""
        logger.debug("bad HTTP/1.1 request from %s: %s", self.info.client, reason)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            phrase = REASONS.get(status, b"Bad Request")
            body = phrase + b": " + reason.encode("utf-8", "replace") + b"\n"
            try:
                self.send_event(h11.Response(status_code=status, reason=phrase, headers=[
                    (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"), (b"date", self.context.date_header())]))
                self.send_event(h11.Data(data=body))
                self.send_event(h11.EndOfMessage())
            except h11.LocalProtocolError:
                pass
        if self.cycle is not None:
            self.cycle.disconnect()
        self.outbox.close_after_flush()

    # -- keep-alive timeout -----------------------------------------------------------------
    def _start_idle_timer(self) -> None:
        self._cancel_idle_timer()
        self._idle_timer = self._loop.call_later(self.config.keep_alive_timeout, self._idle_timeout)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self.cycle is None:
            self.outbox.close_after_flush()


class _FileRange:
    """Stands for the file bytes in h11's output: only its length matters to h11."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class _H2CUpgrade:
    __slots__ = ("request", "settings", "body", "size")

    def __init__(self, request: h11.Request, settings: bytes) -> None:
        self.request = request
        self.settings = settings
        self.body: list[bytes] = []
        self.size = 0


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def h2c_upgrade_settings(request: h11.Request) -> bytes | None:
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
    for name, value in request.headers:
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


def h2c_request_block(request: h11.Request) -> list[tuple[bytes, bytes]]:
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


def request_problem(request: h11.Request, max_header_size: int) -> tuple[int, str] | None:
    """What h11 accepts but we refuse: an oversized header block, ambiguous body framing."""
    # h11 applies its size limit only to an incomplete head, so a whole one read at once passes.
    size = len(request.method) + len(request.target) + 12 + sum(
        len(name) + len(value) + 4 for name, value in request.headers)
    if size > max_header_size:
        return 431, "request header block too large"
    if request.http_version[:2] != b"1.":
        # h11 parses any digit.digit version, the HTTP/2 preface `PRI * HTTP/2.0` (h2c off) included.
        return 505, f"HTTP/{request.http_version.decode('ascii')} is not supported"
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        # RFC 9112 §6.3: a request-smuggling vector; never read further requests behind it.
        return 400, "both Content-Length and Transfer-Encoding"
    return None
