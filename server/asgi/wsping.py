"""Answering a WebSocket client's pings without letting a ping flood cost anyone else.

Two defences, for `WebSocketSession`:

- Pongs are coalesced. RFC 6455 §5.5.3 lets an endpoint answer only the most recent of
  several pings, so at most one pong is owed at a time: a ping that arrives while one is
  owed replaces its payload. The pong is handed to the carrier on the next loop turn (all
  the pings of one read get one pong) and not while the carrier is backlogged (the client
  leaves our frames unread); the carrier's `writable()` call lets it go once it catches up.
  So a WebSocket holds at most one pong frame of its own, PONG_MAX_SIZE bytes, and hands the
  carrier at most one per loop turn and per budgeted ping, never beyond its bounded send
  buffer.
- Pings are budgeted: `ws_max_pings` per `flood_window` seconds, a continuously refilled
  token bucket. The `websockets` library pings every 20 s and browsers never do, so only a
  flood runs it dry; the session then closes the WebSocket with 1008.
"""

from __future__ import annotations

from typing import Callable

from ..config import Config
from ..runtime.flood import Budget
from ..runtime.services import Runtime

# The largest pong frame a server sends: 2 header bytes (unmasked, payload under 126 bytes)
# plus a control frame's largest payload, 125 bytes (RFC 6455 §5.5).
PONG_MAX_SIZE = 2 + 125


class PingResponder:
    """The pong owed to one WebSocket client, and its ping budget."""

    __slots__ = ("_budget", "_runtime", "_send", "_backlogged", "_owed", "_scheduled")

    def __init__(self, config: Config, runtime: Runtime, send: Callable[[bytes], None],
                 backlogged: Callable[[], bool]) -> None:
        self._budget = Budget(config.ws_max_pings, config.flood_window)
        self._runtime = runtime
        self._send = send  # writes a pong with this payload (the session checks it still may)
        self._backlogged = backlogged
        self._owed: bytes | None = None  # the latest ping's payload, its pong not yet handed over
        self._scheduled = False

    def ping(self, payload: bytes) -> bool:
        """A ping arrived: owe it a pong. False (and no pong) once the client is over its budget."""
        if not self._budget.spend():
            self._owed = None
            return False
        self._owed = payload  # replaces any pong still owed (§5.5.3)
        self._schedule()
        return True

    def writable(self) -> None:
        """The carrier caught up with the client: a pong held back meanwhile may go."""
        if self._owed is not None:
            self._schedule()

    def drop(self) -> None:
        """No pong is owed any more (our Close is sent, or the WebSocket ended)."""
        self._owed = None

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._runtime.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        payload = self._owed
        if payload is None or self._backlogged():
            return  # writable() brings it back
        self._owed = None
        self._send(payload)
