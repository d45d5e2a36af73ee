"""HTTP/2 without sockets: an HTTP2Protocol driven through a fake transport, its timers fired by
hand, its output parsed frame by frame with hyperframe; and the scheduler on its own.

These prove the send path's order (RFC 9218 urgency, incremental round-robin, sequential turns),
flow control (a stream blocked on a shut window resumes on WINDOW_UPDATE; the connection window)
and the two-step graceful GOAWAY, with nothing left to timing.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import h2.config
import h2.connection
import h2.settings
import pytest
from fakes import FakeTransport, ManualTimers
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from plexicorn import Config
from plexicorn.http2 import h2lib
from plexicorn.http2.connection import HTTP2Protocol
from plexicorn.http2.lifecycle import GOAWAY_PING, GOAWAY_ROUND_TRIP, State
from plexicorn.http2.priority import SEQUENTIAL_TURN
from plexicorn.http2.scheduler import (
    FLUSH_BUDGET,
    STREAM_SEND_BUFFER,
    Scheduler,
    SendQueue,
)
from plexicorn.runtime.context import ServerContext

KIB = 1024


# -- the harness ---------------------------------------------------------------------------------

def parse_frames(data: bytes) -> list[Frame]:
    frames, view = [], memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9:9 + length])
        frames.append(frame)
        view = view[9 + length:]
    assert not view, "a partial frame was written"
    return frames


class Peer:
    """A client (h2's, for its HPACK encoder) wired to one server protocol, no socket between."""

    def __init__(self, app: Any, *, window: int = 65535, **config: Any) -> None:
        self.runtime = ManualTimers()
        self.protocol = HTTP2Protocol(ServerContext(app=app, config=Config(access_log=False, **config),
                                                    runtime=self.runtime))
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.client.initiate_connection()
        self.send()
        self.read = 0

    def send(self, extra: bytes = b"") -> None:
        self.protocol.data_received(self.client.data_to_send() + extra)

    def request(self, path: str, priority: bytes | None = None) -> int:
        stream_id = self.client.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)]
        self.client.send_headers(stream_id, headers + ([("priority", priority.decode())] if priority else []),
                                 end_stream=True)
        self.send()
        return stream_id

    async def settle(self, turns: int = 10) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    def frames(self) -> list[Frame]:
        """The frames written since the last call."""
        new = bytes(self.transport.written[self.read:])
        self.read = len(self.transport.written)
        return parse_frames(new)


def data_order(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.stream_id, len(f.data)) for f in frames if isinstance(f, DataFrame) and f.data]


def body_app(sizes: dict[str, int]) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * sizes[scope["path"]]})
    return app


def window_update(stream_id: int, increment: int) -> bytes:
    return WindowUpdateFrame(stream_id, window_increment=increment).serialize()


def open_windows(size: int = 8 * 1024 * 1024) -> bytes:
    """SETTINGS opening every stream's window, and a WINDOW_UPDATE opening the connection's."""
    settings = SettingsFrame(0, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: size}).serialize()
    return settings + window_update(0, size)


# -- the scheduler, through a connection -----------------------------------------------------------

def test_responses_go_out_by_urgency_once_the_windows_open() -> None:
    async def scenario() -> list[int]:
        peer = Peer(body_app({"/low": 20 * KIB, "/high": 20 * KIB, "/default": 20 * KIB}), window=0)
        low, high, default = peer.request("/low", b"u=5"), peer.request("/high", b"u=1"), peer.request("/default")
        await peer.settle()
        assert data_order(peer.frames()) == []  # every stream blocked on its shut window
        peer.send(open_windows())
        await peer.settle()
        order = [stream_id for stream_id, _ in data_order(peer.frames())]
        assert order == sorted(order, key=[high, default, low].index)
        return order

    assert len(asyncio.run(scenario())) == 6  # 20 KiB each, in frames of at most 16 KiB


def test_incremental_responses_share_the_connection_one_frame_each() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({"/a": 48 * KIB, "/b": 48 * KIB}), window=0)
        a, b = peer.request("/a", b"u=3, i"), peer.request("/b", b"u=3, i")
        await peer.settle()
        peer.send(open_windows())
        await peer.settle()
        assert data_order(peer.frames()) == [(a, 16 * KIB), (b, 16 * KIB)] * 3

    asyncio.run(scenario())


def test_sequential_responses_of_one_urgency_go_one_after_another_in_stream_order() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({"/a": 40 * KIB, "/b": 40 * KIB}), window=0)
        first, second = peer.request("/a"), peer.request("/b")
        await peer.settle()
        peer.send(open_windows())
        await peer.settle()
        order = [stream_id for stream_id, _ in data_order(peer.frames())]
        assert order == [first] * 3 + [second] * 3

    asyncio.run(scenario())


# -- flow control -----------------------------------------------------------------------------------

def test_a_stream_blocked_on_a_shut_window_resumes_on_its_window_update() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({"/": 3000}), window=0)
        stream_id = peer.request("/")
        await peer.settle()
        frames = peer.frames()
        assert [f.stream_id for f in frames if f.type == 0x1] == [stream_id]  # the HEADERS only
        assert data_order(frames) == []
        peer.send(window_update(stream_id, 1000))
        await peer.settle()
        assert data_order(peer.frames()) == [(stream_id, 1000)]  # no more than the window
        peer.send(window_update(stream_id, 5000))
        await peer.settle()
        frames = peer.frames()
        assert data_order(frames) == [(stream_id, 2000)]
        assert "END_STREAM" in [f for f in frames if isinstance(f, DataFrame)][-1].flags

    asyncio.run(scenario())


def test_the_connection_window_holds_every_stream_until_it_reopens() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({"/": 100 * KIB}), window=1024 * KIB)  # stream windows wide open
        stream_id = peer.request("/")
        await peer.settle()
        assert sum(size for _, size in data_order(peer.frames())) == 65535  # the connection's window
        peer.send(window_update(stream_id, 1))  # a stream's window: still held by the connection's
        await peer.settle()
        assert data_order(peer.frames()) == []
        peer.send(window_update(0, 100 * KIB))
        await peer.settle()
        assert sum(size for _, size in data_order(peer.frames())) == 100 * KIB - 65535

    asyncio.run(scenario())


# -- the two-step GOAWAY ------------------------------------------------------------------------------

def goaways(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]


def test_shutdown_sends_goaway_all_streams_and_a_ping_then_the_last_stream_after_the_ack() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def app(scope: dict, receive: Any, send: Any) -> None:
            await gate.wait()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body"})

        peer = Peer(app)
        first = peer.request("/")
        await peer.settle()
        peer.frames()
        peer.protocol.shutdown()
        await peer.settle()
        frames = peer.frames()
        assert goaways(frames) == [(2**31 - 1, 0)]
        assert [f.opaque_data for f in frames if isinstance(f, PingFrame)] == [GOAWAY_PING]
        assert peer.protocol.lifecycle.state is State.DRAINING
        second = peer.request("/")  # on its way before the client saw the GOAWAY: still served
        peer.send(PingFrame(0, opaque_data=GOAWAY_PING, flags=["ACK"]).serialize())
        await peer.settle()
        assert goaways(peer.frames()) == [(second, 0)]
        assert peer.protocol.lifecycle.state is State.CLOSING
        assert not peer.transport.closed  # two streams still running
        gate.set()
        await peer.settle()
        frames = peer.frames()
        assert {f.stream_id for f in frames if "END_STREAM" in f.flags} == {first, second}
        assert peer.transport.closed  # closed once the last stream is done

    asyncio.run(scenario())


def test_without_a_ping_answer_the_final_goaway_goes_when_the_round_trip_timer_fires() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({"/": 10}))
        stream_id = peer.request("/")
        await peer.settle()
        peer.protocol.shutdown()
        await peer.settle()
        assert goaways(peer.frames()) == [(2**31 - 1, 0)]
        peer.runtime.fire(GOAWAY_ROUND_TRIP)
        await peer.settle()
        assert goaways(peer.frames()) == [(stream_id, 0)]
        assert peer.transport.closed  # its one stream had finished

    asyncio.run(scenario())


def test_an_idle_connection_starts_the_graceful_goaway_when_its_keep_alive_timer_fires() -> None:
    async def scenario() -> None:
        peer = Peer(body_app({}), keep_alive_timeout=7.0)
        await peer.settle()
        peer.frames()
        peer.runtime.fire(7.0)
        await peer.settle()
        assert goaways(peer.frames()) == [(2**31 - 1, 0)]

    asyncio.run(scenario())


# -- the scheduler alone ------------------------------------------------------------------------------

class FakeFramer:
    """Records what the scheduler frames; windows are per stream, and 0 means shut."""

    max_outbound_frame_size = 16 * KIB

    def __init__(self, window: int = 1 << 30) -> None:
        self.window = window
        self.windows: dict[int, int] = {}
        self.sent: list[tuple[int, int, bool]] = []  # (stream id, DATA bytes or -1 for HEADERS, end)

    def local_flow_control_window(self, stream_id: int) -> int:
        return self.windows.get(stream_id, self.window)

    def send_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
        self.windows[stream_id] = self.local_flow_control_window(stream_id) - len(data)
        self.sent.append((stream_id, len(data), end_stream))

    def send_data_frames(self, stream_id: int, payloads: list[Any], end_stream: bool = False) -> None:
        for index, payload in enumerate(payloads):
            self.send_data(stream_id, payload, end_stream and index == len(payloads) - 1)

    def send_headers(self, stream_id: int, headers: Any, end_stream: bool = False) -> None:
        self.sent.append((stream_id, -1, end_stream))

    def end_stream(self, stream_id: int) -> None:
        self.sent.append((stream_id, 0, True))


class Harness:
    def __init__(self, framer: FakeFramer | None = None) -> None:
        self.framer = framer or FakeFramer()
        self.completed: list[int] = []
        self.flushes = 0
        self.writable: list[int] = []
        self.scheduler = Scheduler(self.framer, lambda queue: self.completed.append(queue.stream_id), self._flush)

    def _flush(self) -> None:
        self.flushes += 1

    def open(self, stream_id: int, **priority: Any) -> SendQueue:
        return self.scheduler.open(stream_id, lambda: self.writable.append(stream_id), **priority)

    def order(self) -> list[int]:
        return [stream_id for stream_id, size, _ in self.framer.sent if size > 0]


def test_scheduler_serves_urgencies_strictly_in_order() -> None:
    h = Harness()
    queues = [h.open(1, urgency=6), h.open(3, urgency=0), h.open(5, urgency=3)]
    for queue in queues:
        h.scheduler.enqueue(queue, b"x" * 20 * KIB, end=True)
    h.scheduler.frame()
    assert h.order() == [3, 3, 5, 5, 1, 1]
    assert h.completed == [3, 5, 1]


def test_scheduler_round_robins_incremental_streams_after_the_sequential_ones() -> None:
    h = Harness()
    a, b, c = h.open(1, incremental=True), h.open(3, incremental=True), h.open(5)
    for queue in (a, b, c):
        h.scheduler.enqueue(queue, b"x" * 32 * KIB, end=False)
    h.scheduler.frame()
    assert h.order() == [5, 5, 1, 3, 1, 3]


def test_scheduler_turns_let_a_small_response_past_a_huge_one() -> None:
    h = Harness()
    huge, small = h.open(1), h.open(3)
    h.scheduler.enqueue(huge, b"x" * 3 * SEQUENTIAL_TURN, end=True)
    h.scheduler.enqueue(small, b"y" * 100, end=True)
    while not h.completed or h.completed[-1] != 1:
        h.scheduler.frame()
    sent = [(stream_id, size) for stream_id, size, _ in h.framer.sent if size > 0]
    before_small = sum(size for stream_id, size in sent[:[s for s, _ in sent].index(3)])
    assert before_small == SEQUENTIAL_TURN  # one turn of the huge one, then the small one
    assert h.completed == [3, 1]


def test_a_sequential_turn_ends_on_a_whole_frame_so_a_long_download_sends_no_tiny_frames() -> None:
    # A window of 65,535 bytes (the default) does not divide into 16 KiB frames, so the bytes sent
    # per turn are no multiple of the frame size either; a turn cut at its exact boundary would
    # send a frame of a few bytes, which a client answering every DATA frame with WINDOW_UPDATEs
    # pays for as much as for a full frame (and its flood budget with it).
    h = Harness(FakeFramer(window=65535))
    queue = h.open(1)
    h.scheduler.enqueue(queue, b"x" * 3 * SEQUENTIAL_TURN, end=True)
    credited = 0
    for _ in range(1000):  # 48 windows' worth are needed
        if h.completed:
            break
        h.scheduler.frame()
        for _, size, _ in h.framer.sent[credited:]:  # the peer returns each frame's bytes
            h.framer.windows[1] += size
        credited = len(h.framer.sent)
        h.scheduler.window_opened(queue)
    sizes = [size for _, size, _ in h.framer.sent]
    assert h.completed and sum(sizes) == 3 * SEQUENTIAL_TURN
    assert min(sizes[:-1]) >= 16 * KIB - 1, sorted(set(sizes))


def test_the_framing_budget_ends_on_a_whole_frame_too() -> None:
    # Stream 1's window (65,535) takes part of a call's budget; stream 3 gets the rest, which is
    # no multiple of the frame size: it sends whole frames, the last one past the budget.
    framer = FakeFramer()
    framer.windows[1] = 65535
    h = Harness(framer)
    first, second = h.open(1), h.open(3)
    h.scheduler.enqueue(first, b"x" * 4 * SEQUENTIAL_TURN, end=True)
    h.scheduler.enqueue(second, b"y" * 4 * SEQUENTIAL_TURN, end=True)
    h.scheduler.frame()
    sizes = [size for stream_id, size, _ in h.framer.sent if stream_id == 3]
    assert sizes and set(sizes) == {16 * KIB}, sizes
    assert sum(size for _, size, _ in h.framer.sent) < FLUSH_BUDGET + 16 * KIB


def test_scheduler_frames_at_most_its_budget_per_call_and_asks_for_another() -> None:
    h = Harness()
    queue = h.open(1)
    h.scheduler.enqueue(queue, b"x" * 2 * FLUSH_BUDGET, end=True)
    flushes = h.flushes
    h.scheduler.frame()
    assert sum(size for _, size, _ in h.framer.sent) == FLUSH_BUDGET
    assert h.flushes == flushes + 1  # the rest goes on the next turn


def test_scheduler_blocks_a_stream_on_a_shut_window_until_it_opens() -> None:
    h = Harness(FakeFramer(window=0))
    queue = h.open(1)
    h.scheduler.enqueue(queue, b"x" * 100, end=True)
    h.scheduler.frame()
    assert h.framer.sent == [] and queue.blocked
    h.framer.windows[1] = 60
    h.scheduler.window_opened(queue)
    h.scheduler.frame()
    assert h.framer.sent == [(1, 60, False)] and queue.blocked  # the window spent: blocked again
    h.framer.windows[1] = 1000
    h.scheduler.windows_opened()  # the connection's window, or SETTINGS
    h.scheduler.frame()
    assert h.framer.sent[-1] == (1, 40, True) and h.completed == [1]


def test_scheduler_sends_trailers_after_the_body_and_wakes_a_backlogged_sender() -> None:
    h = Harness()
    queue = h.open(1)
    h.scheduler.enqueue(queue, b"x" * (STREAM_SEND_BUFFER + 1), end=False)
    assert h.scheduler.backlogged(queue)
    h.scheduler.enqueue(queue, b"", end=True, trailers=[(b"grpc-status", b"0")])
    h.scheduler.frame()
    assert h.framer.sent[-2:] == [(1, 1, False), (1, -1, True)]  # DATA without END_STREAM, then HEADERS
    assert not h.scheduler.backlogged(queue) and 1 in h.writable


def test_scheduler_drops_a_reset_stream_and_ignores_what_it_queues_later() -> None:
    h = Harness()
    queue = h.open(1)
    h.scheduler.enqueue(queue, b"x" * 100, end=False)
    h.scheduler.drop(queue)
    h.scheduler.enqueue(queue, b"y" * 100, end=True)
    h.scheduler.frame()
    assert h.framer.sent == [] and h.completed == [] and h.writable == [1]


def test_scheduler_reprioritizes_a_queued_stream() -> None:
    h = Harness()
    a, b = h.open(1), h.open(3)
    for queue in (a, b):
        h.scheduler.enqueue(queue, b"x" * 10, end=True)
    h.scheduler.reprioritize(b, b"u=0")
    h.scheduler.frame()
    assert h.completed == [3, 1]


# -- the h2 version check ------------------------------------------------------------------------------

def test_the_installed_h2_has_every_internal_plexicorn_adapts() -> None:
    h2lib.require_h2_internals(h2)  # also ran at import


def test_an_h2_lacking_an_internal_is_refused_in_one_line_naming_version_and_what_is_missing() -> None:
    stripped = type("H2Connection", (), {name: value for name, value in vars(h2.connection.H2Connection).items()
                                         if name != "_prepare_for_sending"})
    fake = types.SimpleNamespace(
        __version__="5.0.0", connection=types.SimpleNamespace(H2Connection=stripped),
        frame_buffer=h2.frame_buffer, stream=h2.stream)
    with pytest.raises(ImportError) as failure:
        h2lib.require_h2_internals(fake)
    message = str(failure.value)
    assert "\n" not in message
    assert "H2Connection._prepare_for_sending" in message and "h2 5.0.0" in message


# -- SendQueue.take_frames ----------------------------------------------------------------------

def queue_of(chunk_sizes: list[int]) -> SendQueue:
    queue = SendQueue(1, lambda: None, 3, False)
    byte = 0
    for size in chunk_sizes:
        queue.chunks.append(memoryview(bytes((byte + i) % 251 for i in range(size))))
        queue.size += size
        byte += size
    return queue


@pytest.mark.parametrize("chunk_sizes", [
    [64 * KIB] * 4,  # the benchmark's: whole frames cut from each chunk
    [100, 70_000, 3, 16 * KIB, 16 * KIB + 1],  # frames spanning chunks, a chunk of one frame
    [5] * 20,  # every frame joined from small chunks
    [40_000],
])
@pytest.mark.parametrize("allowed", [1, 16 * KIB - 1, 16 * KIB, 65_535, 100_000, 10**7])
@pytest.mark.parametrize("max_frame", [16 * KIB, 16 * KIB + 7])
def test_take_frames_gives_the_payloads_take_would(chunk_sizes: list[int], allowed: int, max_frame: int) -> None:
    framed, by_take = queue_of(chunk_sizes), queue_of(chunk_sizes)
    payloads, total = framed.take_frames(allowed, max_frame)
    expected = []
    while sum(map(len, expected)) < allowed and by_take.size:
        expected.append(by_take.take(min(allowed - sum(map(len, expected)), max_frame)))
    assert [bytes(p) for p in payloads] == [bytes(p) for p in expected]
    assert total == sum(map(len, expected)) == min(allowed, sum(chunk_sizes))
    assert framed.size == by_take.size
    assert [bytes(c) for c in framed.chunks] == [bytes(c) for c in by_take.chunks]
