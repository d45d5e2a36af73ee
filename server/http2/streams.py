"""The streams of one HTTP/2 connection: their records, their ASGI calls, and the
`StreamOwner` verbs (owner.py) through which each stream's ASGI side reaches the connection.

`StreamTable` opens streams for admitted requests (and pushes), keeps what the connection knows
of each (`StreamRecord`: its send queue, its concurrency slot, unacknowledged request bytes),
routes per-stream events to them, and frees them when their response is sent or they are reset.
The send queues themselves belong to the `Scheduler` (scheduler.py), which the table owns.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Coroutine

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from ..asgi.headers import response_head
from ..asgi.http import HTTPCycle, run_http_app
from ..asgi.scope import build_http_scope, build_websocket_scope
from ..asgi.websocket import WebSocketSession, run_websocket_app
from ..observe.metrics import H2
from ..runtime.context import ConnectionInfo, ServerContext
from ..runtime.outbox import Outbox
from . import push
from .flood import FloodGuard
from .h2lib import ServerH2Connection
from .lifecycle import Lifecycle
from .owner import Headers, OwnedStream
from .priority import parse_priority
from .request import RequestHead
from .scheduler import Scheduler, SendQueue
from .stream import HTTP2Stream
from .websocket import HTTP2WebSocket

logger = logging.getLogger("plexicorn.error")

# PRIORITY_UPDATEs kept for streams not opened yet.
EARLY_PRIORITIES = 100


class StreamRecord:
    """What the connection keeps about one of its streams, beside the stream itself."""

    __slots__ = ("stream", "send", "authority", "unacked", "holds_slot", "handler_running", "started")

    def __init__(self, stream: HTTP2Stream, send: SendQueue, authority: bytes | None, holds_slot: bool) -> None:
        self.stream = stream
        self.started: float | None = None  # a request's metrics token (ProtocolMetrics.request_started)
        self.send = send
        self.authority = authority  # the request's, for the pushes it makes
        self.unacked = 0  # consumed request bytes not yet returned by WINDOW_UPDATE
        # Counted against SETTINGS_MAX_CONCURRENT_STREAMS (see HTTP2Protocol._free_slot).
        self.holds_slot = holds_slot
        self.handler_running = True

class StreamTable:
    """Implements `StreamOwner` for the streams of one connection."""

    def __init__(self, conn: ServerH2Connection, outbox: Outbox, lifecycle: Lifecycle, guard: FloodGuard,
                 context: ServerContext, info: ConnectionInfo) -> None:
        self.conn = conn
        self.outbox = outbox
        self.lifecycle = lifecycle
        self.guard = guard
        self.context = context
        self._spawn = context.runtime.spawn  # bound once: it runs for every request
        self._spawn_eager = context.runtime.spawn_eager
        # Requests' ASGI calls held while a read's events are handled (see `start_held`).
        self._held: list[Coroutine[Any, Any, None]] = []
        self.config = context.config
        self.info = info
        self.metrics = context.metrics.protocol(H2)
        self.scheduler = Scheduler(conn, self._response_sent, outbox.schedule)
        self.streams: dict[int, StreamRecord] = {}
        # PRIORITY_UPDATEs for streams not opened yet (they may precede the HEADERS), bounded.
        self._early_priorities: dict[int, bytes] = {}
        self.running = 0  # ASGI handlers of this connection still running
        # Client streams counted against SETTINGS_MAX_CONCURRENT_STREAMS: open or half-closed
        # (response not complete, RFC 9113 §5.1.2), or reset while their handler still runs
        # (rapid reset must not pile up tasks). See _free_slot.
        self.occupied = 0
        self.last_started = 0  # the highest stream id handed to the application

    def load(self) -> tuple[int, int]:
        """(open streams, running handlers), for the keep-alive timer and the graceful close."""
        return len(self.streams), self.running

    def _load_changed(self) -> None:
        """Tell the lifecycle when the load may have crossed zero (its keep-alive timer and a
        closing connection's end depend only on that): with several streams open and several
        handlers running, nothing it does can change."""
        streams, running = len(self.streams), self.running
        if streams <= 1 or running <= 1:
            self.lifecycle.changed(streams, running)

    def disconnect_all(self) -> None:
        """Every stream's app sees http.disconnect; nothing is left to schedule."""
        records, self.streams = self.streams, {}
        self.scheduler.clear([record.send for record in records.values()])
        for record in records.values():
            self._free_slot(record)
            record.stream.disconnect()

    def server_shutdown(self) -> None:
        for record in list(self.streams.values()):
            record.stream.server_shutdown()  # WebSockets would never end by themselves

    # -- opening ---------------------------------------------------------------------------
    def open_stream(self, stream_id: int, head: RequestHead, *, pushed: bool = False) -> StreamRecord:
        """Register a stream for a request (received or pushed) and start its ASGI call: a
        received one's is held for `start_held`."""
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
            state=self.context.state, extensions=extensions, forwarding=info.forwarding)
        stream = HTTP2Stream(self, self.context, info, stream_id, scope, path.decode("latin-1"))
        stream.limits = self.context.body_limits
        record = self._register(stream, head, incremental=False)
        record.started = self.metrics.request_started()
        call = run_http_app(self.context.app, stream, functools.partial(self._app_done, record))
        if pushed:
            self._spawn(call)  # made by a running app's send(): served from the loop
        else:
            self._held.append(call)
        return record

    def start_held(self) -> None:
        """Start the held calls, each running at once up to its first wait (Python 3.12+).

        The connection calls this once every event of a read is handled: a handler started in
        the middle of them could answer a stream that a later event of the same read resets, or
        go ahead of the flood guard's verdict on the read. WebSockets are spawned (they live
        long: one loop iteration more to start is nothing to them)."""
        held = self._held
        if held:
            self._held = []
            spawn = self._spawn_eager
            for call in held:
                spawn(call)

    def open_websocket(self, stream_id: int, head: RequestHead) -> None:
        path = head.path or b""
        info = self.info
        scope = build_websocket_scope(
            http_version="2", scheme=info.scheme, target=path, headers=head.headers, client=info.client,
            server=info.server, root_path=self.config.root_path, state=self.context.state,
            extensions=info.scope_extensions(), forwarding=info.forwarding)
        stream = HTTP2WebSocket(self, self.context, info, stream_id, scope, path.decode("latin-1"))
        # A stream opened between the two GOAWAYs of a shutdown is served: closed with 1012 once accepted.
        session = WebSocketSession(stream, self.config, self.context.runtime, shutting_down=self.context.shutting_down,
                                   metrics=self.metrics)
        # Messages go out as they are sent: round-robin with the other streams of their urgency
        # rather than one after another (RFC 9218 §4), unless the request's priority says otherwise.
        record = self._register(stream, head, incremental=True)
        self._spawn(run_websocket_app(self.context.app, session, functools.partial(self._app_done, record)))

    def _register(self, stream: HTTP2Stream, head: RequestHead, *, incremental: bool) -> StreamRecord:
        """Priority, authority and bookkeeping of a new stream, before its ASGI call starts."""
        stream_id = stream.stream_id
        early = self._early_priorities
        priority = early.pop(stream_id, None) if early else None
        if early:  # updates for streams skipped over will never be used
            for skipped in [known for known in early if known < stream_id]:
                del early[skipped]
        if not priority:  # none (or an empty one) for this stream: the request's field, if any
            priority = None
            for name, value in head.headers:
                if name == b"priority":
                    priority = value
                    break
        send = (self.scheduler.open(stream_id, stream.writable, *parse_priority(priority)) if priority is not None
                else self.scheduler.open(stream_id, stream.writable, incremental=incremental))
        authority = head.authority or next((v for n, v in head.headers if n == b"host"), None)
        client_stream = bool(stream_id % 2)  # our pushes have a limit of the client's
        record = self.streams[stream_id] = StreamRecord(stream, send, authority, holds_slot=client_stream)
        self.context.metrics.h2_stream_opened()
        self.running += 1
        if client_stream:
            self.occupied += 1
            if stream_id > self.last_started:
                self.last_started = stream_id
        self._load_changed()
        return record

    # -- per-stream events ------------------------------------------------------------------
    def on_data(self, event: h2.events.DataReceived) -> None:
        record = self.streams.get(event.stream_id)
        if record is None:
            return  # late DATA for a stream whose response is done
        record.stream.feed_body(event.data)
        padding = event.flow_controlled_length - len(event.data)
        if padding:
            self._consumed(record, padding)

    def on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        record = self.streams.get(event.stream_id)
        if record is not None:
            record.stream.end_body()

    def on_stream_reset(self, event: h2.events.StreamReset) -> None:
        if event.remote_reset:
            self.context.metrics.h2_stream_reset(True, event.error_code or 0)
        record = self.streams.pop(event.stream_id, None)
        if record is not None:
            self._forget(record)
            record.stream.disconnect()
            self._load_changed()

    def on_window_updated(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            self.scheduler.windows_opened()
        else:
            record = self.streams.get(event.stream_id)
            if record is not None:
                self.scheduler.window_opened(record.send)

    def malformed_trailers(self, stream_id: int) -> None:
        record = self.streams.get(stream_id)
        if record is not None:
            self.reset(record.stream, ErrorCodes.PROTOCOL_ERROR)
            record.stream.disconnect()

    def priority_update(self, stream_id: int, field: bytes) -> None:
        """A PRIORITY_UPDATE frame (RFC 9218 §7.1); one for a stream not opened yet is kept."""
        record = self.streams.get(stream_id)
        if record is not None:
            self.scheduler.reprioritize(record.send, field)
        elif (stream_id % 2 == 1 and stream_id > self.conn.highest_inbound_stream_id
              and len(self._early_priorities) < EARLY_PRIORITIES):
            self._early_priorities[stream_id] = field

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
            self.lifecycle.fail(ErrorCodes.INTERNAL_ERROR)
            raise
        self.outbox.schedule()

    def enqueue(self, stream: OwnedStream, data: bytes, end: bool, trailers: Headers | None = None) -> None:
        record = self._live(stream)
        if record is not None:
            self.scheduler.enqueue(record.send, data, end, trailers)

    def backlogged(self, stream: OwnedStream) -> bool:
        record = self._live(stream)
        return record is not None and self.scheduler.backlogged(record.send)

    def sending(self, stream: OwnedStream) -> bool:
        return self._live(stream) is not None

    def consumed(self, stream: OwnedStream, size: int) -> None:
        record = self._live(stream)
        if record is not None:
            self._consumed(record, size)

    def reading_held(self, within: float) -> bool:
        return self.outbox.paused_within(within)  # HTTP2Protocol.pause_writing holds reading

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
        self.reset_id(stream.stream_id, code)
        self.outbox.schedule()
        self._load_changed()

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
            self.lifecycle.fail(ErrorCodes.INTERNAL_ERROR)  # HPACK state may be off, as in _send_headers
            raise
        if promised_id is not None:
            self.open_stream(promised_id, head, pushed=True).stream.end_body()  # a pushed GET has no body
            self.outbox.schedule()


    # -- bookkeeping ---------------------------------------------------------------------------
    def _response_sent(self, send: SendQueue) -> None:
        """The scheduler sent a response's END_STREAM."""
        record = self.streams.pop(send.stream_id)
        self._free_slot(record)  # closed for the client, whatever its handler still does
        self.guard.response_completed()
        stream = record.stream
        if not stream.body_complete:
            # RFC 9113 §8.1: the response is complete; ask the client to stop sending.
            self.reset_id(send.stream_id, ErrorCodes.NO_ERROR)
        if self.context.access_log:
            stream.log_completed()
        self._load_changed()

    def _forget(self, record: StreamRecord) -> None:
        """A stream reset by either side: nothing more of its response is sent."""
        if not record.handler_running:
            self._free_slot(record)
        self.scheduler.drop(record.send)

    def reset_id(self, stream_id: int, code: ErrorCodes) -> None:
        """RST_STREAM, unless the client closed the stream first (in the same read, typically)."""
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass

    def respond_and_close(self, stream_id: int, status: int, *, ended: bool) -> None:
        try:
            # A bodiless answer: :status and the fields every response gets (date, HSTS).
            head = response_head([], date=self.context.date_header(), defaults=self.info.response_headers)
            self.conn.send_headers(stream_id, [(b":status", str(status).encode()), *head], end_stream=True)
        except h2.exceptions.StreamClosedError:
            return
        self.metrics.request_answered(status)
        if not ended:
            self.reset_id(stream_id, ErrorCodes.NO_ERROR)  # the request body is not wanted

    def _app_done(self, record: StreamRecord, cycle: HTTPCycle) -> None:
        if record.started is not None:
            self.metrics.request_finished(record.started, cycle.status)
        self.running -= 1
        record.handler_running = False
        if self.streams.get(record.stream.stream_id) is not record:
            self._free_slot(record)  # it was reset: its handler held the slot
        self._load_changed()

    def _free_slot(self, record: StreamRecord) -> None:
        """A client stream holds its concurrency slot until its response is complete, or, once
        reset, until its handler has returned."""
        if record.holds_slot:
            record.holds_slot = False
            self.occupied -= 1

