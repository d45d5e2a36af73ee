"""RFC 9218 extensible priorities for HTTP/2 responses.

`parse_priority` reads the Priority field (request header, response header or PRIORITY_UPDATE
frame). `PriorityQueue` orders the streams that have DATA to send: urgency 0 (highest) to 7
strictly; within an urgency, non-incremental streams one after another (lowest stream id
first) and then incremental streams round-robin, one frame each. A non-incremental stream
sends in turns of SEQUENTIAL_TURN bytes: once its turn is spent it waits behind the streams
that have had fewer turns, so that one huge response cannot starve small ones (fairness),
while responses smaller than a turn still go strictly one after another. A stream whose priority
changes while queued is filed again at once; its old entry is recognised as stale and dropped.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Protocol

DEFAULT_URGENCY = 3
DEFAULT_INCREMENTAL = False
URGENCIES = 8
PRIORITY_UPDATE_FRAME = 0x10
SEQUENTIAL_TURN = 1024 * 1024
SETTINGS_NO_RFC7540_PRIORITIES = 0x9


class Prioritized(Protocol):
    stream_id: int
    urgency: int
    incremental: bool
    priority_epoch: int  # bumped on every re-prioritization: older queue entries are stale
    turns: int  # sequential turns used
    turn_sent: int  # bytes sent in the current turn


def parse_priority(value: bytes, urgency: int = DEFAULT_URGENCY,
                   incremental: bool = DEFAULT_INCREMENTAL) -> tuple[int, bool]:
    """Urgency and incremental flag from a Priority field; unknown or invalid members are ignored.

    The field is a Structured Fields dictionary (RFC 8941): `u=5, i`, `i=?0`, `u=1`.
    """
    for member in value.split(b","):
        key, sep, item = member.strip().partition(b"=")
        item = item.split(b";", 1)[0].strip()  # parameters are not used
        if key == b"u" and sep and item.isdigit() and len(item) == 1 and int(item) < URGENCIES:
            urgency = int(item)
        elif key == b"i":
            if not sep or item == b"?1":
                incremental = True
            elif item == b"?0":
                incremental = False
    return urgency, incremental


class _Level:
    __slots__ = ("sequential", "round_robin")

    def __init__(self) -> None:
        self.sequential: list[tuple[int, int, int, Any]] = []  # heap of (turns, stream id, epoch, stream)
        self.round_robin: deque[tuple[int, Any]] = deque()  # (epoch, stream)


class PriorityQueue:
    """The streams ready to send, in RFC 9218 order."""

    def __init__(self) -> None:
        self._levels = [_Level() for _ in range(URGENCIES)]
        self._size = 0  # entries
        self._live = 0  # entries that are not stale

    def __len__(self) -> int:
        return self._size  # entries, stale ones included: pop() may still answer None

    def push(self, stream: Prioritized) -> None:
        self._live += 1
        self._file(stream)

    def _file(self, stream: Prioritized) -> None:
        level = self._levels[stream.urgency]
        if stream.incremental:
            level.round_robin.append((stream.priority_epoch, stream))
        else:
            heapq.heappush(level.sequential, (stream.turns, stream.stream_id, stream.priority_epoch, stream))
        self._size += 1

    def reprioritize(self, stream: Prioritized, urgency: int, incremental: bool, queued: bool) -> None:
        """Change a stream's priority; if it is queued, file it again where it now belongs."""
        if (urgency, incremental) == (stream.urgency, stream.incremental):
            return
        stream.urgency, stream.incremental = urgency, incremental
        stream.priority_epoch += 1
        if queued:
            self._file(stream)  # the old entry is stale from now on
            if self._size - self._live > self._live + 64:
                self._compact()  # a flood of updates must not grow the queue without bound

    def _compact(self) -> None:
        live: list[Prioritized] = []
        for level in self._levels:
            live += [stream for _, _, epoch, stream in level.sequential if epoch == stream.priority_epoch]
            live += [stream for epoch, stream in level.round_robin if epoch == stream.priority_epoch]
        self._levels = [_Level() for _ in range(URGENCIES)]
        self._size = 0
        for stream in live:
            self._file(stream)

    def pop(self) -> Any:
        """The stream to send the next frame of, or None."""
        while self._size:
            for level in self._levels:
                if level.sequential:
                    _, _, epoch, stream = heapq.heappop(level.sequential)
                    break
                if level.round_robin:
                    epoch, stream = level.round_robin.popleft()
                    break
            self._size -= 1
            if epoch == stream.priority_epoch:
                self._live -= 1
                return stream
        return None

    @staticmethod
    def allowance(stream: Prioritized, frame_size: int) -> int:
        """DATA bytes `stream` may send, once popped, before the next pop: one frame of an
        incremental stream, the rest of a sequential stream's turn (the scheduler rounds it up
        to whole frames)."""
        return frame_size if stream.incremental else SEQUENTIAL_TURN - stream.turn_sent

    @staticmethod
    def sent(stream: Prioritized, size: int) -> None:
        """Account `size` bytes sent by a stream (call before pushing it back)."""
        if not stream.incremental:
            stream.turn_sent += size
            if stream.turn_sent >= SEQUENTIAL_TURN:
                stream.turn_sent = 0
                stream.turns += 1

    def clear(self) -> None:
        self._levels = [_Level() for _ in range(URGENCIES)]
        self._size = self._live = 0
