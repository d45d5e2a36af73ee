"""One HTTP/2 stream's request/response exchange: the ASGI cycle and the stream's send queue.

A stream only queues response bytes; `HTTP2Protocol`'s scheduler frames them as DATA
when the stream's turn and flow-control window allow. `send()` waits while more than
STREAM_SEND_BUFFER bytes are queued, which bounds memory per stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import h2.exceptions
from h2.errors import ErrorCodes

from ..asgi.http import HTTPCycle
from ..runtime.context import log_access
from .priority import DEFAULT_INCREMENTAL, DEFAULT_URGENCY
from .request import CONNECTION_SPECIFIC

if TYPE_CHECKING:
    from .connection import HTTP2Protocol

# Response bytes a stream may have queued before `send()` makes its app wait.
STREAM_SEND_BUFFER = 64 * 1024
# Fields an HTTP/1.1 app may set that HTTP/2 forbids in a response (RFC 9113 §8.2.2); dropped.
_RESPONSE_DROPPED = CONNECTION_SPECIFIC | {b"te"}



class HTTP2Stream(HTTPCycle):
    __slots__ = ("protocol", "stream_id", "target", "head", "pending", "pending_size", "end_queued",
                 "queued", "blocked", "unacked", "trailers", "authority", "urgency", "incremental", "priority_epoch",
                 "turns", "turn_sent", "holds_slot", "handler_running", "_drain_waiter")

    def __init__(self, protocol: HTTP2Protocol, stream_id: int, scope: dict[str, Any], target: str,
                 method: str | None = None) -> None:
        super().__init__(scope, protocol.info.response_headers, method)
        self.protocol = protocol
        self.stream_id = stream_id
        self.target = target
        self.head = self.method == "HEAD"
        self.pending: deque[memoryview] = deque()
        self.pending_size = 0
        self.end_queued = False
        self.queued = False  # in the scheduler's ready queue
        self.blocked = False  # waiting for the peer to open a window
        self.unacked = 0  # consumed request bytes not yet returned by WINDOW_UPDATE
        # Set before end_queued by the ASGI trailers extension: sent as the final HEADERS frame.
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.authority: bytes | None = None  # the request's, for the pushes it makes
        self.urgency = DEFAULT_URGENCY  # RFC 9218, set from the request and updates
        self.incremental = DEFAULT_INCREMENTAL
        self.priority_epoch = 0
        self.turns = 0  # sequential turns taken (h2priority.SEQUENTIAL_TURN bytes each)
        self.turn_sent = 0
        # Counted against SETTINGS_MAX_CONCURRENT_STREAMS (HTTP2Protocol._free_slot).
        self.holds_slot = False
        self.handler_running = True
        self._drain_waiter: asyncio.Future[None] | None = None

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        protocol = self.protocol
        block = [(b":status", str(status).encode()), (b"date", protocol.context.date_header())]
        block += [h for h in headers if h[0] not in _RESPONSE_DROPPED]
        for name, value in headers:
            if name == b"priority":  # RFC 9218 §8: the app may re-prioritize its response
                protocol.reprioritize(self, value)
        try:
            protocol.conn.send_headers(self.stream_id, block)
        except h2.exceptions.ProtocolError:
            # h2 refused the block part-way through HPACK encoding: the compression state
            # may no longer match the client's, so the connection cannot go on.
            protocol.abort_connection(ErrorCodes.INTERNAL_ERROR)
            raise
        protocol.outbox.schedule()

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        self._wire_body_nowait(body, more_body)
        await self.drain()

    async def drain(self) -> None:
        """Wait while the queued response bytes exceed STREAM_SEND_BUFFER."""
        if self.pending_size > STREAM_SEND_BUFFER and not self.disconnected:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        if body and not self.head:
            self.pending.append(memoryview(body))
            self.pending_size += len(body)
        if not more_body:
            self.end_queued = True
        self.protocol.schedule_stream(self)

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        trailers = [h for h in headers if h[0] not in _RESPONSE_DROPPED]
        if trailers:
            self.trailers = trailers  # the scheduler sends them once the queued body is out
        self._wire_body_nowait(b"", False)

    def _wire_early_hint(self, links: list[bytes]) -> None:
        protocol = self.protocol
        if protocol.streams.get(self.stream_id) is not self:
            return
        try:
            # An informational HEADERS frame: no END_STREAM, the final response follows.
            protocol.conn.send_headers(self.stream_id, [(b":status", b"103")] + [(b"link", link) for link in links])
        except h2.exceptions.ProtocolError:
            protocol.abort_connection(ErrorCodes.INTERNAL_ERROR)  # see _wire_start
            raise
        protocol.outbox.schedule()

    def _wire_push(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.protocol.push(self, path, headers)

    def take(self, size: int) -> memoryview | bytes:
        """Remove and return up to `size` queued bytes."""
        first = self.pending[0]
        if len(first) > size:
            self.pending[0] = first[size:]
            self.pending_size -= size
            return first[:size]
        self.pending.popleft()
        if len(first) == size or not self.pending:
            self.pending_size -= len(first)
            return first
        parts = [first]
        taken = len(first)
        while self.pending and taken < size:
            part = self.pending.popleft()
            if taken + len(part) > size:
                self.pending.appendleft(part[size - taken:])
                part = part[:size - taken]
            parts.append(part)
            taken += len(part)
        self.pending_size -= taken
        return b"".join(parts)

    def log_completed(self) -> None:
        protocol = self.protocol
        log_access(protocol.info.client, self.method, self.target, "2", self.status, self.bytes_sent)

    def wake_sender(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wire_abort(self) -> None:
        self.protocol.reset_stream(self, ErrorCodes.INTERNAL_ERROR)

    def _wire_consumed(self, size: int) -> None:
        self.unacked += size
        if self.unacked >= self.protocol.config.h2_initial_window_size // 2:
            self.protocol.open_stream_window(self)

    def _wire_disconnected(self) -> None:
        self.wake_sender()


