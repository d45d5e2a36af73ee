"""The flood defences of one HTTP/2 connection: budgets for wasted work, and a bound per turn.

A peer can make a server work without asking for (or waiting for) a response: open and reset
streams (rapid reset), make the server reset them (MadeYouReset: malformed requests, flow-control
errors, DATA after END_STREAM, streams over the limit), or send frames that only cost parsing
and answers (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA, CONTINUATION, unknown types).
`FloodGuard` counts each kind against a `Budget`; completed responses and DATA frames sent
earn tokens back, so a busy, well-behaved connection never runs dry. The first budget
overdrawn is the connection's `exceeded` reason, which its protocol answers with
GOAWAY(ENHANCE_YOUR_CALM).

The guard also ends a *turn*: at most `frames_per_turn` frames, CONTROL_BYTES_PER_TURN bytes of
frames other than DATA (header blocks, SETTINGS) and about FIELDS_PER_TURN decoded header fields
are parsed per call, so that one connection's 64 KiB read of tiny frames (or of HPACK blocks of
one-byte references, or of SETTINGS of thousands of entries) cannot keep the event loop from
every other connection.
"""

from __future__ import annotations

import time
from typing import Callable

from ..config import Config
from ..runtime.flood import Budget

# Bytes of frames other than DATA parsed per turn: HPACK decoding costs per field, and a block of
# one-byte references decodes a field per byte (~1.5 µs each); SETTINGS cost per 6-byte entry.
# This bounds a turn to ~12 ms of such parsing. DATA costs little per byte.
CONTROL_BYTES_PER_TURN = 8 * 1024
# Decoded header fields per turn: a block's fields are known only once it is decoded, so the
# block that crosses this ends the turn (100 ordinary requests of ~15 fields stay within it).
FIELDS_PER_TURN = 2048
# DATA frames smaller than this that do not end their stream deliver little for their cost. An
# empty one costs a whole control token; a tiny one TINY_DATA_COST, so that gRPC streams and
# WebSockets of small messages (~1,000 a second) never run the budget dry.
TINY_DATA = 16
TINY_DATA_COST = 0.1
# Control tokens earned per DATA frame sent: the peer may answer each with two WINDOW_UPDATEs
# (stream and connection) or a BDP PING. Earned by size (full at 8 KiB), so that a peer
# announcing a 1-byte window cannot buy a PING and a WINDOW_UPDATE with every byte it gets.
EARNED_PER_DATA_FRAME = 2
EARNING_FRAME_SIZE = 8 * 1024

_DATA, _RST_STREAM, _CONTINUATION = 0x0, 0x3, 0x9
_END_STREAM = 0x1
# Control-budget cost by frame type (0x0-0x9); every other type (PRIORITY_UPDATE, unknown) costs 1.
# DATA and CONTINUATION are decided by their length; HEADERS carry requests; RST_STREAM is
# charged to the reset budget.
_CONTROL_COST = (0, 0, 1, 0, 1, 1, 1, 1, 1, 0)

RESETS = "stream resets"
CONTROL = "control frames"


class FloodGuard:
    __slots__ = ("resets", "control", "frames_per_turn", "_frames_left", "_control_bytes_left",
                 "_fields_left", "exceeded", "backlog")

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.resets = Budget(config.h2_max_resets, config.flood_window, clock)
        self.control = Budget(config.h2_max_control_frames, config.flood_window, clock)
        self.frames_per_turn = config.h2_frames_per_turn
        self._frames_left = self.frames_per_turn
        self._control_bytes_left = CONTROL_BYTES_PER_TURN
        self._fields_left = FIELDS_PER_TURN
        self.exceeded: str | None = None  # the first budget overdrawn
        self.backlog = False  # the last turn ended with whole frames left unparsed

    def start_turn(self) -> None:
        self._frames_left = self.frames_per_turn
        self._control_bytes_left = CONTROL_BYTES_PER_TURN
        self._fields_left = FIELDS_PER_TURN
        self.backlog = False

    def decoded_fields(self, count: int) -> None:
        """A header block decoded to `count` fields; past this turn's share, the turn ends."""
        self._fields_left -= count
        if self._fields_left <= 0:
            self._frames_left = 0

    def admit(self, frame_type: int, flags: int, length: int) -> bool:
        """Account for one whole frame about to be parsed (`length`: a DATA frame's payload
        without padding); False: leave it for a later turn (this turn's share is used) or for
        nobody (a budget is overdrawn)."""
        if self.exceeded is not None:
            return False
        if self._frames_left <= 0:
            self.backlog = True
            return False
        if frame_type != _DATA:
            # A turn's first frame always goes through, whatever its size.
            if length > self._control_bytes_left and self._frames_left < self.frames_per_turn:
                self.backlog = True
                return False
            self._control_bytes_left -= length
        self._frames_left -= 1
        if frame_type == _DATA:
            cost = 0 if length >= TINY_DATA or flags & _END_STREAM else 1 if not length else TINY_DATA_COST
        elif frame_type == _CONTINUATION:
            cost = 0 if length else 1
        elif frame_type == _RST_STREAM:
            self.reset()
            return self.exceeded is None
        else:
            cost = _CONTROL_COST[frame_type] if frame_type < 10 else 1
        if cost and not self.control.spend(cost):
            self.exceeded = CONTROL
            return False
        return True

    def reset(self, cost: float = 1.0) -> None:
        """A stream reset before its response completed, or a request refused for the peer's fault."""
        if not self.resets.spend(cost) and self.exceeded is None:
            self.exceeded = RESETS

    def response_completed(self) -> None:
        self.resets.earn(1)
        self.control.earn(1)

    def data_frame_sent(self, size: int) -> None:
        self.control.earn(EARNED_PER_DATA_FRAME * min(size, EARNING_FRAME_SIZE) / EARNING_FRAME_SIZE)

    def data_frames_sent(self, sizes: list[int]) -> None:
        """Several DATA frames: what a `data_frame_sent` per frame would earn, in one call."""
        earning = EARNING_FRAME_SIZE
        self.control.earn(EARNED_PER_DATA_FRAME * sum([size if size < earning else earning for size in sizes])
                          / earning)

    def limit(self, reason: str) -> str:
        """The budget behind `reason`, for the log."""
        budget = self.resets if reason == RESETS else self.control
        return f"{budget.capacity:g} per {budget.capacity / budget.rate:g} s"
