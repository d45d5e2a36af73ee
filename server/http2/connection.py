"""HTTP/2 connections, on h2: every stream is its own ASGI call.

`HTTP2Protocol` turns bytes into h2 events and events into streams. The read path never waits
for an application: request DATA is handed to the stream's buffer and its window re-opened
only as the app consumes it. The send path belongs to the `Scheduler` (scheduler.py): streams
only queue bytes, through the `StreamOwner` verbs this class implements (owner.py), and once
per loop turn the scheduler frames DATA for the streams whose windows allow. How the
connection ends (GOAWAYs, timers, failures) is `Lifecycle`'s (lifecycle.py); pushes are
push.py's; every adaptation of h2 itself is h2lib.py's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import ExtensionFrame

from ..asgi.http import HTTPCycle, build_http_scope, run_http_app
from ..asgi.websocket import WebSocketSession, build_websocket_scope, run_websocket_app, version_problem
from ..runtime.context import ConnectionInfo, ServerContext, describe_connection
from ..runtime.outbox import Outbox
from . import push
from .flood import FloodGuard
from .h2lib import ServerH2Connection
from .lifecycle import Lifecycle, State
from .owner import Headers, OwnedStream
from .priority import PRIORITY_UPDATE_FRAME, SETTINGS_NO_RFC7540_PRIORITIES, parse_priority
from .request import MalformedRequest, RequestHead, parse_request_headers, validate_trailers
from .scheduler import Scheduler, SendQueue
from .stream import HTTP2Stream
from .websocket import HTTP2WebSocket

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


class StreamRecord:
    """What the connection keeps about one of its streams, beside the stream itself."""

    __slots__ = ("stream", "send", "authority", "unacked", "holds_slot", "handler_running")

    def __init__(self, stream: HTTP2Stream, send: SendQueue, authority: bytes | None, holds_slot: bool) -> None:
        self.stream = stream
        self.send = send
        self.authority = authority  # the request's, for the pushes it makes
        self.unacked = 0  # consumed request bytes not yet returned by WINDOW_UPDATE
        # Counted against SETTINGS_MAX_CONCURRENT_STREAMS (see HTTP2Protocol._free_slot).
        self.holds_slot = holds_slot
        self.handler_running = True


class HTTP2Protocol(asyncio.Protocol):
    scheduler: Scheduler
    lifecycle: Lifecycle

    def __init__(self, context: ServerContext, *, refuse_with: ErrorCodes | None = None) -> None:
        self.context = context
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
        # Request headers are validated per stream by request.py (h2 would fail the connection).
        self.conn = ServerH2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False), self.guard)
        self.streams: dict[int, StreamRecord] = {}
        # PRIORITY_UPDATEs for streams not opened yet (they may precede the HEADERS), bounded.
        self._early_priorities: dict[int, bytes] = {}
        self.running = 0  # ASGI handlers of this connection still running
        # Client streams counted against SETTINGS_MAX_CONCURRENT_STREAMS: open or half-closed
        # (response not complete, RFC 9113 §5.1.2), or reset while their handler still runs
        # (rapid reset must not pile up tasks). See _free_slot.
        self.occupied = 0
        self._last_started = 0  # the highest stream id handed to the application
        self._read_holds = 0  # _HELD_BY_* bits
        self.requests = 0
        self._conn_unacked = 0

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self.outbox = Outbox(self.runtime, transport, self._produce)
        self.scheduler = Scheduler(self.conn, self._response_sent, self.outbox.schedule)
        self.lifecycle = Lifecycle(self.conn, self.outbox, self.runtime, self.config.keep_alive_timeout,
                                   self._load, self._disconnect_all)
        self.info = describe_connection(transport, self.context)
        self.context.connections.add(self)
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
            self.lifecycle.changed()
        if self._upgrade is not None:
            self._start_upgraded_stream()

    @classmethod
    def upgraded(cls, context: ServerContext, settings: bytes, headers: Headers, body: bytes) -> HTTP2Protocol:
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
        record = self.streams.get(1)
        if record is not None:
            if body:
                record.stream.feed_body(body)  # read over HTTP/1.1: no HTTP/2 window to re-open
            record.stream.end_body()
        self.outbox.schedule()

    def data_received(self, data: bytes) -> None:
        if not (self.outbox.closed or self.lifecycle.state is State.FAILED):
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
            self.lifecycle.fail(None)
            return
        handlers = _EVENT_HANDLERS
        lifecycle = self.lifecycle
        try:
            for event in events:
                if guard.exceeded is not None or lifecycle.state is State.FAILED:
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
        if self.conn.backlog:
            self._hold_reading(_HELD_BY_BACKLOG)
            self.runtime.call_soon(self._next_turn)
        else:
            self._release_reading(_HELD_BY_BACKLOG)

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
        self.abort_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self._last_started)

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.connections.discard(self)
        self.lifecycle.connection_lost()
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

    # -- lifecycle (lifecycle.py) ---------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful GOAWAY in two steps, then close once the open streams finish."""
        if self.context.shutting_down:
            for record in list(self.streams.values()):
                record.stream.server_shutdown()  # WebSockets would never end by themselves
        self.lifecycle.shut_down()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def abort_connection(self, code: ErrorCodes, *, last_stream_id: int | None = None) -> None:
        """End the connection with GOAWAY(code); every open stream is disconnected."""
        self.lifecycle.fail(code, last_stream_id)

    def _load(self) -> tuple[int, int]:
        return len(self.streams), self.running

    def _disconnect_all(self) -> None:
        """Every stream's app sees http.disconnect; nothing is left to schedule."""
        records, self.streams = self.streams, {}
        self.scheduler.clear([record.send for record in records.values()])
        for record in records.values():
            self._free_slot(record)
            record.stream.disconnect()

    # -- events -------------------------------------------------------------------------------
    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        config = self.config
        accepting = self.lifecycle.accepting
        if not accepting or self.occupied >= config.h2_max_concurrent_streams:
            # A peer over the limit as it counts (its open streams) is charged for the refusal,
            # so one that keeps overrunning is ended; streams refused because of handlers it
            # reset, or of a shutdown, are not its fault.
            if accepting and len(self.streams) >= config.h2_max_concurrent_streams:
                self.guard.reset()
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        ended = event.stream_ended is not None
        # RFC 9113 §6.5.2: each field counts its name, its value and 32 bytes.
        if sum(len(name) + len(value) + 32 for name, value in event.headers) > config.h2_max_header_list_size:
            # A block of thousands of tiny fields costs its HPACK decoding: charged by its size.
            self.guard.reset(1 + len(event.headers) / 100)
            self._respond_and_close_stream(stream_id, 431, ended=ended)  # §10.5.1
            return
        try:
            head = parse_request_headers(event.headers, ended=ended, allow_protocol=True)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 request from %s on stream %d: %s", self.info.client, stream_id, exc)
            self._reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        if head.method == b"CONNECT":
            # Only RFC 8441's websocket; a plain CONNECT would make us a proxy, which we are not.
            refusal = 501 if head.protocol != b"websocket" else 400 if version_problem(head.headers) else None
            if refusal is not None:
                self.guard.reset()
                self._respond_and_close_stream(stream_id, refusal, ended=ended)
                return
            self._open_websocket(stream_id, head)
        else:
            self._open_stream(stream_id, head)
        self.requests += 1
        if self.requests == config.max_requests_per_connection:
            self.shutdown()  # GOAWAY naming this stream last: it finishes, the client reconnects

    def _open_stream(self, stream_id: int, head: RequestHead) -> StreamRecord:
        """Register a stream for a request (received or pushed) and start its ASGI call."""
        path = head.path or b""
        info = self.info
        extensions = info.scope_extensions()
        extensions["http.response.trailers"] = {}
        extensions["http.response.early_hint"] = {}
        # Only client-initiated (odd) streams may carry PUSH_PROMISE (RFC 9113 §8.4).
        if stream_id % 2 and self.conn.remote_settings.enable_push:
            extensions["http.response.push"] = {}
        scope = build_http_scope(
            # The scheme is the connection's, not the client's :scheme claim (as on HTTP/1.1).
            http_version="2", method=head.method.decode("latin-1"), scheme=info.scheme, target=path,
            headers=head.headers, client=info.client, server=info.server, root_path=self.config.root_path,
            state=self.context.state, extensions=extensions)
        stream = HTTP2Stream(self, self.context, info, stream_id, scope, path.decode("latin-1"))
        record = self._register(stream, head, incremental=False)
        self.context.spawn(run_http_app(self.context.app, stream, functools.partial(self._app_done, record)))
        return record

    def _open_websocket(self, stream_id: int, head: RequestHead) -> None:
        path = head.path or b""
        info = self.info
        scope = build_websocket_scope(
            http_version="2", scheme=info.scheme, target=path, headers=head.headers, client=info.client,
            server=info.server, root_path=self.config.root_path, state=self.context.state,
            extensions=info.scope_extensions())
        stream = HTTP2WebSocket(self, self.context, info, stream_id, scope, path.decode("latin-1"))
        # A stream opened between the two GOAWAYs of a shutdown is served: closed with 1012 once accepted.
        session = WebSocketSession(stream, self.config, self.runtime, shutting_down=self.context.shutting_down)
        # Messages go out as they are sent: round-robin with the other streams of their urgency
        # rather than one after another (RFC 9218 §4), unless the request's priority says otherwise.
        record = self._register(stream, head, incremental=True)
        self.context.spawn(run_websocket_app(self.context.app, session, functools.partial(self._app_done, record)))

    def _register(self, stream: HTTP2Stream, head: RequestHead, *, incremental: bool) -> StreamRecord:
        """Priority, authority and bookkeeping of a new stream, before its ASGI call starts."""
        stream_id = stream.stream_id
        early = self._early_priorities
        priority = early.pop(stream_id, None) if early else None
        if early:  # updates for streams skipped over will never be used
            for skipped in [known for known in early if known < stream_id]:
                del early[skipped]
        priority = priority or next((value for name, value in head.headers if name == b"priority"), None)
        send = (self.scheduler.open(stream_id, stream.writable, *parse_priority(priority)) if priority is not None
                else self.scheduler.open(stream_id, stream.writable, incremental=incremental))
        authority = head.authority or next((v for n, v in head.headers if n == b"host"), None)
        client_stream = bool(stream_id % 2)  # our pushes have a limit of the client's
        record = self.streams[stream_id] = StreamRecord(stream, send, authority, holds_slot=client_stream)
        self.running += 1
        if client_stream:
            self.occupied += 1
            if stream_id > self._last_started:
                self._last_started = stream_id
        self.lifecycle.changed()
        return record

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        try:
            validate_trailers(event.headers)
        except MalformedRequest as exc:
            logger.debug("malformed HTTP/2 trailers from %s: %s", self.info.client, exc)
            record = self.streams.get(event.stream_id)
            if record is not None:
                self.reset(record.stream, ErrorCodes.PROTOCOL_ERROR)
                record.stream.disconnect()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        length = event.flow_controlled_length
        self._conn_unacked += length
        if self._conn_unacked >= self.config.h2_connection_window_size // 2:
            self.conn.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        record = self.streams.get(event.stream_id)
        if record is None:
            return  # late DATA for a stream whose response is done
        record.stream.feed_body(event.data)
        padding = length - len(event.data)
        if padding:
            self._consumed(record, padding)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        record = self.streams.get(event.stream_id)
        if record is not None:
            record.stream.end_body()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        record = self.streams.pop(event.stream_id, None)
        if record is not None:
            self._forget(record)
            record.stream.disconnect()
            self.lifecycle.changed()

    def _on_window_updated(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            self.scheduler.windows_opened()
        else:
            record = self.streams.get(event.stream_id)
            if record is not None:
                self.scheduler.window_opened(record.send)

    def _on_settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        changed = event.changed_settings
        priorities = changed.get(SETTINGS_NO_RFC7540_PRIORITIES)  # type: ignore[call-overload]
        if priorities is not None and priorities.new_value > 1:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §2.1: only 0 or 1
            return
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in changed:
            self.scheduler.windows_opened()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.error_code:
            logger.debug("peer %s sent GOAWAY with %s", self.info.client, event.error_code)
            self.lifecycle.fail(None)
        else:
            self.lifecycle.peer_went_away()

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        self.lifecycle.ping_acked(event.ping_data)

    def _on_unknown_frame(self, event: h2.events.UnknownFrameReceived) -> None:
        frame: ExtensionFrame = event.frame  # type: ignore[assignment]  # unknown types parse as this
        if frame.type != PRIORITY_UPDATE_FRAME:
            return  # unknown frame types are ignored (RFC 9113 §5.5)
        if frame.stream_id != 0 or len(frame.body) < 4:
            self.abort_connection(ErrorCodes.PROTOCOL_ERROR)  # RFC 9218 §7.1
            return
        stream_id = int.from_bytes(frame.body[:4], "big") & 0x7FFFFFFF
        record = self.streams.get(stream_id)
        if record is not None:
            self.scheduler.reprioritize(record.send, frame.body[4:])
        elif (stream_id % 2 == 1 and stream_id > self.conn.highest_inbound_stream_id
              and len(self._early_priorities) < 100):
            self._early_priorities[stream_id] = frame.body[4:]

    # -- StreamOwner (owner.py): what streams ask of their connection ----------------------------
    def _live(self, stream: OwnedStream) -> StreamRecord | None:
        """The stream's record, if the stream is still open here (not finished nor reset)."""
        record = self.streams.get(stream.stream_id)
        return record if record is not None and record.stream is stream else None

    def start_response(self, stream: OwnedStream, block: Headers) -> None:
        self._send_headers(stream, block)

    def early_hint(self, stream: OwnedStream, links: list[bytes]) -> None:
        # An informational HEADERS frame: no END_STREAM, the final response follows.
        self._send_headers(stream, [(b":status", b"103")] + [(b"link", link) for link in links])

    def _send_headers(self, stream: OwnedStream, block: Headers) -> None:
        if self._live(stream) is None:
            return
        try:
            self.conn.send_headers(stream.stream_id, block)
        except h2.exceptions.ProtocolError:
            # h2 refused the block part-way through HPACK encoding: the compression state
            # may no longer match the client's, so the connection cannot go on.
            self.abort_connection(ErrorCodes.INTERNAL_ERROR)
            raise
        self.outbox.schedule()

    def enqueue(self, stream: OwnedStream, data: bytes, end: bool, trailers: Headers | None = None) -> None:
        record = self._live(stream)
        if record is not None:
            self.scheduler.enqueue(record.send, data, end, trailers)

    def backlogged(self, stream: OwnedStream) -> bool:
        record = self._live(stream)
        return record is not None and self.scheduler.backlogged(record.send)

    def consumed(self, stream: OwnedStream, size: int) -> None:
        record = self._live(stream)
        if record is not None:
            self._consumed(record, size)

    def _consumed(self, record: StreamRecord, size: int) -> None:
        record.unacked += size
        if record.unacked >= self.config.h2_initial_window_size // 2 and not record.stream.body_complete:
            try:
                self.conn.increment_flow_control_window(record.unacked, record.stream.stream_id)
            except h2.exceptions.StreamClosedError:
                return
            record.unacked = 0
            self.outbox.schedule()

    def reset(self, stream: OwnedStream, code: ErrorCodes, *, send_queued: bool = False) -> None:
        record = self._live(stream)
        if record is None:
            return
        if send_queued:
            self.scheduler.send_now(record.send)
        del self.streams[stream.stream_id]
        self._forget(record)
        self._reset(stream.stream_id, code)
        self.outbox.schedule()
        self.lifecycle.changed()

    def reprioritize(self, stream: OwnedStream, field: bytes) -> None:
        record = self._live(stream)
        if record is not None:
            self.scheduler.reprioritize(record.send, field)

    def push(self, stream: OwnedStream, path: str, headers: Headers) -> None:
        """ASGI http.response.push: PUSH_PROMISE a GET of `path` on `stream`, then serve it as a
        request; skipped silently when it cannot be made (push.py)."""
        record = self._live(stream)
        if (record is None or record.authority is None or not self.lifecycle.accepting
                or self.running >= self.config.h2_max_concurrent_streams
                or not push.push_allowed(self.conn, stream.stream_id, sum(1 for sid in self.streams if sid % 2 == 0))):
            return
        block, head = push.promised_request(self.info.scheme, record.authority, path, headers)
        try:
            promised_id = push.promise(self.conn, stream.stream_id, block)
        except h2.exceptions.ProtocolError:
            self.abort_connection(ErrorCodes.INTERNAL_ERROR)  # HPACK state may be off, as in _send_headers
            raise
        if promised_id is not None:
            self._open_stream(promised_id, head).stream.end_body()  # a pushed GET has no body
            self.outbox.schedule()

    # -- the send side's bookkeeping ------------------------------------------------------------
    def _produce(self) -> bytes:
        if not self.outbox.paused:
            try:
                self.scheduler.frame()
            except h2.exceptions.ProtocolError as exc:  # never into the loop's exception handler
                logger.error("HTTP/2 send failed, closing the connection: %s", exc)
                self.abort_connection(ErrorCodes.INTERNAL_ERROR)
        return self.conn.data_to_send()

    def _response_sent(self, send: SendQueue) -> None:
        """The scheduler sent a response's END_STREAM."""
        record = self.streams.pop(send.stream_id)
        self._free_slot(record)  # closed for the client, whatever its handler still does
        self.guard.response_completed()
        stream = record.stream
        if not stream.body_complete:
            # RFC 9113 §8.1: the response is complete; ask the client to stop sending.
            self._reset(send.stream_id, ErrorCodes.NO_ERROR)
        if self.context.access_log:
            stream.log_completed()
        self.lifecycle.changed()

    def _forget(self, record: StreamRecord) -> None:
        """A stream reset by either side: nothing more of its response is sent."""
        if not record.handler_running:
            self._free_slot(record)
        self.scheduler.drop(record.send)

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

    def _app_done(self, record: StreamRecord, cycle: HTTPCycle) -> None:
        self.running -= 1
        record.handler_running = False
        if self.streams.get(record.stream.stream_id) is not record:
            self._free_slot(record)  # it was reset: its handler held the slot
        self.lifecycle.changed()

    def _free_slot(self, record: StreamRecord) -> None:
        """A client stream holds its concurrency slot until its response is complete, or, once
        reset, until its handler has returned."""
        if record.holds_slot:
            record.holds_slot = False
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
