"""HTTP/2 connections, on h2: every stream is its own ASGI call.

`HTTP2Protocol` is the asyncio side: it parses at most one turn of frames per read (the flood
guard's bound), pauses reading while the peer does not read, admits or refuses each request,
and hands the events of open streams to its `StreamTable` (streams.py), which runs their ASGI
calls and implements the `StreamOwner` verbs their ASGI side uses (owner.py). The read path
never waits for an application: request DATA is handed to the stream's buffer and its window
re-opened only as the app consumes it. The send path is the `Scheduler`'s (scheduler.py):
streams only queue bytes, and once per loop turn (the outbox's `_produce`) it frames DATA for
the streams whose windows allow. How the connection ends (GOAWAYs, timers, failures) is
`Lifecycle`'s (lifecycle.py); every adaptation of h2 itself is h2lib.py's.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import chain
from typing import Any, Callable

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import ExtensionFrame

from ..asgi.wscarrier import version_problem
from ..asgi.http import BODY_SIZE
from ..edge.proxyprotocol import ProxyHeader
from ..observe.metrics import H2
from ..runtime.context import HEADER_TIMEOUT, ConnectionInfo, ServerContext, describe_connection
from ..runtime.outbox import Outbox
from .flood import FloodGuard
from .h2lib import ServerH2Connection
from .lifecycle import Lifecycle, State
from .owner import Headers
from .priority import PRIORITY_UPDATE_FRAME, SETTINGS_NO_RFC7540_PRIORITIES
from .request import MalformedRequest, declared_length, parse_request_headers, validate_trailers
from .streams import StreamTable

logger = logging.getLogger("plexicorn.error")

# Header lists up to this many times SETTINGS_MAX_HEADER_LIST_SIZE are decoded (and answered 431).
HPACK_BOMB_FACTOR = 4

# Reasons reading is paused; it resumes when none is left.
_HELD_BY_PEER = 1  # the peer does not read what we write (pause_writing)
_HELD_BY_BACKLOG = 2  # whole frames wait for a later turn (the flood guard's bound per turn)

# Bytes waiting in the transport beyond which we stop reading (asyncio's pause_writing). Every
# turn parses at most h2_frames_per_turn frames, so the PING/SETTINGS ACKs and RST_STREAMs
# queued for a peer that does not read stay under 32 KiB + one turn's answers (< 64 KiB).
WRITE_HIGH_WATER = 32 * 1024


class HTTP2Protocol(asyncio.Protocol):
    lifecycle: Lifecycle
    table: StreamTable

    def __init__(self, context: ServerContext, *, refuse_with: ErrorCodes | None = None,
                 proxied: ProxyHeader | None = None) -> None:
        self.context = context
        self.proxied = proxied  # the connection's PROXY protocol header, if it had one
        self.config = context.config
        self.runtime = context.runtime
        # Set when the connection may not carry HTTP/2 (INADEQUATE_SECURITY): GOAWAY at once.
        self._refuse_with = refuse_with
        # After `Upgrade: h2c`: (HTTP2-Settings value, stream 1's request headers, its body).
        self._upgrade: tuple[bytes, Headers, bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.outbox: Outbox
        self.info: ConnectionInfo
        self.guard = FloodGuard(self.config)
        self.metrics = context.metrics.protocol(H2)
        # Request headers are validated per stream by request.py (h2 would fail the connection);
        # response fields by asgi/http.py and stream.py's `outbound_fields` (h2 would do it again).
        self.conn = ServerH2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False), self.guard, context.metrics)
        self._read_holds = 0  # _HELD_BY_* bits
        self._head_timer: asyncio.TimerHandle | None = None  # --header-timeout, while a header block is open
        self.requests = 0
        self._conn_unacked = 0

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self.outbox = Outbox(self.runtime, transport, self._produce,
                             self.metrics.sent if self.context.metrics.enabled else None)
        self.info = describe_connection(transport, self.context, self.proxied)
        self.lifecycle = Lifecycle(self.conn, self.outbox, self.runtime, self.config.keep_alive_timeout,
                                   lambda: self.table.load(), lambda: self.table.disconnect_all(),
                                   self.context.metrics.goaway_sent)
        table = self.table = StreamTable(self.conn, self.outbox, self.lifecycle, self.guard, self.context, self.info)
        # Per connection, so that events go straight to bound methods.
        self._handlers: dict[type, Callable[[Any], None]] = {
            h2.events.RequestReceived: self._on_request,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamEnded: table.on_stream_ended,
            h2.events.StreamReset: table.on_stream_reset,
            h2.events.WindowUpdated: table.on_window_updated,
            h2.events.RemoteSettingsChanged: self._on_settings_changed,
            h2.events.ConnectionTerminated: self._on_goaway,
            h2.events.PingAckReceived: self._on_ping_ack,
            h2.events.UnknownFrameReceived: self._on_unknown_frame,
        }
        self.context.connections.add(self)
        self.metrics.connection_opened()
        config, conn = self.config, self.conn
        # HPACK must decode a whole block to keep its table in step with the client's, so a block
        # somewhat over our limit is decoded and refused alone (431); far over it, the HPACK
        # decoder stops (a decompression bomb) and the connection ends with ENHANCE_YOUR_CALM.
        conn.apply_server_settings(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.h2_max_header_list_size,
            initial_window_size=config.h2_initial_window_size, max_frame_size=config.h2_max_frame_size,
            decoded_header_list_limit=config.h2_max_header_list_size * HPACK_BOMB_FACTOR,
            extra={SETTINGS_NO_RFC7540_PRIORITIES: 1})  # RFC 9218; PRIORITY frames ignored
        if self._upgrade is None:
            conn.initiate_connection()
        else:
            conn.initiate_upgrade_connection(self._upgrade[0])  # stream 1 half-closed (remote)
        # The connection window is re-opened as DATA arrives (the stream windows do the bounding),
        # so that one slow stream cannot starve the others.
        if config.h2_connection_window_size > 65535:
            conn.increment_flow_control_window(config.h2_connection_window_size - 65535)
        self.outbox.schedule()
        if self._refuse_with is not None:
            self.abort_connection(self._refuse_with)
        elif self.context.shutting_down:
            self.shutdown()
        else:
            self.lifecycle.changed(*self.table.load())
        if self._upgrade is not None:
            self._start_upgraded_stream()

    @classmethod
    def upgraded(cls, context: ServerContext, settings: bytes, headers: Headers, body: bytes,
                 proxied: ProxyHeader | None = None) -> HTTP2Protocol:
        """HTTP/2 after `101 Switching Protocols` to h2c (RFC 7540 §3.2): the HTTP/1.1 request
        that asked for it (`headers`, an HTTP/2 request block, and its whole `body`) is stream 1."""
        protocol = cls(context, proxied=proxied)
        protocol._upgrade = (settings, headers, body)
        return protocol

    def _start_upgraded_stream(self) -> None:
        assert self._upgrade is not None
        _, headers, body = self._upgrade
        self._upgrade = None
        try:  # served as if its HEADERS had arrived: same validation, scope, limits and task
            self._on_request(h2.events.RequestReceived(stream_id=1, headers=headers))
            record = self.table.streams.get(1)
            if record is not None:
                if body:
                    record.stream.feed_body(body)  # read over HTTP/1.1: no HTTP/2 window to re-open
                record.stream.end_body()
            self.outbox.schedule()
        finally:
            self.table.start_held()  # as after a read (_take_turn): a held call is never left unstarted

    def data_received(self, data: bytes) -> None:
        self.metrics.received(len(data))
        if not (self.outbox.closed or self.lifecycle.state is State.FAILED):
            self._take_turn(data)

    def _take_turn(self, data: bytes) -> None:
        """Parse and handle at most one turn's share of frames (the flood guard's bound); whole
        frames left over wait, with reading paused, for the next loop turn."""
        try:
            guard = self.guard
            guard.start_turn()
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued a GOAWAY with the error code; send it and close.
                logger.debug("HTTP/2 protocol error from %s: %s", self.info.client, exc)
                self.lifecycle.fail(None)
                return
            handlers = self._handlers
            lifecycle = self.lifecycle
            try:
                for event in events:
                    if guard.exceeded is not None or lifecycle.state is State.FAILED:
                        break
                    handler = handlers.get(type(event))
                    if handler is not None:
                        handler(event)
            except h2.exceptions.ProtocolError:
                # A state h2 refuses that this module failed to foresee: end this connection, loudly
                # in the log, but never as a fatal error of the event loop.
                logger.exception("HTTP/2 connection from %s failed", self.info.client)
                self.abort_connection(ErrorCodes.INTERNAL_ERROR)
                return
            if guard.exceeded is not None:
                self._calm(guard.exceeded)
                return
            self.outbox.schedule()  # before the next turn: this turn's answers go out first
            if self.conn.header_block_open:
                if self._head_timer is None:
                    self._head_timer = self.runtime.call_later(self.config.header_timeout, self._head_timeout)
            elif self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self.conn.backlog:
                self._hold_reading(_HELD_BY_BACKLOG)
                self.runtime.call_soon(self._next_turn)
            else:
                self._release_reading(_HELD_BY_BACKLOG)
        finally:
            self.table.start_held()  # the requests this read opened, now that all its events are handled

    def _next_turn(self) -> None:
        # A peer that does not read gets nothing more parsed (and answered) until it does:
        # resume_writing comes back here.
        if not (self.outbox.closed or self.lifecycle.state is State.FAILED or self._read_holds & _HELD_BY_PEER):
            self._take_turn(b"")

    def _hold_reading(self, reason: int) -> None:
        if not self._read_holds and self.transport is not None:
            self.transport.pause_reading()
        self._read_holds |= reason

    def _release_reading(self, reason: int) -> None:
        if not self._read_holds & reason:
            return
        self._read_holds &= ~reason
        if not self._read_holds and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _calm(self, reason: str) -> None:
        """End a connection over a flood budget: GOAWAY(ENHANCE_YOUR_CALM) naming the last stream
        handed to the application, one warning, one count."""
        logger.warning("HTTP/2 connection from %s ended with ENHANCE_YOUR_CALM: %s over budget (%s)",
                       self.info.client, reason, self.guard.limit(reason))
        self.context.counters.flood_closed(reason)
        self.abort_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.table.last_started)

    def _head_timeout(self) -> None:
        """A header block open for --header-timeout. Nothing else may be sent on the connection
        until it ends (RFC 9113 §6.10), so the connection is ended: GOAWAY(ENHANCE_YOUR_CALM), the
        answer to a peer holding resources without making progress, naming the last stream handed
        to the application (the unfinished request was not processed and may be retried).
        PROTOCOL_ERROR would claim a malformed frame sequence, which a slow one is not."""
        self._head_timer = None
        if self.outbox.closed or self.lifecycle.state is State.FAILED or not self.conn.header_block_open:
            return
        if self._read_holds:
            # We stopped reading (the peer leaves our writes unread, or a backlog of frames
            # waits its turn): the rest of the block may be here, unread.
            self._head_timer = self.runtime.call_later(self.config.header_timeout, self._head_timeout)
            return
        logger.debug("HTTP/2 connection from %s ended: a header block open for more than %g s (--header-timeout)",
                     self.info.client, self.config.header_timeout)
        self.context.counters.limit_hit(HEADER_TIMEOUT)
        self.abort_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.table.last_started)

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.metrics.connection_closed()
        self.lifecycle.connection_lost()
        self.outbox.connection_lost()
        self.table.disconnect_all()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading too, or what it sends (PINGs, SETTINGS) keeps
        # queueing answers it will not take.
        self.outbox.pause()
        self._hold_reading(_HELD_BY_PEER)

    def resume_writing(self) -> None:
        self.outbox.resume()
        self.outbox.schedule()
        self._release_reading(_HELD_BY_PEER)
        if self._read_holds & _HELD_BY_BACKLOG:
            self.runtime.call_soon(self._next_turn)

    # -- lifecycle (lifecycle.py) ---------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful GOAWAY in two steps, then close once the open streams finish."""
        if self.context.shutting_down:
            self.table.server_shutdown()
        self.lifecycle.shut_down()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def abort_connection(self, code: ErrorCodes, *, last_stream_id: int | None = None) -> None:
        """End the connection with GOAWAY(code); every open stream is disconnected."""
        self.lifecycle.fail(code, last_stream_id)

    # -- events -------------------------------------------------------------------------------
    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        config = self.config
        accepting = self.lifecycle.accepting
        table = self.table
        if not accepting or table.occupied >= config.h2_max_concurrent_streams:
            # A peer over the limit as it counts (its open streams) is charged for the refusal,
            # so one that keeps overrunning is ended; streams refused because of handlers it
            # reset, or of a shutdown, are not its fault.
            if accepting and len(table.streams) >= config.h2_max_concurrent_streams:
                self.guard.reset()
            self.context.metrics.h2_stream_refused()
            table.reset_id(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        ended = event.stream_ended is not None
        # RFC 9113 §6.5.2: each field counts its name, its value and 32 bytes.
        if 32 * len(event.headers) + sum(map(len, chain.from_iterable(event.headers))) > config.h2_max_header_list_size:
            # A block of thousands of tiny fields costs its HPACK decoding: charged by its size.
            self.guard.reset(1 + len(event.headers) / 100)
            table.respond_and_close(stream_id, 431, ended=ended)  # §10.5.1
            return
        try:
            head = parse_request_headers(event.headers, ended=ended, allow_protocol=True)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 request from %s on stream %d: %s", self.info.client, stream_id, exc)
            table.reset_id(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        limit = config.max_request_body_size
        if limit and not ended and head.method != b"CONNECT" and declared_length(head.headers) > limit:
            # Answered before the app runs; the body is not wanted (RST_STREAM NO_ERROR after it).
            logger.debug("request from %s on stream %d refused with 413: content-length over %d bytes",
                         self.info.client, stream_id, limit)
            self.context.counters.limit_hit(BODY_SIZE)
            table.respond_and_close(stream_id, 413, ended=ended)
            return
        if head.method == b"CONNECT":
            # Only RFC 8441's websocket; a plain CONNECT would make us a proxy, which we are not.
            refusal = 501 if head.protocol != b"websocket" else 400 if version_problem(head.headers) else None
            if refusal is not None:
                self.guard.reset()
                table.respond_and_close(stream_id, refusal, ended=ended)
                return
            table.open_websocket(stream_id, head)
        else:
            table.open_stream(stream_id, head)
        self.requests += 1
        if self.requests == config.max_requests_per_connection:
            self.shutdown()  # GOAWAY naming this stream last: it finishes, the client reconnects

    def _on_settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        changed = event.changed_settings
        priorities = changed.get(SETTINGS_NO_RFC7540_PRIORITIES)  # type: ignore[call-overload]
        if priorities is not None and priorities.new_value > 1:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §2.1: only 0 or 1
            return
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in changed:
            self.table.scheduler.windows_opened()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.error_code:
            logger.debug("peer %s sent GOAWAY with %s", self.info.client, event.error_code)
            self.lifecycle.fail(None)
        else:
            self.lifecycle.peer_went_away()

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        self.lifecycle.ping_acked(event.ping_data)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        try:
            validate_trailers(event.headers)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 trailers from %s: %s", self.info.client, exc)
            self.table.malformed_trailers(event.stream_id)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        # The connection window re-opens as DATA arrives; the stream's as its app consumes it.
        self._conn_unacked += event.flow_controlled_length
        if self._conn_unacked >= self.config.h2_connection_window_size // 2:
            self.conn.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        self.table.on_data(event)

    def _on_unknown_frame(self, event: h2.events.UnknownFrameReceived) -> None:
        frame: ExtensionFrame = event.frame  # type: ignore[assignment]  # unknown types parse as this
        if frame.type != PRIORITY_UPDATE_FRAME:
            return  # unknown frame types are ignored (RFC 9113 §5.5)
        if frame.stream_id != 0 or len(frame.body) < 4:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §7.1
            return
        self.table.priority_update(int.from_bytes(frame.body[:4], "big") & 0x7FFFFFFF, frame.body[4:])

    # -- the send side's bookkeeping ------------------------------------------------------------
    def _produce(self) -> bytes:
        if not self.outbox.paused:
            try:
                self.table.scheduler.frame()
            except h2.exceptions.ProtocolError as exc:  # never into the loop's exception handler
                logger.error("HTTP/2 send failed, closing the connection: %s", exc)
                self.abort_connection(ErrorCodes.INTERNAL_ERROR)
        return self.conn.data_to_send()

