"""HTTP/1.1 connections: one request at a time, pipelined requests in order.

Bytes become requests through an HTTP/1.1 codec (`codec.py`: h11, or llhttp with the `httptools`
extra); this module never sees which.

A module longer than 400 lines: the connection's reading, its exchange's verbs (owner.ExchangeOwner)
and the `Upgrade: h2c` hand-over share the connection's state, which splitting would expose.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Coroutine

from ..asgi.headers import REASONS, plain_response
from ..asgi.http import BODY_SIZE, ZEROCOPYSEND, ResponseState, run_http_app
from ..asgi.scope import build_http_scope, build_websocket_scope
from ..asgi.websocket import WebSocketSession, run_websocket_app
from ..edge.proxyprotocol import ProxyHeader
from ..http2.connection import HTTP2Protocol
from ..observe.metrics import HTTP1
from ..runtime.context import (
    HEADER_TIMEOUT,
    ConnectionInfo,
    ServerContext,
    describe_connection,
    log_access,
)
from ..runtime.outbox import Outbox
from .codec import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    SWITCH,
    BadRequest,
    Request,
    ResponseError,
)
from .exchange import HTTP1Cycle
from .h2c import H2CUpgrade, h2c_request_block, h2c_upgrade_settings
from .parser import codec_factory
from .request import request_problem
from .sendfile import send_file
from .websocket import HTTP1WebSocket, handshake_problem, is_websocket_upgrade

logger = logging.getLogger("plexicorn.error")

# Request-body bytes buffered for an app that is not reading before we stop reading the socket.
READ_HIGH_WATER = 64 * 1024

# Request body read before a `101 Switching Protocols` to h2c, held whole in memory; a larger
# body is served over HTTP/1.1 instead (a server may ignore an upgrade: RFC 9110 §7.8).
H2C_UPGRADE_BODY_LIMIT = READ_HIGH_WATER  # the body is buffered whole before the switch


class HTTP1Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection: its codec turns its bytes into requests, one exchange at a time.

    The exchange in flight (`cycle`) reaches the connection only through the verbs of
    `owner.ExchangeOwner`, implemented below.
    """

    def __init__(self, context: ServerContext, proxied: ProxyHeader | None = None) -> None:
        self.context = context
        self.proxied = proxied  # the connection's PROXY protocol header, if it had one
        self.config = context.config
        self.codec = codec_factory(self.config.http1_parser, self.config.h2_max_header_list_size)()
        self._max_head_size = self.config.h2_max_header_list_size
        self._max_body_size = self.config.max_request_body_size
        self._request_limit = self.config.max_requests_per_connection
        self.cycle: HTTP1Cycle | None = None
        self.transport: asyncio.Transport | None = None
        self.outbox: Outbox
        self.info: ConnectionInfo
        self.requests = 0
        self._reading_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None  # --header-timeout, from a head's first byte
        self._idle_since = 0.0  # runtime.time() when the connection last became idle
        self.runtime = context.runtime
        self._upgrade: H2CUpgrade | None = None  # an h2c upgrade request whose body is being read
        self.websocket: WebSocketSession | None = None  # after 101: the connection's bytes are its
        self.sendfile_ok = False
        self.metrics = context.metrics.protocol(HTTP1)
        self._counting = context.metrics.enabled  # --metrics-bind: count each request
        self._held: Coroutine[Any, Any, None] | None = None  # the request's ASGI call, not started yet
        self.date = context.date_header  # owner.ExchangeOwner's verb: the context's, without a call around it
    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.outbox = Outbox(self.runtime, transport, sent=self.metrics.sent if self._counting else None)
        # sendfile writes to the socket itself: not through TLS (ours encrypts in user space).
        self.sendfile_ok = (transport.get_extra_info("ssl_object") is None
                            and transport.get_extra_info("socket") is not None)
        self.info = describe_connection(transport, self.context, self.proxied)
        self.context.connections.add(self)
        self.metrics.connection_opened()
        self._start_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._counting:
            self.metrics.received(len(data))
        if self.outbox.closed:
            return  # closing: input is dropped while the last response drains
        if self.websocket is not None:
            self.websocket.feed(data)
            self.update_reading()  # an app that does not receive holds its client back
            return
        self.codec.receive_data(data)
        self.handle_events()

    def eof_received(self) -> bool | None:
        if not self.outbox.closed and self.websocket is None:  # a WebSocket ends with connection_lost
            self.codec.receive_data(b"")
            self.handle_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        self.metrics.connection_closed()
        self._cancel_timers()
        self.outbox.connection_lost()
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
            if (self.websocket is None and cycle.response_state is not ResponseState.COMPLETE
                    and self.context.access_log):
                # The client left before the response was complete (a WebSocket logs its own end).
                log_access(cycle, self.info.tls_log, cycle.target.decode("latin-1"), cycle.scope["http_version"],
                           event="reset")

    def pause_writing(self) -> None:
        self.outbox.pause()
        self.update_reading()

    def resume_writing(self) -> None:
        self.outbox.resume()
        if self.websocket is not None:
            self.websocket.writable()  # a pong held back while the client was behind may go
        self.update_reading()
        if self.cycle is None:
            self.handle_events()

    # -- server lifecycle -------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.cycle is not None:
            self.cycle.server_shutdown()  # a WebSocket would never end by itself
        elif self._upgrade is None:
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
        try:
            codec = self.codec
            while True:
                try:
                    event = codec.next_event()
                except BadRequest as exc:
                    self.reject(exc.status, exc.reason)
                    return
                if event is NEED_DATA or event is PAUSED:
                    break
                kind = event.__class__
                if kind is Request:
                    headers = event.headers  # type: ignore[union-attr]
                    problem = request_problem(event, self._max_head_size, self._max_body_size)  # type: ignore[arg-type]
                    if problem is not None:
                        if problem[0] == 413:
                            self.context.counters.limit_hit(BODY_SIZE)
                        self.reject(*problem)
                        return
                    if not event.upgrade:  # type: ignore[union-attr]
                        self.start_cycle(event, headers)  # type: ignore[arg-type]
                    elif is_websocket_upgrade(headers):
                        handshake_error = handshake_problem(event)  # type: ignore[arg-type]
                        if handshake_error is not None:
                            # RFC 6455 §4.2.2: the version we speak, for a client that offered another.
                            self.reject(400, handshake_error, [(b"sec-websocket-version", b"13")])
                            return
                        self.start_websocket(event)  # type: ignore[arg-type]
                    else:
                        settings = (h2c_upgrade_settings(event, headers)  # type: ignore[arg-type]
                                    if self.config.h2c and self.info.scheme == "http" else None)
                        if settings is None:
                            self.start_cycle(event, headers)  # type: ignore[arg-type]
                        else:
                            self._begin_upgrade(event, settings)  # type: ignore[arg-type]
                elif event is SWITCH:
                    codec = self.codec = codec.successor()  # the reference codec has the rest
                elif self._upgrade is not None:
                    if self._upgrade_event(event):
                        return  # the connection is HTTP/2 now, or closed
                elif event is END_OF_MESSAGE:
                    self.cycle.end_body()  # type: ignore[union-attr]
                elif event is CONNECTION_CLOSED:
                    if self.cycle is not None:
                        self.cycle.disconnect()
                    self.outbox.close_after_flush()
                    break
                else:
                    self.cycle.feed_body(event)  # type: ignore[union-attr, arg-type]
            if (self.cycle is None and self._head_timer is None and self._upgrade is None
                    and codec.buffered_input() and not self.outbox.closed):
                self._start_head_timer()  # part of the next request head is here: it has to come whole
            self.update_reading()
        finally:
            call, self._held = self._held, None
            if call is not None:
                # Only now, with the request's events all handled (its end of message
                # read, the codec paused): the app may run at once (Python 3.12+) and answer.
                self.runtime.spawn_eager(call)

    @property
    def last_response(self) -> bool:
        """Whether the response in flight is this connection's last (then `connection: close`)."""
        limit = self._request_limit
        return self.context.shutting_down or bool(limit and self.requests >= limit)

    def start_cycle(self, request: Request, headers: list[tuple[bytes, bytes]]) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # The idle timer stays armed: firing during an exchange, it does nothing (_idle_timeout).
        self.requests += 1
        info = self.info
        extensions = info.scope_extensions()
        if request.http_version == b"1.1":
            # HTTP/1.0 has neither chunked bodies (for trailers) nor 1xx responses.
            extensions["http.response.trailers"] = {}
            extensions["http.response.early_hint"] = {}
        if self.sendfile_ok:
            extensions[ZEROCOPYSEND] = {}
        scope = build_http_scope(
            http_version=request.http_version.decode("ascii"),
            method=request.method.decode("ascii"),
            scheme=info.scheme,
            target=request.target,
            headers=headers,
            client=info.client,
            server=info.server,
            root_path=self.config.root_path,
            state=self.context.state,
            extensions=extensions,
            forwarding=info.forwarding,
        )
        cycle = self.cycle = HTTP1Cycle(self, scope, request.target, info.response_headers)
        cycle.limits = self.context.body_limits
        # Started by handle_events once it has handled the events it holds (its `finally`).
        if self._counting:
            started = self.metrics.request_started()
            self._held = run_http_app(self.context.app, cycle, functools.partial(self._app_done, started))
        else:
            self._held = run_http_app(self.context.app, cycle)  # no metrics: nothing to count

    def _app_done(self, started: float, cycle: HTTP1Cycle) -> None:
        self.metrics.request_finished(started, cycle.status)

    def start_websocket(self, request: Request) -> None:
        self._cancel_timers()  # the keep-alive pings watch an open WebSocket
        self.requests += 1
        info = self.info
        scope = build_websocket_scope(
            http_version="1.1", scheme=info.scheme, target=request.target, headers=request.headers,
            client=info.client, server=info.server, root_path=self.config.root_path, state=self.context.state,
            extensions=info.scope_extensions(), forwarding=info.forwarding)
        carrier = HTTP1WebSocket(self, scope, request.target, info.response_headers)
        self.cycle = carrier
        session = WebSocketSession(carrier, self.config, self.runtime, shutting_down=self.context.shutting_down,
                                   metrics=self.metrics)
        self.context.spawn(run_websocket_app(self.context.app, session))

    # -- Upgrade: h2c (RFC 7540 §3.2) ----------------------------------------------------
    def _begin_upgrade(self, request: Request, settings: bytes) -> None:
        # The body is read before any app runs: a client that goes silent meanwhile is closed by
        # the keep-alive timer (restarted by each piece of body), as an idle connection would be.
        self._start_idle_timer()
        self._upgrade = H2CUpgrade(request, settings)
        if self.codec.waiting_for_100_continue:
            self.outbox.write(self.codec.informational(100, [], REASONS[100]))

    def _upgrade_event(self, event: Any) -> bool:
        """Body of an upgrade request; True once the connection is no longer ours to read."""
        upgrade = self._upgrade
        assert upgrade is not None
        if event is END_OF_MESSAGE:
            self._switch_to_h2(upgrade)
            return True
        if event is CONNECTION_CLOSED:
            self._upgrade = None
            self.outbox.close_after_flush()
            return True
        self._start_idle_timer()
        upgrade.body.append(event)
        upgrade.size += len(event)
        if upgrade.size > H2C_UPGRADE_BODY_LIMIT:
            # Too much to hold: ignore the upgrade, serve over HTTP/1.1 with what was read.
            self._upgrade = None
            self.start_cycle(upgrade.request, upgrade.request.headers)
            self.cycle.feed_body(b"".join(upgrade.body))  # type: ignore[union-attr]
        return False

    def _switch_to_h2(self, upgrade: H2CUpgrade) -> None:
        self._upgrade = None
        self.outbox.write(self.codec.informational(
            101, [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")], REASONS[101]))
        # What the client sent after the request: its HTTP/2 preface and first frames.
        rest = self.codec.trailing_data()
        self.context.connections.discard(self)
        self.metrics.connection_closed()  # the HTTP/2 protocol counts the connection from here on,
        self.metrics.received(-len(rest))  # and the bytes read beyond the request
        self._cancel_timers()
        transport = self.transport
        assert transport is not None
        if self._reading_paused:
            transport.resume_reading()
        protocol = HTTP2Protocol.upgraded(self.context, upgrade.settings, h2c_request_block(upgrade.request),
                                          b"".join(upgrade.body), self.proxied)
        # The 101 leaves in our outbox's flush, already scheduled (call_soon is FIFO), ahead of
        # the HTTP/2 protocol's first flush with the server preface.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            protocol.data_received(rest)

    # -- owner.ExchangeOwner: what the exchange in flight may ask ---------------------------
    def respond(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        # A client still waiting for 100 Continue holds its body back, so we will close rather
        # than read it: say so (RFC 9110 §10.1.1), or it may reuse the connection.
        if ((self.last_response or self.codec.waiting_for_100_continue)
                and (b"connection", b"close") not in headers):  # a server-made 4xx has it already
            headers.append((b"connection", b"close"))
        self.outbox.write(self.codec.response(status, headers, REASONS.get(status, b"")))

    def informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.outbox.write(self.codec.informational(status, headers, REASONS.get(status, b"")))

    def send_body(self, data: bytes) -> None:
        self.outbox.write(self.codec.body(data))

    def end_response(self, trailers: list[tuple[bytes, bytes]], last_body: bytes = b"") -> None:
        codec = self.codec
        if last_body:
            self.outbox.write(codec.body(last_body))
        data = codec.end(trailers)
        if data:  # nothing after a body of known length
            self.outbox.write(data)
        self.response_complete()

    def want_body(self) -> None:
        if self.codec.waiting_for_100_continue:
            self.outbox.write(self.codec.informational(100, [], REASONS[100]))
        self.update_reading()

    def consumed(self) -> None:
        self.update_reading()

    def write(self, data: bytes) -> None:
        self.outbox.write(data)

    async def drain(self) -> None:
        await self.outbox.drain()

    @property
    def backlogged(self) -> bool:
        return self.outbox.paused

    def reading_held(self, within: float) -> bool:
        return self.outbox.paused_within(within)  # pause_writing holds reading (update_reading)

    def close(self, *, now: bool = False) -> None:
        if now:
            self.outbox.write_now()
            self.abort()
        else:
            self.outbox.close_after_flush()

    async def sendfile(self, file: Any, offset: int, count: int) -> int:
        assert self.transport is not None
        return await send_file(self.codec, self.outbox, self.runtime.loop, self.transport, file, offset, count)

    def accept_websocket(self, session: WebSocketSession, headers: list[tuple[bytes, bytes]]) -> None:
        self.outbox.write(self.codec.informational(101, headers, b"Switching Protocols"))
        if self.context.access_log:
            cycle = self.cycle
            assert cycle is not None
            log_access(cycle, self.info.tls_log, cycle.target.decode("latin-1"), "1.1", status=101)
        self.websocket = session
        # Bytes the client sent right behind its request are the WebSocket's.
        rest = self.codec.trailing_data()
        if rest:
            session.feed(rest)

    def websocket_ended(self, code: int) -> None:
        cycle = self.cycle
        if self.context.access_log and cycle is not None:
            log_access(cycle, self.info.tls_log, cycle.target.decode("latin-1"), "1.1",
                       event="websocket-close", close_code=code)

    def flood_closed(self, reason: str) -> None:
        self.context.counters.flood_closed(reason)

    def completed(self) -> None:
        self._log_response()

    def aborted(self) -> None:
        cycle = self.cycle
        if self.context.access_log and cycle is not None:
            log_access(cycle, self.info.tls_log, cycle.target.decode("latin-1"), cycle.scope["http_version"],
                       event="aborted")

    def update_reading(self) -> None:
        """Stop reading while the app leaves its body unread or pipelined requests pile up.

        Reading goes on otherwise, also while a response is in flight, so that a client
        that hangs up is seen and the app's `receive()` yields `http.disconnect`.
        """
        cycle = self.cycle
        websocket = self.websocket
        want_pause = self.outbox.paused or (websocket.input_held if websocket is not None else cycle is not None and (
            cycle.buffered > READ_HIGH_WATER
            or (self.codec.buffered_input() > READ_HIGH_WATER and self.codec.request_complete)))
        if want_pause == self._reading_paused:
            return  # the common case, at the end of every request's events
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._reading_paused = want_pause
        if want_pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _log_response(self) -> None:
        cycle = self.cycle
        if self.context.access_log and cycle is not None:
            log_access(cycle, self.info.tls_log, cycle.target.decode("latin-1"), cycle.scope["http_version"])

    def response_complete(self) -> None:
        if self.context.access_log:
            self._log_response()
        codec = self.codec
        if not codec.reusable or self.last_response:
            # The request body was not read to its end (or the client or we asked to close).
            self.outbox.close_after_flush()
            return
        codec.start_next_cycle()
        self.cycle = None
        self._start_idle_timer()
        if codec.buffered_input():
            # Pipelined requests the codec already holds are handled on the next loop turn. Otherwise
            # the next bytes come through data_received (a client's EOF too: the codec reports
            # it at once, even behind a whole request): a callback per response that only finds
            # NEED_DATA would cost every keep-alive request.
            self.runtime.call_soon(self.handle_events)
        elif self._reading_paused:
            self.update_reading()  # paused for this exchange's unread body: read the next request

    def reject(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | tuple[()] = ()) -> None:
        """Answer a malformed request (`reason`: what was wrong, in words) and close the connection."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("bad HTTP/1.1 request from %s: %s", self.info.client, reason)
        codec = self.codec
        if codec.can_respond:
            head, body = plain_response(status, reason, date=self.context.date_header(),
                                        defaults=self.info.response_headers, extra=headers)
            head.append((b"connection", b"close"))
            try:
                self.outbox.write(codec.response(status, head, REASONS.get(status, b"")) + codec.body(body)
                                  + codec.end([]))
                self.metrics.request_answered(status)
            except ResponseError:
                pass
        if self.cycle is not None:
            self.cycle.disconnect()
        self.outbox.close_after_flush()

    # -- keep-alive and header timeouts ------------------------------------------------------
    # Between requests one of two timers runs: the keep-alive one while nothing of the next
    # request has come (a silent close), the header one from its first byte (a 408).
    def _start_idle_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # One timer serves many keep-alive requests: each restarts the idle clock, and a timer
        # that fires before the clock has run out is set again for the rest (cancelling and
        # arming a timer per request would cost more than the rest of a request's bookkeeping).
        self._idle_since = self.runtime.time()
        if self._idle_timer is None:
            self._idle_timer = self.runtime.call_later(self.config.keep_alive_timeout, self._idle_timeout)

    def _cancel_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self.cycle is not None:
            return  # response_complete starts the clock again
        remaining = self._idle_since + self.config.keep_alive_timeout - self.runtime.time()
        if remaining > 0:
            self._idle_timer = self.runtime.call_later(remaining, self._idle_timeout)
            return
        if self.outbox.paused and self.codec.buffered_input():
            # Not idle: pipelined requests wait for the client to read our responses (see
            # handle_events). Closing now would drop them unanswered; a partial request is
            # still timed out once the client reads again and it is all there is.
            self._start_idle_timer()
            return
        self.outbox.close_after_flush()

    def _start_head_timer(self) -> None:
        self._cancel_timers()
        self._head_timer = self.runtime.call_later(self.config.header_timeout, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is not None or self._upgrade is not None or self.outbox.closed:
            return
        if self.outbox.paused:
            self._start_head_timer()  # the head may be whole but unread: we wait for the client to read
            return
        self.context.counters.limit_hit(HEADER_TIMEOUT)
        self.reject(408, f"the request head took longer than {self.config.header_timeout:g} s")
