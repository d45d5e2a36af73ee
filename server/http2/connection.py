"""HTTP/2 connections, on h2: every stream is its own ASGI call.

The read path never waits for an application: request DATA is handed to the
stream's buffer and its window re-opened only as the app consumes it. The send
path is a scheduler: stream handlers only queue bytes, and once per loop turn the
connection frames DATA round-robin across the streams whose windows allow.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable
from urllib.parse import quote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import ExtensionFrame, GoAwayFrame

from ..asgi.http import ASGIMessageError, HTTPCycle, build_http_scope, run_http_app
from ..asgi.websocket import (
    WebSocketSession,
    build_websocket_scope,
    run_websocket_app,
    version_problem,
)
from ..runtime.context import ConnectionInfo, ServerContext, describe_connection
from ..runtime.outbox import Outbox
from .flood import FloodGuard
from .h2lib import ServerH2Connection
from .priority import (
    PRIORITY_UPDATE_FRAME,
    SETTINGS_NO_RFC7540_PRIORITIES,
    PriorityQueue,
    parse_priority,
)
from .request import (
    MalformedRequest,
    RequestHead,
    parse_request_headers,
    validate_trailers,
)
from .stream import STREAM_SEND_BUFFER, HTTP2Stream
from .websocket import HTTP2WebSocket

logger = logging.getLogger("plexicorn.error")

# DATA bytes framed per loop turn at most, so one flush never builds an unbounded write.
FLUSH_BUDGET = 256 * 1024

# Header lists up to this many times SETTINGS_MAX_HEADER_LIST_SIZE are decoded (and answered 431).
HPACK_BOMB_FACTOR = 4

# Seconds the first of two graceful GOAWAYs waits for its PING's answer before the second.
GOAWAY_ROUND_TRIP = 1.0

# Reasons reading is paused; it resumes when none is left.
_HELD_BY_PEER = 1  # the peer does not read what we write (pause_writing)
_HELD_BY_BACKLOG = 2  # whole frames wait for a later turn (the flood guard's bound per turn)

# Bytes waiting in the transport beyond which we stop reading (asyncio's pause_writing). Every
# turn parses at most h2_frames_per_turn frames, so the PING/SETTINGS ACKs and RST_STREAMs
# queued for a peer that does not read stay under 32 KiB + one turn's answers (< 64 KiB).
WRITE_HIGH_WATER = 32 * 1024

class HTTP2Protocol(asyncio.Protocol):
    def __init__(self, context: ServerContext, *, refuse_with: ErrorCodes | None = None) -> None:
        self.context = context
        self.config = context.config
        # Set when the connection may not carry HTTP/2 (INADEQUATE_SECURITY): GOAWAY at once.
        self._refuse_with = refuse_with
        # After `Upgrade: h2c`: (HTTP2-Settings value, stream 1's request headers, its body).
        self._upgrade: tuple[bytes, list[tuple[bytes, bytes]], bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.outbox: Outbox
        self.guard = FloodGuard(self.config)
        # Request headers are validated per stream by h2request (h2 would fail the connection).
        self.conn = ServerH2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False), self.guard)
        self.streams: dict[int, HTTP2Stream] = {}
        self.ready = PriorityQueue()  # streams with DATA to send, in RFC 9218 order
        # PRIORITY_UPDATEs for streams not opened yet (they may precede the HEADERS), bounded.
        self._early_priorities: dict[int, bytes] = {}
        self.blocked: set[HTTP2Stream] = set()
        self.info: ConnectionInfo
        self.closing = False  # GOAWAY sent or received: no new streams
        self._failed = False  # connection error: GOAWAY queued, closing
        self.running = 0  # ASGI handlers of this connection still running
        # Client streams counted against SETTINGS_MAX_CONCURRENT_STREAMS: open or half-closed
        # (response not complete, RFC 9113 §5.1.2), or reset while their handler still runs
        # (rapid reset must not pile up tasks). See _free_slot.
        self.occupied = 0
        self._last_started = 0  # the highest stream id handed to the application
        self._read_holds = 0  # _HELD_BY_* bits
        self._goaway_ping: bytes | None = None  # set once a graceful shutdown began
        self._goaway_timer: asyncio.TimerHandle | None = None
        self.requests = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._conn_unacked = 0
        self.runtime = context.runtime

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self.outbox = Outbox(self.runtime, transport, self._produce)
        self.info = describe_connection(transport, self.context)
        self.context.connections.add(self)
        conn = self.conn
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.config.h2_max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.config.h2_max_header_list_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.config.h2_initial_window_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: self.config.h2_max_frame_size,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            SETTINGS_NO_RFC7540_PRIORITIES: 1,  # type: ignore[dict-item]  # RFC 9218; PRIORITY ignored
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441: WebSockets over HTTP/2
        })
        # h2 read these limits from its own defaults at construction, and our settings count as
        # already in force, so no acknowledgement would ever apply them: set them here.
        # HPACK must decode a whole block to keep its table in step with the client's, so a block
        # somewhat over our limit is decoded and refused alone (431); far over it, the HPACK
        # decoder stops (a decompression bomb) and the connection ends with ENHANCE_YOUR_CALM.
        conn.decoder.max_header_list_size = self.config.h2_max_header_list_size * HPACK_BOMB_FACTOR
        conn.max_inbound_frame_size = self.config.h2_max_frame_size
        if self._upgrade is None:
            conn.initiate_connection()
        else:
            conn.initiate_upgrade_connection(self._upgrade[0])  # stream 1 half-closed (remote)
        # The connection window is re-opened as DATA arrives (the stream windows do the bounding),
        # so that one slow stream cannot starve the others.
        if self.config.h2_connection_window_size > 65535:
            conn.increment_flow_control_window(self.config.h2_connection_window_size - 65535)
        self.outbox.schedule()
        if self._refuse_with is not None:
            self.abort_connection(self._refuse_with)
        elif self.context.shutting_down:
            self.shutdown()
        else:
            self._update_idle_timer()
        if self._upgrade is not None:
            self._start_upgraded_stream()

    @classmethod
    def upgraded(cls, context: ServerContext, settings: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> HTTP2Protocol:
        """HTTP/2 after `101 Switching Protocols` to h2c (RFC 7540 §3.2): the HTTP/1.1 request
        that asked for it (`headers`, an HTTP/2 request block, and its whole `body`) is stream 1."""
        protocol = cls(context)
        protocol._upgrade = (settings, headers, body)
        return protocol

    def _start_upgraded_stream(self) -> None:
        assert self._upgrade is not None
        _, headers, body = self._upgrade
        self._upgrade = None
        # Served as if its HEADERS had arrived: same validation, scope, limits and task.
        self._on_request(h2.events.RequestReceived(stream_id=1, headers=headers))
        stream = self.streams.get(1)
        if stream is not None:
            if body:
                stream.feed_body(body)  # read over HTTP/1.1: no HTTP/2 window to re-open
            stream.end_body()
        self.outbox.schedule()

    def data_received(self, data: bytes) -> None:
        if self.outbox.closed or self._failed:
            return
        self._take_turn(data)

    def _take_turn(self, data: bytes) -> None:
        """Parse and handle at most one turn's share of frames (the flood guard's bound); whole
        frames left over wait, with reading paused, for the next loop turn."""
        guard = self.guard
        guard.start_turn()
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the error code; send it and close.
            logger.debug("HTTP/2 protocol error from %s: %s", self.info.client, exc)
            self._close_with_error()
            return
        handlers = _EVENT_HANDLERS
        try:
            for event in events:
                if guard.exceeded is not None or self._failed:
                    break
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(self, event)
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
        if self.conn.incoming_buffer.backlog:
            self._hold_reading(_HELD_BY_BACKLOG)
            self.runtime.call_soon(self._next_turn)
        else:
            self._release_reading(_HELD_BY_BACKLOG)

    def _next_turn(self) -> None:
        # A peer that does not read gets nothing more parsed (and answered) until it does:
        # resume_writing comes back here.
        if not (self.outbox.closed or self._failed or self._read_holds & _HELD_BY_PEER):
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
        self.abort_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self._last_started)

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        for timer in (self._idle_timer, self._goaway_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._goaway_timer = None
        self.outbox.connection_lost()
        self._disconnect_all()

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

    # -- server lifecycle -------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful GOAWAY in two steps (RFC 9113 §6.8), then close once the open streams finish.

        The first GOAWAY (last stream 2^31-1) tells the client to open no more streams without
        refusing those already on their way; a PING measures that round trip, and its ACK (or
        GOAWAY_ROUND_TRIP seconds) brings the second GOAWAY naming the last stream served.
        """
        if self.context.shutting_down:
            for stream in list(self.streams.values()):
                stream.server_shutdown()  # WebSockets would never end by themselves
        if self._goaway_ping is not None or self.closing:
            return
        self._goaway_ping = b"goaway%02x" % (id(self) & 0xFF)
        # Written by hand: h2's close_connection() would forbid finishing open streams.
        self.outbox.write(GoAwayFrame(0, last_stream_id=2**31 - 1, error_code=0).serialize())
        self.conn.ping(self._goaway_ping)
        self.outbox.schedule()
        self._goaway_timer = self.runtime.call_later(GOAWAY_ROUND_TRIP, self._final_goaway)

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        if event.ping_data == self._goaway_ping:
            self._final_goaway()

    def _final_goaway(self) -> None:
        if self.closing:
            return
        if self._goaway_timer is not None:
            self._goaway_timer.cancel()
            self._goaway_timer = None
        self.closing = True
        frame = GoAwayFrame(0, last_stream_id=self.conn.highest_inbound_stream_id, error_code=0)
        self.outbox.write(frame.serialize())
        self._close_if_idle()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close_if_idle(self) -> None:
        if self.closing and not self.streams:
            self.outbox.close_after_flush()
        self._update_idle_timer()

    def _update_idle_timer(self) -> None:
        """Run the keep-alive timer while no stream is open and no handler runs."""
        if self.streams or self.running or self.outbox.closed:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        elif self._idle_timer is None:
            self._idle_timer = self.runtime.call_later(self.config.keep_alive_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if not self.streams and not self.running:
            self.shutdown()  # GOAWAY(NO_ERROR), then close: the client knows it may reconnect

    def abort_connection(self, code: ErrorCodes, *, last_stream_id: int | None = None) -> None:
        """End the connection with GOAWAY(code); every open stream is disconnected."""
        if not self._failed:
            if last_stream_id is None:
                last_stream_id = self.conn.highest_inbound_stream_id
            frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code)
            self.outbox.write(frame.serialize())
            self._close_with_error()

    def _close_with_error(self) -> None:
        self._failed = True
        self.closing = True
        self.outbox.close_after_flush()
        self._disconnect_all()

    def _disconnect_all(self) -> None:
        """Every stream's app sees http.disconnect; nothing is left to schedule."""
        streams, self.streams = self.streams, {}
        self.ready.clear()
        self.blocked.clear()
        for stream in streams.values():
            self._free_slot(stream)
            stream.disconnect()

    # -- events -------------------------------------------------------------------------------
    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.closing or self.occupied >= self.config.h2_max_concurrent_streams:
            # A peer over the limit as it counts (its open streams) is charged for the refusal,
            # so one that keeps overrunning is ended; streams refused because of handlers it
            # reset, or of a shutdown, are not its fault.
            if not self.closing and len(self.streams) >= self.config.h2_max_concurrent_streams:
                self.guard.reset()
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        # RFC 9113 §6.5.2: each field counts its name, its value and 32 bytes.
        if sum(len(name) + len(value) + 32 for name, value in event.headers) > self.config.h2_max_header_list_size:
            # A block of thousands of tiny fields costs its HPACK decoding: charged by its size.
            self.guard.reset(1 + len(event.headers) / 100)
            self._respond_and_close_stream(stream_id, 431, ended=event.stream_ended is not None)  # §10.5.1
            return
        try:
            head = parse_request_headers(event.headers, ended=event.stream_ended is not None, allow_protocol=True)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 request from %s on stream %d: %s", self.info.client, stream_id, exc)
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        if head.method == b"CONNECT":
            # Only RFC 8441's websocket; a plain CONNECT would make us a proxy, which we are not.
            if head.protocol != b"websocket":
                self.guard.reset()
                self._respond_and_close_stream(stream_id, 501, ended=event.stream_ended is not None)
                return
            if version_problem(head.headers) is not None:
                self.guard.reset()
                self._respond_and_close_stream(stream_id, 400, ended=event.stream_ended is not None)
                return
            self._open_websocket(stream_id, head)
        else:
            self._open_stream(stream_id, head)
        self.requests += 1
        if self.requests == self.config.max_requests_per_connection:
            self.shutdown()  # GOAWAY naming this stream last: it finishes, the client reconnects

    def _open_stream(self, stream_id: int, head: RequestHead) -> HTTP2Stream:
        """Register a stream for a request (received or pushed) and start its ASGI call."""
        path = head.path or b""
        info = self.info
        scope = build_http_scope(
            # The scheme is the connection's, not the client's :scheme claim (as on HTTP/1.1).
            http_version="2", method=head.method.decode("latin-1"), scheme=info.scheme, target=path,
            headers=head.headers, client=info.client, server=info.server, root_path=self.config.root_path,
            state=self.context.state, extensions=self._extensions(stream_id))
        stream = HTTP2Stream(self, stream_id, scope, path.decode("latin-1"))
        self._register(stream, head)
        self.context.spawn(run_http_app(self.context.app, stream, self._app_done))
        return stream

    def _open_websocket(self, stream_id: int, head: RequestHead) -> None:
        path = head.path or b""
        info = self.info
        scope = build_websocket_scope(
            http_version="2", scheme=info.scheme, target=path, headers=head.headers, client=info.client,
            server=info.server, root_path=self.config.root_path, state=self.context.state,
            extensions=info.scope_extensions())
        stream = HTTP2WebSocket(self, stream_id, scope, path.decode("latin-1"))
        # A stream opened between the two GOAWAYs of a shutdown is served: closed with 1012 once accepted.
        session = WebSocketSession(stream, self.config, self.runtime, shutting_down=self.context.shutting_down)
        self._register(stream, head)
        self.context.spawn(run_websocket_app(self.context.app, session, self._app_done))

    def _register(self, stream: HTTP2Stream, head: RequestHead) -> None:
        """Priority, authority and bookkeeping of a new stream, before its ASGI call starts."""
        stream_id = stream.stream_id
        early = self._early_priorities
        priority = early.pop(stream_id, None) if early else None
        if early:  # updates for streams skipped over will never be used
            for skipped in [known for known in early if known < stream_id]:
                del early[skipped]
        priority = priority or next(
            (value for name, value in head.headers if name == b"priority"), None)
        if priority is not None:
            stream.urgency, stream.incremental = parse_priority(priority)
        stream.authority = head.authority or next((v for n, v in head.headers if n == b"host"), None)
        self.streams[stream_id] = stream
        self.running += 1
        if stream_id % 2:  # client streams; our pushes have a limit of the client's
            stream.holds_slot = True
            self.occupied += 1
            if stream_id > self._last_started:
                self._last_started = stream_id
        self._update_idle_timer()

    def _extensions(self, stream_id: int) -> dict[str, Any]:
        info = self.info
        extensions = info.scope_extensions()
        extensions["http.response.trailers"] = {}
        extensions["http.response.early_hint"] = {}
        # Only client-initiated (odd) streams may carry PUSH_PROMISE (RFC 9113 §8.4).
        if stream_id % 2 and self.conn.remote_settings.enable_push:
            extensions["http.response.push"] = {}
        return extensions

    def push(self, stream: HTTP2Stream, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        """ASGI http.response.push: PUSH_PROMISE a GET of `path` on `stream`, then serve it as a request.

        A push is only an optimisation: when it cannot be made (push disabled, handler limit,
        stream done, no authority) it is skipped silently.
        """
        conn = self.conn
        if (self.closing or stream.stream_id % 2 == 0 or not conn.remote_settings.enable_push
                or self.streams.get(stream.stream_id) is not stream or stream.authority is None
                or self.running >= self.config.h2_max_concurrent_streams
                # The client's limit on streams we open (RFC 9113 §5.1.2), which h2 does not enforce
                # for pushes: counting every push not yet finished, its response can never exceed it.
                or sum(1 for sid in self.streams if sid % 2 == 0) >= conn.remote_settings.max_concurrent_streams):
            return
        block = [(b":method", b"GET"), (b":scheme", self.info.scheme.encode()), (b":authority", stream.authority),
                 (b":path", quote(path, safe="/%?=&;:@!$'()*+,~").encode("ascii"))] + headers
        try:
            head = parse_request_headers(block, ended=True)
        except MalformedRequest as exc:
            raise ASGIMessageError(f"invalid push request: {exc}") from None
        try:
            promised_id = conn.get_next_available_stream_id()
            conn.push_stream(stream.stream_id, promised_id, block)
        except (h2.exceptions.TooManyStreamsError, h2.exceptions.StreamClosedError,
                h2.exceptions.NoAvailableStreamIDError) as exc:
            logger.debug("push of %s skipped: %s", path, exc)  # refused before any HPACK encoding
            return
        except h2.exceptions.ProtocolError:
            self.abort_connection(ErrorCodes.INTERNAL_ERROR)  # HPACK state may be off, as in _wire_start
            raise
        self._open_stream(promised_id, head).end_body()  # a pushed GET has no body
        self.outbox.schedule()

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        try:
            validate_trailers(event.headers)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 trailers from %s: %s", self.info.client, exc)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self.reset_stream(stream, ErrorCodes.PROTOCOL_ERROR)
                stream.disconnect()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        length = event.flow_controlled_length
        self._conn_unacked += length
        if self._conn_unacked >= self.config.h2_connection_window_size // 2:
            self.conn.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return  # late DATA for a stream whose response is done
        stream.feed_body(event.data)
        padding = length - len(event.data)
        if padding:
            stream._wire_consumed(padding)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.end_body()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            self._forget(stream)
            stream.disconnect()
            self._close_if_idle()

    def _on_window_updated(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            self._unblock_all()
        else:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.blocked:
                self.blocked.discard(stream)
                stream.blocked = False
                self.schedule_stream(stream)

    def _on_settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        changed = event.changed_settings
        priorities = changed.get(SETTINGS_NO_RFC7540_PRIORITIES)  # type: ignore[call-overload]
        if priorities is not None and priorities.new_value > 1:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §2.1: only 0 or 1
            return
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in changed:
            self._unblock_all()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.closing = True
        if event.error_code:
            logger.debug("peer %s sent GOAWAY with %s", self.info.client, event.error_code)
            self._close_with_error()
        else:
            self._close_if_idle()

    # -- scheduler ----------------------------------------------------------------------------
    def schedule_stream(self, stream: HTTP2Stream) -> None:
        if not stream.queued and not stream.blocked:
            stream.queued = True
            self.ready.push(stream)
        self.outbox.schedule()

    def reprioritize(self, stream: HTTP2Stream, field: bytes) -> None:
        urgency, incremental = parse_priority(field, stream.urgency, stream.incremental)
        self.ready.reprioritize(stream, urgency, incremental, queued=stream.queued)

    def _on_unknown_frame(self, event: h2.events.UnknownFrameReceived) -> None:
        frame: ExtensionFrame = event.frame  # type: ignore[assignment]  # unknown types parse as this
        if frame.type != PRIORITY_UPDATE_FRAME:
            return  # unknown frame types are ignored (RFC 9113 §5.5)
        if frame.stream_id != 0 or len(frame.body) < 4:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §7.1
            return
        stream_id = int.from_bytes(frame.body[:4], "big") & 0x7FFFFFFF
        stream = self.streams.get(stream_id)
        if stream is not None:
            self.reprioritize(stream, frame.body[4:])
        elif (stream_id % 2 == 1 and stream_id > self.conn.highest_inbound_stream_id
              and len(self._early_priorities) < 100):
            self._early_priorities[stream_id] = frame.body[4:]

    def _unblock_all(self) -> None:
        for stream in self.blocked:
            stream.blocked = False
            self.schedule_stream(stream)
        self.blocked.clear()

    def _produce(self) -> bytes:
        if self.ready and not self.outbox.paused:
            try:
                self._send_ready_data()
            except h2.exceptions.ProtocolError as exc:  # never into the loop's exception handler
                logger.error("HTTP/2 send failed, closing the connection: %s", exc)
                self.abort_connection(ErrorCodes.INTERNAL_ERROR)
        return self.conn.data_to_send()

    def _send_ready_data(self) -> None:
        conn = self.conn
        ready = self.ready
        budget = FLUSH_BUDGET
        max_frame = conn.max_outbound_frame_size
        while budget > 0:
            popped: HTTP2Stream | None = ready.pop()
            if popped is None:
                break
            stream = popped
            stream.queued = False
            stream_id = stream.stream_id
            if self.streams.get(stream_id) is not stream:
                continue  # reset or finished meanwhile
            end = False
            if stream.pending_size:
                window = conn.local_flow_control_window(stream_id)
                if window <= 0:
                    stream.blocked = True
                    self.blocked.add(stream)
                    continue
                chunk = stream.take(min(window, max_frame, budget))
                end = stream.end_queued and not stream.pending_size
                conn.send_data(stream_id, chunk, end_stream=end and stream.trailers is None)
                budget -= len(chunk)
                ready.sent(stream, len(chunk))
                if end and stream.trailers is not None:
                    conn.send_headers(stream_id, stream.trailers, end_stream=True)
            elif stream.end_queued:
                end = True
                if stream.trailers is not None:
                    conn.send_headers(stream_id, stream.trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)
            if end:
                self._response_sent(stream)
            elif stream.pending_size:
                stream.queued = True
                ready.push(stream)  # sequential: first again; incremental: back of its round
            if stream.pending_size <= STREAM_SEND_BUFFER:
                stream.wake_sender()
        if ready:
            self.outbox.schedule()  # budget spent: go on next loop turn

    def _response_sent(self, stream: HTTP2Stream) -> None:
        del self.streams[stream.stream_id]
        self._free_slot(stream)  # closed for the client, whatever its handler still does
        self.guard.response_completed()
        if not stream.body_complete:
            # RFC 9113 §8.1: the response is complete; ask the client to stop sending.
            self._reset(stream.stream_id, ErrorCodes.NO_ERROR)
        if self.context.access_log:
            stream.log_completed()
        self._close_if_idle()

    def reset_stream(self, stream: HTTP2Stream, code: ErrorCodes) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self._forget(stream)
            self._reset(stream.stream_id, code)
            self.outbox.schedule()
            self._close_if_idle()

    def _forget(self, stream: HTTP2Stream) -> None:
        """A stream reset by either side: nothing more of its response is sent."""
        if not stream.handler_running:
            self._free_slot(stream)
        stream.pending.clear()
        stream.pending_size = 0
        self.blocked.discard(stream)
        stream.wake_sender()

    def open_stream_window(self, stream: HTTP2Stream) -> None:
        if stream.body_complete or self.streams.get(stream.stream_id) is not stream:
            return
        try:
            self.conn.increment_flow_control_window(stream.unacked, stream.stream_id)
        except h2.exceptions.StreamClosedError:
            return
        stream.unacked = 0
        self.outbox.schedule()

    def _reset(self, stream_id: int, code: ErrorCodes) -> None:
        """RST_STREAM, unless the client closed the stream first (in the same read, typically)."""
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass

    def _respond_and_close_stream(self, stream_id: int, status: int, *, ended: bool) -> None:
        try:
            self.conn.send_headers(stream_id, [(b":status", str(status).encode()),
                                               (b"date", self.context.date_header())], end_stream=True)
        except h2.exceptions.StreamClosedError:
            return
        if not ended:
            self._reset(stream_id, ErrorCodes.NO_ERROR)  # the request body is not wanted

    def _app_done(self, cycle: HTTPCycle) -> None:
        self.running -= 1
        stream: HTTP2Stream = cycle  # type: ignore[assignment]
        stream.handler_running = False
        if self.streams.get(stream.stream_id) is not stream:
            self._free_slot(stream)  # it was reset: its handler held the slot
        self._update_idle_timer()

    def _free_slot(self, stream: HTTP2Stream) -> None:
        """A client stream holds its concurrency slot until its response is complete, or, once
        reset, until its handler has returned."""
        if stream.holds_slot:
            stream.holds_slot = False
            self.occupied -= 1


_EVENT_HANDLERS: dict[type, Callable[[HTTP2Protocol, Any], None]] = {
    h2.events.RequestReceived: HTTP2Protocol._on_request,
    h2.events.DataReceived: HTTP2Protocol._on_data,
    h2.events.TrailersReceived: HTTP2Protocol._on_trailers,
    h2.events.StreamEnded: HTTP2Protocol._on_stream_ended,
    h2.events.StreamReset: HTTP2Protocol._on_stream_reset,
    h2.events.WindowUpdated: HTTP2Protocol._on_window_updated,
    h2.events.RemoteSettingsChanged: HTTP2Protocol._on_settings_changed,
    h2.events.ConnectionTerminated: HTTP2Protocol._on_goaway,
    h2.events.PingAckReceived: HTTP2Protocol._on_ping_ack,
    h2.events.UnknownFrameReceived: HTTP2Protocol._on_unknown_frame,
}
