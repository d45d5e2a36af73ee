"""HTTP/1.1 connections, on h11: one request at a time, pipelined requests in order."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

import h11

from .asgi import HTTPCycle, build_http_scope, run_http_app
from .context import ConnectionInfo, ServerContext, describe_connection, log_access
from .outbox import Outbox

logger = logging.getLogger("plexicorn.error")

# Request-body bytes buffered for an app that is not reading before we stop reading the socket.
READ_HIGH_WATER = 64 * 1024

# Reason phrases, computed once; h11 would otherwise send an empty one.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


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

    def fail(self) -> None:
        try:
            super().fail()
        except h11.LocalProtocolError:
            # h11 refused what the app sent earlier (bad header, wrong length): it is in
            # its ERROR state and the only way left to end the exchange is to close.
            self._wire_abort()

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

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.outbox = Outbox(self._loop, transport)
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
        if self.cycle is None:
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
                self.start_cycle(event)  # type: ignore[arg-type]
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
            extensions={"tls": dict(info.tls)} if info.tls is not None else {},
        )
        cycle = self.cycle = HTTP1Cycle(self, scope, request.target)
        self.context.spawn(run_http_app(self.context.app, cycle))

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


def request_problem(request: h11.Request, max_header_size: int) -> tuple[int, str] | None:
    """What h11 accepts but we refuse: an oversized header block, ambiguous body framing."""
    # h11 applies its size limit only to an incomplete head, so a whole one read at once passes.
    size = len(request.method) + len(request.target) + 12 + sum(
        len(name) + len(value) + 4 for name, value in request.headers)
    if size > max_header_size:
        return 431, "request header block too large"
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        # RFC 9112 §6.3: a request-smuggling vector; never read further requests behind it.
        return 400, "both Content-Length and Transfer-Encoding"
    return None
