"""How an HTTP/2 connection lives and ends: its state, its GOAWAYs and its timers.

    OPEN ──shut_down()──▶ DRAINING ──PING ACK or GOAWAY_ROUND_TRIP──▶ CLOSING ──no stream left──▶ (closed)
      │                      │                                          ▲
      ├──────────────────────┴── the peer's graceful GOAWAY ────────────┘
      └── any state but CLOSED ── fail(code) ──▶ FAILED ──flushed──▶ (closed)
    connection_lost() in any state ──▶ CLOSED

`shut_down` is the graceful path (server shutdown, the keep-alive timer, the last request a
connection may serve): a first GOAWAY naming stream 2^31-1 stops new streams without refusing
those already on their way, and its PING measures that round trip; the PING's ACK, or
GOAWAY_ROUND_TRIP seconds, brings the final GOAWAY naming the last stream received (RFC 9113
§6.8). The connection closes (after flushing) once no stream is left. `fail` is the one path
for errors (protocol errors, INADEQUATE_SECURITY, ENHANCE_YOUR_CALM, the peer's GOAWAY with an
error): GOAWAY with the code, every stream disconnected, closed after the flush.
"""

from __future__ import annotations

import asyncio
from typing import Callable, ClassVar

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ..runtime.outbox import Outbox
from ..runtime.services import Runtime
from ..runtime.states import NamedState
from .h2lib import ServerH2Connection

# Seconds the first of two graceful GOAWAYs waits for its PING's answer before the second.
GOAWAY_ROUND_TRIP = 1.0
# The payload of the PING sent with the first graceful GOAWAY.
GOAWAY_PING = b"goaway\x00\x01"
_ALL_STREAMS = 2**31 - 1


class State(NamedState):
    __slots__ = ()
    OPEN: ClassVar[State]  # serving; new streams accepted
    DRAINING: ClassVar[State]  # first graceful GOAWAY sent; streams already on their way still accepted
    CLOSING: ClassVar[State]  # final GOAWAY sent or the peer's received: no new streams, ends when idle
    FAILED: ClassVar[State]  # connection error: GOAWAY with its code queued, streams disconnected
    CLOSED: ClassVar[State]  # the transport is gone


State.define(OPEN="open", DRAINING="draining", CLOSING="closing", FAILED="failed", CLOSED="closed")


class Lifecycle:
    __slots__ = ("state", "_conn", "_outbox", "_runtime", "_keep_alive", "_load", "_on_fail",
                 "_idle_timer", "_round_trip_timer", "_goaway_sent")

    def __init__(self, conn: ServerH2Connection, outbox: Outbox, runtime: Runtime, keep_alive: float,
                 load: Callable[[], tuple[int, int]], on_fail: Callable[[], None],
                 goaway_sent: Callable[[int], None] | None = None) -> None:
        self.state = State.OPEN
        self._conn = conn
        self._outbox = outbox
        self._runtime = runtime
        self._keep_alive = keep_alive
        self._load = load  # (open streams, running handlers)
        self._on_fail = on_fail  # disconnects every stream
        self._idle_timer: asyncio.TimerHandle | None = None
        self._round_trip_timer: asyncio.TimerHandle | None = None
        # Told each GOAWAY written here (by hand, past h2: h2lib counts those h2 writes itself).
        self._goaway_sent = goaway_sent or (lambda code: None)

    @property
    def accepting(self) -> bool:
        """New streams may still be served."""
        return self.state is State.OPEN or self.state is State.DRAINING

    def changed(self, streams: int, running: int) -> None:
        """Streams opened or ended, or a handler returned (`streams` open, `running` handlers):
        a CLOSING connection with no stream left closes, and the keep-alive timer runs while no
        stream is open and no handler runs."""
        if self.state is State.CLOSING and not streams:
            self._outbox.close_after_flush()
        if streams or running or self._outbox.closed:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        elif self._idle_timer is None:
            self._idle_timer = self._runtime.call_later(self._keep_alive, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        streams, running = self._load()
        if not streams and not running:
            self.shut_down()  # GOAWAY(NO_ERROR), then close: the client knows it may reconnect

    def shut_down(self) -> None:
        """The graceful path: the first GOAWAY and its PING (see the module's docstring)."""
        if self.state is not State.OPEN:
            return
        self.state = State.DRAINING
        # Written by hand: h2's close_connection() would forbid finishing open streams.
        self._outbox.write(GoAwayFrame(0, last_stream_id=_ALL_STREAMS, error_code=0).serialize())
        self._goaway_sent(0)
        self._conn.ping(GOAWAY_PING)
        self._outbox.schedule()
        self._round_trip_timer = self._runtime.call_later(GOAWAY_ROUND_TRIP, self._final_goaway)

    def ping_acked(self, data: bytes) -> None:
        if data == GOAWAY_PING:
            self._final_goaway()

    def _final_goaway(self) -> None:
        if self.state is not State.DRAINING:
            return
        self._cancel(round_trip=True)
        self.state = State.CLOSING
        frame = GoAwayFrame(0, last_stream_id=self._conn.highest_inbound_stream_id, error_code=0)
        self._outbox.write(frame.serialize())
        self._goaway_sent(0)
        self.changed(*self._load())

    def peer_went_away(self) -> None:
        """The peer's graceful GOAWAY: no new streams; those open finish, then the connection closes."""
        if self.accepting:
            self._cancel(round_trip=True)
            self.state = State.CLOSING
        self.changed(*self._load())

    def fail(self, code: ErrorCodes | None, last_stream_id: int | None = None) -> None:
        """End the connection for an error: GOAWAY(code) naming `last_stream_id` (default: the
        last stream received), unless `code` is None (h2 has queued its own GOAWAY, or the peer
        failed the connection); every stream is disconnected; closed once the outbox is flushed."""
        if self.state is State.FAILED or self.state is State.CLOSED:
            return
        self.state = State.FAILED
        self._cancel(round_trip=True, idle=True)
        if code is not None:
            if last_stream_id is None:
                last_stream_id = self._conn.highest_inbound_stream_id
            self._outbox.write(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code).serialize())
            self._goaway_sent(code)
        self._outbox.close_after_flush()
        self._on_fail()

    def connection_lost(self) -> None:
        self.state = State.CLOSED
        self._cancel(round_trip=True, idle=True)

    def _cancel(self, *, round_trip: bool = False, idle: bool = False) -> None:
        if round_trip and self._round_trip_timer is not None:
            self._round_trip_timer.cancel()
            self._round_trip_timer = None
        if idle and self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
