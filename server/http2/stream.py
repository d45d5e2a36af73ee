"""One HTTP/2 stream's request/response exchange, ASGI side: the `HTTPCycle` of its request.

A stream turns the application's messages into verbs of its `StreamOwner` (owner.py): it
queues response bytes and never frames them (the connection's scheduler does), and `send()`
waits while its owner reports the stream backlogged, which bounds memory per stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from h2.errors import ErrorCodes
from hpack import NeverIndexedHeaderTuple

from ..asgi.http import HTTPCycle, ResponseState
from ..runtime.context import ConnectionInfo, ServerContext, log_access
from .owner import StreamOwner
from .request import CONNECTION_SPECIFIC

# Fields an HTTP/1.1 app may set that HTTP/2 forbids in a response (RFC 9113 §8.2.2); dropped.
_RESPONSE_DROPPED = CONNECTION_SPECIFIC | {b"te"}
# Credentials are never put in the HPACK dynamic table (RFC 7541 §7.1.3), as h2's own
# normalisation would have done.
_SENSITIVE = frozenset((b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"))
_WHITESPACE = b" \t"
# For `value[:1] in`: a tuple compares; `in b" \t"` would fail an int conversion first (costly).
_EDGE_SPACE = (b" ", b"\t")


def outbound_fields(headers: list[tuple[bytes, bytes]], block: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Append the app's response fields to `block` in the form RFC 9113 §8.2 requires.

    The connection's h2 runs with its outbound validation and normalisation off (they cost a
    third of h2's work per response): names are already lower-case tokens and values free of
    CR/LF/NUL (asgi/http.py's `_header_list`), so what remains to do is here, in one pass.
    """
    for field in headers:
        name, value = field
        if name in _RESPONSE_DROPPED:
            continue
        if value[:1] in _EDGE_SPACE or value[-1:] in _EDGE_SPACE:
            field = (name, value := value.strip(_WHITESPACE))
        if name in _SENSITIVE:
            field = NeverIndexedHeaderTuple(name, value)
        block.append(field)
    return block


class HTTP2Stream(HTTPCycle):
    __slots__ = ("owner", "context", "info", "stream_id", "target", "_drain_waiter", "_logged")

    def __init__(self, owner: StreamOwner, context: ServerContext, info: ConnectionInfo, stream_id: int,
                 scope: dict[str, Any], target: str, method: str | None = None) -> None:
        super().__init__(scope, info.response_headers, method)
        self.owner = owner
        self.context = context
        self.info = info
        self.stream_id = stream_id
        self.target = target
        self._drain_waiter: asyncio.Future[None] | None = None
        self._logged = False  # one access-log line per stream, whichever outcome comes first

    def _wire_date(self) -> bytes | None:
        return self.context.date_header()

    def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        # `headers` is the complete head (asgi/headers.py: date, HSTS); HTTP/2 adds `:status`.
        owner = self.owner
        block = outbound_fields(headers, [(b":status", b"%d" % status)])
        for name, value in headers:
            if name == b"priority":  # RFC 9218 §8: the app may re-prioritize its response
                owner.reprioritize(self, value)
        owner.start_response(self, block)

    async def _wire_body(self, body: bytes, more_body: bool) -> None:
        self._wire_body_nowait(body, more_body)
        await self.drain()

    async def drain(self) -> None:
        """Wait while the owner reports more response bytes queued than the send buffer."""
        if self.owner.backlogged(self) and not self.disconnected:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
        self.owner.enqueue(self, b"" if self.head else body, not more_body)

    def _wire_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.owner.enqueue(self, b"", True, outbound_fields(headers, []))

    def _wire_early_hint(self, links: list[bytes]) -> None:
        self.owner.early_hint(self, [link.strip(_WHITESPACE) for link in links])

    def _wire_push(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.owner.push(self, path, headers)

    def log_completed(self) -> None:
        self._log("")

    def _log(self, event: str) -> None:
        if not self._logged:
            self._logged = True
            log_access(self, self.info.tls_log, self.target, "2", self.stream_id, event=event)

    def _wire_completed_unsent(self) -> None:
        # The client reset the stream with the whole body in hand: the response still counts
        # (logged already if the reset came while the app still ran).
        if self.context.access_log:
            self._log("")

    def writable(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wire_abort(self) -> None:
        self.owner.reset(self, ErrorCodes.INTERNAL_ERROR)

    def _wire_aborted(self) -> None:
        if self.context.access_log:
            self._log("aborted")

    def _wire_consumed(self, size: int) -> None:
        self.owner.consumed(self, size)

    def _wire_reading_held(self, within: float) -> bool:
        # Asked only when --body-timeout fires: frames the connection does not read are not the
        # client's stall (the flow-control side needs no check: a stream whose app waits for
        # body has consumed all it got, so the client always has half a window or more).
        return self.owner.reading_held(within)

    def _wire_request_ended(self, answered: bool) -> None:
        # Answered: once the 4xx's END_STREAM is out, the table resets the stream with NO_ERROR
        # (RFC 9113 §8.1), as for any response that completes before its request. Otherwise the
        # started response is cut short; the connection's other streams go on either way.
        if not answered:
            self.owner.reset(self, ErrorCodes.CANCEL)

    def _wire_disconnected(self) -> None:
        self.writable()
        if not self.context.access_log or self._logged:
            return
        state = self.response_state
        if state is ResponseState.COMPLETE and self.owner.sending(self):
            return  # the app (or a limit's 4xx) saw the disconnect, the response still goes out
        # Reset or lost before its END_STREAM went out: cut short (a complete response still
        # queued included), unless the client had every byte the head declared.
        complete = state is ResponseState.STREAMING and not self.expect_trailers and self._body_written()
        self._log("" if complete else "reset")
