"""The reference HTTP/1.1 codec (codec.HTTP1Codec) on h11's state machine."""

from __future__ import annotations

from typing import Any

import h11

from . import h11lib
from .codec import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BadRequest,
    Event,
    HTTP1Codec,
    ResponseError,
    read_head,
)

# A request read whole, with what the client sends next waiting in h11's buffer (DONE, or
# MIGHT_SWITCH_PROTOCOL while an upgrade request waits for the app's answer).
_REQUEST_DONE = (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)


class _FileRange:
    """Stands for the file bytes in h11's output: only its length matters to h11."""
    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class H11Codec:
    __slots__ = ("conn",)

    def __init__(self, max_head_size: int, conn: h11.Connection | None = None) -> None:
        self.conn = conn if conn is not None else h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)

    # -- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def next_event(self) -> Event:
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(exc.error_status_hint, h11lib.plain_reason(exc)) from None
        kind = type(event)
        if kind is h11.Data:
            return event.data  # type: ignore[union-attr]
        if kind is h11.Request:
            # The fields as a list once: h11's Headers iterates item by item through
            # Sequence.__getitem__, and every check and the scope read them.
            return read_head(event.method, event.target, event.http_version,  # type: ignore[union-attr]
                             list(event.headers))  # type: ignore[union-attr]
        if kind is h11.EndOfMessage:
            return END_OF_MESSAGE  # a request's trailers are dropped, as before
        if kind is h11.ConnectionClosed:
            return CONNECTION_CLOSED
        if event is h11.PAUSED:
            return PAUSED
        return NEED_DATA

    def buffered_input(self) -> int:
        return h11lib.buffered_input(self.conn)

    def trailing_data(self) -> bytes:
        return self.conn.trailing_data[0]

    @property
    def request_complete(self) -> bool:
        return self.conn.their_state in _REQUEST_DONE

    @property
    def waiting_for_100_continue(self) -> bool:
        return self.conn.they_are_waiting_for_100_continue

    def successor(self) -> HTTP1Codec:
        return self

    # -- output -----------------------------------------------------------------------------
    def _send(self, event: Any) -> bytes:
        try:
            return self.conn.send(event)  # type: ignore[return-value]
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None

    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        try:
            event = h11lib.response(status, headers, reason)
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None
        return self._send(event)

    def informational(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> bytes:
        conn = self.conn
        # h11 takes any 1xx as the answer to `Expect: 100-continue`; a 103 is not (RFC 9110 §10.1.1).
        waiting = conn.client_is_waiting_for_100_continue
        try:
            event = h11.InformationalResponse(status_code=status, headers=headers, reason=reason)
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None
        data = self._send(event)
        if status not in (100, 101):
            conn.client_is_waiting_for_100_continue = waiting
        return data

    def body(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data))

    def end(self, trailers: list[tuple[bytes, bytes]]) -> bytes:
        if trailers and not h11lib.body_is_chunked(self.conn):
            # Only a chunked body has room for a trailer section (RFC 9112 §7.1.2); with a
            # content-length (or HEAD, HTTP/1.0) the response still completes, without them.
            trailers = []
        try:
            event = h11.EndOfMessage(headers=trailers)
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None
        return self._send(event)

    def file_framing(self, count: int) -> tuple[bytes, bytes]:
        # h11 frames a body it never sees: it counts the placeholder's length (content-length,
        # chunk size) and hands it back among the framing bytes, where the file goes instead.
        placeholder = _FileRange(count)
        before: list[bytes] = []
        after: list[bytes] = []
        into = before
        try:
            pieces = self.conn.send_with_data_passthrough(h11.Data(data=placeholder))  # type: ignore[arg-type]
        except h11.LocalProtocolError as exc:
            raise ResponseError(str(exc)) from None
        for piece in pieces or ():
            if piece is placeholder:
                into = after
            else:
                into.append(piece)  # type: ignore[arg-type]
        return b"".join(before), b"".join(after)

    @property
    def can_respond(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def reusable(self) -> bool:
        conn = self.conn
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def start_next_cycle(self) -> None:
        self.conn.start_next_cycle()
