"""The send side of one HTTP/2 connection: each stream's queue of response bytes, and the
framing loop that turns queued bytes into DATA frames in RFC 9218 order.

Stream handlers only queue bytes (`enqueue`); once per loop turn the connection calls
`frame()`, which frames DATA for the ready streams, highest urgency first, as far as their
flow-control windows and FLUSH_BUDGET allow. A stream whose window is shut is *blocked* and
leaves the ready queue until a WINDOW_UPDATE or SETTINGS re-opens it (`window_opened`,
`windows_opened`). This module owns every piece of that bookkeeping; the connection only hands
it an h2 connection to frame with (`Framer`) and learns from `on_complete` when a response has
been sent whole.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Protocol

from .priority import (
    DEFAULT_INCREMENTAL,
    DEFAULT_URGENCY,
    PriorityQueue,
    parse_priority,
)

# DATA bytes framed per loop turn at most, so one flush never builds an unbounded write.
FLUSH_BUDGET = 256 * 1024
# Response bytes a stream may have queued before its sender is made to wait.
STREAM_SEND_BUFFER = 64 * 1024

Headers = list[tuple[bytes, bytes]]


class Framer(Protocol):
    """What the scheduler needs of h2's `H2Connection` (which it is, in production)."""

    max_outbound_frame_size: int

    def local_flow_control_window(self, stream_id: int) -> int: ...

    def send_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None: ...

    def send_data_frames(self, stream_id: int, payloads: list[Any], end_stream: bool = False) -> None: ...

    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False) -> None: ...

    def end_stream(self, stream_id: int) -> None: ...


class SendQueue:
    """One stream's response bytes waiting to be framed, and its place in the schedule."""

    __slots__ = ("stream_id", "on_writable", "chunks", "size", "end", "trailers", "queued", "blocked",
                 "closed", "urgency", "incremental", "priority_epoch", "turns", "turn_sent")

    def __init__(self, stream_id: int, on_writable: Callable[[], None], urgency: int, incremental: bool) -> None:
        self.stream_id = stream_id
        # Called once the queue is back within STREAM_SEND_BUFFER (or dropped): wakes the sender.
        self.on_writable = on_writable
        self.chunks: deque[memoryview] = deque()
        self.size = 0
        self.end = False  # the response ends once the chunks are out
        self.trailers: Headers | None = None  # sent as the final HEADERS frame, after the chunks
        self.queued = False  # in the ready queue
        self.blocked = False  # waiting for the peer to open a window
        self.closed = False  # completed or dropped: nothing more is framed
        # RFC 9218 (see priority.PriorityQueue): the stream's priority and its sequential turns.
        self.urgency = urgency
        self.incremental = incremental
        self.priority_epoch = 0
        self.turns = 0
        self.turn_sent = 0

    def take(self, size: int) -> memoryview | bytes:
        """Remove and return up to `size` queued bytes (at least one chunk's worth)."""
        chunks = self.chunks
        first = chunks[0]
        if len(first) > size:
            chunks[0] = first[size:]
            self.size -= size
            return first[:size]
        chunks.popleft()
        if len(first) == size or not chunks:
            self.size -= len(first)
            return first
        parts = [first]
        taken = len(first)
        while chunks and taken < size:
            part = chunks.popleft()
            if taken + len(part) > size:
                chunks.appendleft(part[size - taken:])
                part = part[:size - taken]
            parts.append(part)
            taken += len(part)
        self.size -= taken
        return b"".join(parts)

    def take_frames(self, allowed: int, max_frame: int) -> tuple[list[memoryview | bytes], int]:
        """Remove up to `allowed` queued bytes as payloads of at most `max_frame` bytes, and
        their total: the payloads successive `take(min(allowed - total, max_frame))` calls give,
        whole frames cut from a chunk in one go."""
        payloads: list[memoryview | bytes] = []
        append = payloads.append
        chunks = self.chunks
        total = 0
        while total < allowed and chunks:
            first = chunks[0]
            size = len(first)
            whole = min(size, allowed - total) // max_frame * max_frame
            if not whole:
                # Less than a frame's worth in this chunk or allowed: take() joins chunks.
                payload = self.take(min(allowed - total, max_frame))
                append(payload)
                total += len(payload)
                continue
            for start in range(0, whole, max_frame):
                append(first[start:start + max_frame])
            if whole == size:
                chunks.popleft()
            else:
                chunks[0] = first[whole:]
            self.size -= whole
            total += whole
        return payloads, total


class Scheduler:
    __slots__ = ("_framer", "_on_complete", "_request_flush", "_ready", "_blocked")

    def __init__(self, framer: Framer, on_complete: Callable[[SendQueue], None],
                 request_flush: Callable[[], None]) -> None:
        self._framer = framer
        # A response went out whole (END_STREAM sent): the connection frees the stream.
        self._on_complete = on_complete
        # Something is ready to frame: the connection arranges a `frame()` call on its next write.
        self._request_flush = request_flush
        self._ready = PriorityQueue()
        self._blocked: set[SendQueue] = set()

    def __len__(self) -> int:
        """Entries in the ready queue (stale ones included; bounded by the queue's compaction)."""
        return len(self._ready)

    def open(self, stream_id: int, on_writable: Callable[[], None], urgency: int = DEFAULT_URGENCY,
             incremental: bool = DEFAULT_INCREMENTAL) -> SendQueue:
        return SendQueue(stream_id, on_writable, urgency, incremental)

    def enqueue(self, queue: SendQueue, data: bytes, end: bool, trailers: Headers | None = None) -> None:
        """Queue response bytes; `end`: the response ends after them (with `trailers`, if any)."""
        if queue.closed:
            return
        if data:
            queue.chunks.append(memoryview(data))
            queue.size += len(data)
        if end:
            queue.end = True
            if trailers:
                queue.trailers = trailers
        self._make_ready(queue)

    @staticmethod
    def backlogged(queue: SendQueue) -> bool:
        return queue.size > STREAM_SEND_BUFFER

    def reprioritize(self, queue: SendQueue, field: bytes) -> None:
        """Apply an RFC 9218 Priority field (response header or PRIORITY_UPDATE frame)."""
        urgency, incremental = parse_priority(field, queue.urgency, queue.incremental)
        self._ready.reprioritize(queue, urgency, incremental, queued=queue.queued)

    def window_opened(self, queue: SendQueue) -> None:
        """The peer opened this stream's window (WINDOW_UPDATE)."""
        if queue.blocked:
            self._blocked.discard(queue)
            queue.blocked = False
            self._make_ready(queue)

    def windows_opened(self) -> None:
        """The peer opened the connection's window, or changed every stream's (SETTINGS)."""
        # In stream order, so that streams of one urgency resume as they were opened (a set's
        # order would depend on object addresses).
        for queue in sorted(self._blocked, key=_stream_order):
            queue.blocked = False
            self._make_ready(queue)
        self._blocked.clear()

    def drop(self, queue: SendQueue) -> None:
        """The stream was reset: nothing more of its response is sent; its sender is woken."""
        queue.closed = True
        queue.chunks.clear()
        queue.size = 0
        self._blocked.discard(queue)
        queue.on_writable()

    def send_now(self, queue: SendQueue) -> None:
        """Frame what is queued at once, outside the schedule, if the window takes it in one
        frame (a WebSocket's last Close, ahead of its stream's reset)."""
        size = queue.size
        framer = self._framer
        if size and not queue.closed and size <= min(framer.local_flow_control_window(queue.stream_id),
                                                     framer.max_outbound_frame_size):
            framer.send_data(queue.stream_id, queue.take(size))

    def clear(self, queues: Iterable[SendQueue]) -> None:
        """The connection is ending: forget these queues, every one (their senders are told of
        the disconnection by the connection, not woken here)."""
        for queue in queues:
            queue.closed = True
            queue.chunks.clear()
            queue.size = 0
        self._ready.clear()
        self._blocked.clear()

    def _make_ready(self, queue: SendQueue) -> None:
        if not queue.queued and not queue.blocked:
            queue.queued = True
            self._ready.push(queue)
        self._request_flush()

    def frame(self, budget: int = FLUSH_BUDGET) -> None:
        """Frame up to `budget` DATA bytes from the ready streams, in priority order."""
        if not self._ready:
            return
        framer = self._framer
        ready = self._ready
        max_frame = framer.max_outbound_frame_size
        while budget > 0:
            queue: SendQueue | None = ready.pop()
            if queue is None:
                break
            queue.queued = False
            if queue.closed:
                continue  # reset or ended meanwhile
            stream_id = queue.stream_id
            end = False
            if queue.size:
                window = framer.local_flow_control_window(stream_id)
                if window <= 0:
                    queue.blocked = True
                    self._blocked.add(queue)
                    continue
                # What the stream may send before another stream's turn: one frame if it is
                # incremental, the rest of its turn if sequential (it stays first until then), so
                # these frames are the ones a pop per frame would have given, for one pop.
                # Rounded up to whole frames (a turn or the budget may run over by less than one):
                # cut at the exact byte, a turn or a call's framing would end in a frame of a few
                # bytes (windows such as 65,535 do not divide into frames), which costs a peer that
                # credits each frame as much as a full one, and whose tiny credit breeds more.
                share = min(budget, ready.allowance(queue, max_frame))
                allowed = min(window, -(-share // max_frame) * max_frame)
                if allowed <= max_frame or queue.size <= max_frame:
                    chunk = queue.take(min(allowed, max_frame))
                    sent = len(chunk)
                    end = queue.end and not queue.size
                    framer.send_data(stream_id, chunk, end_stream=end and queue.trailers is None)
                else:
                    payloads, sent = queue.take_frames(allowed, max_frame)
                    end = queue.end and not queue.size
                    framer.send_data_frames(stream_id, payloads, end_stream=end and queue.trailers is None)
                budget -= sent
                ready.sent(queue, sent)
                if end and queue.trailers is not None:
                    framer.send_headers(stream_id, queue.trailers, end_stream=True)
            elif queue.end:
                end = True
                if queue.trailers is not None:
                    framer.send_headers(stream_id, queue.trailers, end_stream=True)
                else:
                    framer.end_stream(stream_id)
            if end:
                queue.closed = True
                self._on_complete(queue)
            elif queue.size:
                queue.queued = True
                ready.push(queue)  # sequential: first again; incremental: back of its round
            if queue.size <= STREAM_SEND_BUFFER:
                queue.on_writable()
        if ready:
            self._request_flush()  # budget spent: go on next loop turn


def _stream_order(queue: SendQueue) -> int:
    return queue.stream_id
