"""WebSockets for ASGI apps, the same over HTTP/1.1 (RFC 6455) and HTTP/2 (RFC 8441).

`WebSocketSession` is the ASGI side of one WebSocket: the `websocket.*` messages, the
close handshake, the message size limit and the keep-alive pings, with wsproto's
frame layer turning bytes into messages and back. It never touches a socket: its
carrier (an `HTTP1WebSocket` or an `HTTP2WebSocket`, both `HTTPCycle`s) feeds it the
bytes of the WebSocket and says how the handshake answer, frames, the end and
consumed input reach the wire. Before the handshake is answered the carrier is an
ordinary HTTP exchange, which is how a denial response (`websocket.http.response.*`,
or 403 for a close before accept) is sent.

A module longer than 400 lines: the session's states (`State`) and every transition between
them stay in one file, so that the state machine can be read whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Any, Callable, ClassVar

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from ..config import Config
from ..observe.metrics import NULL_PROTOCOL, ProtocolMetrics
from ..runtime.services import Runtime
from ..runtime.states import NamedState
from .http import ASGIApp, ASGIMessageError, ClientDisconnected, _header_list
from .scope import comma_list
from .waiters import Waiters
from .wscarrier import WebSocketCarrier
from .wsping import PingResponder

logger = logging.getLogger("plexicorn.error")

# Bytes of whole messages waiting for the app beyond which no more input is read (HTTP/1.1)
# or acknowledged (HTTP/2): an app that does not receive holds back only its own peer.
READ_HIGH_WATER = 64 * 1024

# Input handed to wsproto at a time (see feed()).
FEED_SLICE = 16 * 1024

# Response fields the server writes itself during the handshake; an app's copy would contradict them.
_HANDSHAKE_FIELDS = frozenset({b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-protocol",
                               b"sec-websocket-extensions", b"content-length", b"transfer-encoding"})

# Close codes (RFC 6455 §7.4.1).
NORMAL = 1000
ABNORMAL = 1006  # never sent: the connection ended without a close handshake
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
# What an endpoint may put in a Close frame (RFC 6455 §7.4): 1004-1006 and 1015 are reserved or
# local-only, 1016-2999 unassigned; 3000-4999 belong to libraries and applications.
SENDABLE_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


class State(NamedState):
    __slots__ = ()
    CONNECTING: ClassVar[State]
    DENIED: ClassVar[State]
    OPEN: ClassVar[State]
    CLOSING: ClassVar[State]
    ENDED: ClassVar[State]


State.define(CONNECTING="waiting for websocket.accept", DENIED="sending an HTTP response instead of accepting",
             OPEN="open", CLOSING="closing: our Close sent, waiting for the client's", ENDED="ended")


class WebSocketSession:
    """One WebSocket's ASGI receive/send, fed with its bytes by a carrier."""

    def __init__(self, carrier: WebSocketCarrier, config: Config, runtime: Runtime, *,
                 shutting_down: bool = False, metrics: ProtocolMetrics = NULL_PROTOCOL) -> None:
        self.carrier = carrier
        self._metrics = metrics  # told when the WebSocket opens, and its close code when it ends
        carrier.session = self
        self.scope = carrier.scope
        self.state = State.CONNECTING
        self._max_message_size = config.ws_max_message_size
        self._ping_interval = config.ws_ping_interval
        self._ping_timeout = config.ws_ping_timeout  # also how long the client has to answer our Close
        self._ping_budget = config.ws_max_pings
        self._flood_window = config.flood_window
        self._runtime = runtime
        self._ws: Connection | None = None
        # Messages for the app, each with its size in bytes (counted in _queued until received).
        self._inbox: deque[tuple[dict[str, Any], int]] = deque([({"type": "websocket.connect"}, 0)])
        self._receivers = Waiters()
        self._disconnect: dict[str, Any] | None = None  # set once: the last thing receive() returns
        self._queued = 0  # bytes of messages in the inbox
        self._unacked = 0  # input bytes not yet handed back to the carrier
        self._early: list[bytes] = []  # input before the handshake was answered
        self._parts: list[Any] = []  # the message being received
        self._part_size = 0
        self._app_done = False
        self._shutdown_requested = shutting_down  # the server began shutting down before the app accepted
        self._remote_ended = False  # the client ended its side (HTTP/2 END_STREAM) before the accept
        self._ping_payload: bytes | None = None  # the ping awaiting its pong
        self._timer: asyncio.TimerHandle | None = None  # next ping, pong deadline or close deadline
        self._pongs = PingResponder(config, runtime, self._send_pong, carrier.ws_backlogged)

    @property
    def input_held(self) -> bool:
        """Whether input is being held back from the client (HTTP/1.1 stops reading)."""
        return self._unacked > 0

    # -- input, from the carrier -----------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._unacked += len(data)
        if self.state is State.CONNECTING:
            self._early.append(data)  # the app has not accepted yet; bounded by the client's window
            return
        self._parse(data)
        self._release()

    def _parse(self, data: bytes) -> None:
        ws = self._ws
        # Slices bound what one permessage-deflate step may inflate to (~1000x its input) before
        # the size limit is checked.
        for offset in range(0, len(data), FEED_SLICE):
            if ws is None or self.state is State.ENDED or ws.state is ConnectionState.CLOSED:
                return
            ws.receive_data(data[offset:offset + FEED_SLICE] if len(data) > FEED_SLICE else data)
            self._handle_events(ws)

    def remote_ended(self) -> None:
        """The client will send nothing more (HTTP/2 END_STREAM) but did not close the WebSocket first."""
        if self.state is State.CONNECTING:
            self._remote_ended = True  # the WebSocket ends as soon as it is accepted
            return
        if self.state is State.DENIED:
            return  # the HTTP answer still goes out
        if self.state is not State.ENDED:
            self._end(ABNORMAL, "")
            self.carrier.ws_finish()

    def disconnect(self) -> None:
        """The connection is gone or the stream was reset."""
        if self.state is not State.ENDED:
            self._end(ABNORMAL, "")

    def shutdown(self) -> None:
        """The server is shutting down: close with 1012, as uvicorn does (once accepted)."""
        if self.state is State.OPEN:
            self._close(SERVICE_RESTART, "server shutting down")
        elif self.state is State.CONNECTING:
            self._shutdown_requested = True

    def _handle_events(self, ws: Connection) -> None:
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                self._on_message(event)  # type: ignore[arg-type]
            elif kind is Ping:
                # No pong after a Close (RFC 6455 §5.5.1), nor a ping counted.
                if self.state is State.OPEN and ws.state is ConnectionState.OPEN:
                    self._on_ping(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is Pong:
                # In CLOSING the timer is the close deadline, which a late pong must not replace.
                if event.payload == self._ping_payload and self.state is State.OPEN:  # type: ignore[attr-defined]
                    self._ping_payload = None
                    self._start_timer(self._ping_interval, self._ping)
            elif kind is CloseConnection:
                self._on_close(ws, event)  # type: ignore[arg-type]
            if self.state is State.ENDED:
                return

    def _on_message(self, event: Message) -> None:
        if self.state is not State.OPEN:
            return  # after our Close: the client's late messages are dropped
        data = event.data
        self._parts.append(data)
        # The limit is in bytes; wsproto hands text over decoded.
        self._part_size += len(data) if not isinstance(data, str) or data.isascii() else len(data.encode())
        if self._part_size > self._max_message_size:
            self._parts.clear()
            self._close(MESSAGE_TOO_BIG, "message too big", end=True)
            return
        if not event.message_finished:
            return
        message: dict[str, Any]
        if type(event) is TextMessage:
            message = {"type": "websocket.receive", "text": "".join(self._parts)}
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(self._parts)}
        self._parts = []
        self._queued += self._part_size
        self._deliver(message, self._part_size)
        self._part_size = 0

    def _on_close(self, ws: Connection, event: CloseConnection) -> None:
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(ws, event.response())  # echo the client's code (RFC 6455 §5.5.1)
        elif ws.state is ConnectionState.OPEN:
            # wsproto reports a frame it could not parse as a close it wants sent (1002, 1007).
            self._write(ws, CloseConnection(code=event.code, reason=event.reason))
        self._end(event.code, event.reason or "")
        self.carrier.ws_finish()

    def _release(self) -> None:
        """Hand input back (re-open the client's flow) unless the app has fallen behind.

        Once we have sent our Close (also when the app is gone), input is only read for the
        client's Close: holding it back would delay the end until the close deadline.
        """
        state = self.state
        if self._unacked and state is not State.CONNECTING and (
                self._queued <= READ_HIGH_WATER or state is not State.OPEN):
            size, self._unacked = self._unacked, 0
            self.carrier.ws_consumed(size)

    # -- the ASGI app's side -----------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        while True:
            if self._inbox:
                message, size = self._inbox.popleft()
                if size:
                    self._queued -= size
                    self._release()
                return message
            if self._disconnect is not None:
                return self._disconnect
            await self._receivers.wait(self._runtime.create_future())

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        state = self.state
        if kind == "websocket.send":
            if state is State.OPEN:
                await self._send_message(message)
                return
            if state is State.CLOSING or state is State.ENDED:
                raise ClientDisconnected("the WebSocket is closed")
        elif kind == "websocket.accept":
            if state is State.CONNECTING:
                self._accept(message)
                return
        elif kind == "websocket.close":
            if state is State.CONNECTING:
                # Closing before accepting refuses the handshake (ASGI spec: 403).
                self._deny()
                await self.carrier.send({"type": "http.response.start", "status": 403,
                                         "headers": [(b"content-length", b"0")]})
                await self.carrier.send({"type": "http.response.body"})
                return
            if state is State.OPEN:
                code = message.get("code", NORMAL)
                reason = message.get("reason") or ""
                if code not in SENDABLE_CLOSE_CODES or not isinstance(reason, str):
                    raise ASGIMessageError(f"invalid websocket.close code {code!r} or reason {reason!r}")
                self._close(code, reason)
                return
            if state is State.CLOSING or state is State.ENDED:
                return  # already closing or closed: nothing left to do
        elif kind == "websocket.http.response.start":
            if state is State.CONNECTING:
                self._deny()
                await self.carrier.send({**message, "type": "http.response.start"})
                return
        elif kind == "websocket.http.response.body":
            if state is State.DENIED:
                await self.carrier.send({**message, "type": "http.response.body"})
                return
        if state is State.ENDED:
            raise ClientDisconnected("the client went away")  # ASGI 2.4: an OSError, not an app error
        raise ASGIMessageError(f"unexpected {kind!r} while {state.value}")

    def _accept(self, message: dict[str, Any]) -> None:
        carrier = self.carrier
        headers = [header for header in _header_list(message.get("headers") or ())
                   if header[0] not in _HANDSHAKE_FIELDS]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in self.scope["subprotocols"]:
                raise ASGIMessageError(f"subprotocol {subprotocol!r} was not offered by the client "
                                       f"(offered: {self.scope['subprotocols']})")
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        extensions: list[Extension] = [PerMessageDeflate()]
        offers = comma_list(self.scope["headers"], b"sec-websocket-extensions")
        agreed = server_extensions_handshake(offers, extensions) if offers else None
        if agreed is not None:
            headers.append((b"sec-websocket-extensions", agreed))
        self._ws = Connection(ConnectionType.SERVER, extensions)
        self.state = State.OPEN
        self._metrics.websocket_opened()
        self._start_timer(self._ping_interval, self._ping)
        carrier.ws_accept(headers)
        early, self._early = self._early, []
        if early:
            self._parse(b"".join(early))
        self._release()
        if self._remote_ended:
            self.remote_ended()
        elif self._shutdown_requested:
            self.shutdown()

    def _deny(self) -> None:
        self.state = State.DENIED
        self._early.clear()
        self._release()

    async def _send_message(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        data = message.get("bytes")
        event: Message
        if isinstance(text, str) and data is None:
            event = TextMessage(data=text)
        elif isinstance(data, (bytes, bytearray)) and text is None:
            event = BytesMessage(data=data)
        else:
            raise ASGIMessageError("websocket.send needs exactly one of 'text' (a str) and 'bytes' (bytes)")
        ws = self._ws
        assert ws is not None
        self._write(ws, event)
        await self.carrier.ws_drain()
        if self.state is State.ENDED and self._disconnect is not None and self._disconnect["code"] == ABNORMAL:
            raise ClientDisconnected("client disconnected")

    def _write(self, ws: Connection, event: Event) -> None:
        self.carrier.ws_write(ws.send(event))

    # -- the client's pings (wsping.py) ----------------------------------------------------
    def writable(self) -> None:
        """The carrier is no longer backlogged: a pong held back meanwhile may go."""
        self._pongs.writable()

    def _send_pong(self, payload: bytes) -> None:
        ws = self._ws
        if self.state is State.OPEN and ws is not None and ws.state is ConnectionState.OPEN:
            self._write(ws, Pong(payload=payload))

    def _on_ping(self, payload: bytes) -> None:
        """One pong for the latest of the pings waiting for one, within the ping budget (wsping.py)."""
        if self._pongs.ping(payload):
            return
        client = self.scope["client"]
        logger.warning("WebSocket client %s sent more than %d pings in %g s: closed with 1008 (too many pings)",
                       f"{client[0]}:{client[1]}" if client else "-", self._ping_budget, self._flood_window)
        self.carrier.ws_flood_closed("websocket pings")
        self._close(POLICY_VIOLATION, "too many pings", end=True)
        # Fail the WebSocket (RFC 6455 §7.1.7) rather than wait for the client's Close: parsing
        # the rest of its flood to find that Close would cost what the budget exists to save.
        self._end(POLICY_VIOLATION, "too many pings")
        self.carrier.ws_finish()

    # -- closing ---------------------------------------------------------------------------
    def _close(self, code: int, reason: str, *, end: bool = False) -> None:
        """Send our Close; the client's answer (or the timeout) ends the WebSocket.

        `end`: the app learns of it now (the server closed for its own reasons), not from the answer.
        """
        ws = self._ws
        assert ws is not None
        self.state = State.CLOSING
        self._pongs.drop()
        self._write(ws, CloseConnection(code=code, reason=reason))
        self._release()
        if end:
            self._deliver_disconnect(code, reason)
        self._start_timer(self._ping_timeout, self._close_timeout)

    def _close_timeout(self) -> None:
        self._timer = None
        if self.state is State.CLOSING:
            self._end(ABNORMAL, "")
            self.carrier.ws_finish()

    def _end(self, code: int, reason: str) -> None:
        if self.state is State.OPEN or self.state is State.CLOSING:
            self.carrier.ws_ended(code)
        self.state = State.ENDED
        self._cancel_timer()
        self._pongs.drop()
        self._parts = []
        self._deliver_disconnect(code, reason)
        self._release()  # input from now on is dropped: no reason to hold the client back

    def _deliver(self, message: dict[str, Any], size: int) -> None:
        self._inbox.append((message, size))
        self._receivers.wake()

    def _deliver_disconnect(self, code: int, reason: str) -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": int(code), "reason": reason}
            self._receivers.wake()
            if self._ws is not None:  # it was open: the code it ended with, the app's too
                self._metrics.websocket_closed(int(code))

    # -- keep-alive --------------------------------------------------------------------------
    def _start_timer(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        if delay > 0:
            self._timer = self._runtime.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ping(self) -> None:
        self._timer = None
        ws = self._ws
        if self.state is not State.OPEN or ws is None:
            return
        if self.input_held:
            # We are not reading (the app is behind): a pong could not be seen. Ask later.
            self._start_timer(self._ping_interval, self._ping)
            return
        self._ping_payload = os.urandom(4)
        self._write(ws, Ping(payload=self._ping_payload))
        self._start_timer(self._ping_timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        self._timer = None
        if self.state is not State.OPEN or self._ws is None:
            return
        if self.input_held:
            # Reading stopped after the ping (the app fell behind): its pong may be unread. Wait on.
            self._start_timer(self._ping_timeout, self._ping_timed_out)
            return
        logger.debug("WebSocket client %s did not answer a ping in time", self.scope["client"])
        self._write(self._ws, CloseConnection(code=INTERNAL_ERROR, reason="keepalive ping timeout"))
        self._end(INTERNAL_ERROR, "keepalive ping timeout")
        self.carrier.ws_abort()

    # -- the app's end ---------------------------------------------------------------------
    def app_finished(self, error: bool) -> None:
        """The app returned (or raised, `error`): complete whatever it left open."""
        self._app_done = True
        state = self.state
        if state is State.OPEN:
            self._close(INTERNAL_ERROR if error else NORMAL, "")
        elif state is State.CONNECTING or state is State.DENIED:
            self.carrier.fail()  # 500 if nothing was sent, else the exchange is cut short


async def run_websocket_app(app: ASGIApp, session: WebSocketSession,
                            on_done: Callable[[Any], None] | None = None) -> None:
    """Run one ASGI websocket call; whatever the app does, the WebSocket ends and the server carries on."""
    scope = session.scope
    error = True
    try:
        await app(scope, session.receive, session.send)
        error = False
        if session.state is State.CONNECTING and not session.carrier.disconnected:
            logger.error("ASGI app returned without accepting or refusing the WebSocket (%s)", scope["path"])
    except ClientDisconnected:
        error = False
        if logger.isEnabledFor(logging.DEBUG):  # logging caches the answer: no call made at info
            logger.debug("WebSocket client disconnected while the app was sending")
    except asyncio.CancelledError:
        session.app_finished(True)
        raise
    except Exception:
        logger.exception("Exception in ASGI application (WebSocket %s)", scope["path"])
    finally:
        if not session._app_done:
            session.app_finished(error)
        if on_done is not None:
            on_done(session.carrier)
