"""HTTP/2 floods: each attack class is answered with GOAWAY(ENHANCE_YOUR_CALM) once it exceeds its
budget, not a frame earlier, and well-behaved clients on other connections are served meanwhile.

Frames are written by hand (interop.h2raw) so that the client sends exactly what an attacker
would. The budgets are made small and `--flood-window` long, so that refilling adds a negligible
fraction of a token during a test: the frame that ends each connection is known exactly.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import pytest
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame

from interop import h2raw
from interop.h2raw import ErrorCode, Setting

from plexicorn import Config
from plexicorn.runtime.context import ServerContext
from plexicorn.http2.connection import HTTP2Protocol

from test_robustness import Gate

WINDOW = 10_000.0  # seconds: a budget of 20 refills 0.002 tokens per second
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def warnings(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.WARNING)
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                    and "ENHANCE_YOUR_CALM" in r.getMessage()]


def connection(running) -> h2raw.Connection:
    conn = h2raw.Connection(running.port, None, timeout=10.0)
    conn.handshake()  # the client's SETTINGS and its SETTINGS ACK: 2 control frames spent
    return conn


def alive(conn: h2raw.Connection) -> bool:
    """Two PINGs (two control frames), the second sent once the first is answered: True once it
    is, by when every frame the server wrote about what was sent before has been read."""
    for _ in range(2):
        data = conn.next_ping_data()
        conn.send(h2raw.ping(data))
        while True:
            frame = conn.read_frame()
            if frame is None or isinstance(frame, GoAwayFrame):
                return False
            if isinstance(frame, PingFrame) and "ACK" in frame.flags and frame.opaque_data == data:
                break
    return True


def goaway(conn: h2raw.Connection) -> GoAwayFrame:
    """Read until the server's GOAWAY; the connection must then close."""
    while True:
        frame = conn.read_frame()
        assert frame is not None, "closed without GOAWAY"
        if isinstance(frame, GoAwayFrame):
            while conn.read_frame() is not None:
                pass
            return frame


def h2_only_url(running) -> str:
    return f"http://127.0.0.1:{running.port}/"


def assert_calmed(running, conn, warnings, reason: str, *, last_stream_id: int | None = None,
                  frame: GoAwayFrame | None = None) -> None:
    """The connection ends with GOAWAY(ENHANCE_YOUR_CALM) (`frame`, when already read), one
    warning naming the client and the reason, one count; other clients are still served."""
    if frame is None:
        frame = goaway(conn)
    else:
        while conn.read_frame() is not None:
            pass
    assert frame.error_code == ErrorCode.ENHANCE_YOUR_CALM
    if last_stream_id is not None:
        assert frame.last_stream_id == last_stream_id
    assert running.call(lambda: dict(running.server.counters.flood_closes)) == {reason: 1}
    logged = warnings()
    assert len(logged) == 1 and reason in logged[0] and "127.0.0.1" in logged[0]
    served_after(running)


def served_after(running) -> None:
    # Another client is served on its own connection (prior-knowledge h2c with httpx).
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(h2_only_url(running)).status_code == 200


# -- resets --------------------------------------------------------------------------------------

def test_rapid_reset_is_ended_at_the_first_reset_over_budget(serve, warnings):
    running = serve(hello, flood_window=WINDOW, h2_max_resets=20)
    conn = connection(running)
    pairs = [h2raw.headers(sid, conn.header_block()) + h2raw.rst_stream(sid, ErrorCode.CANCEL)
             for sid in range(1, 41, 2)]
    conn.send(*pairs)  # 20 streams opened and reset in one write: nothing completes, nothing earns
    assert alive(conn)
    conn.send(h2raw.headers(41, conn.header_block()) + h2raw.rst_stream(41, ErrorCode.CANCEL))
    # The turn that overdrew the budget is dropped whole: stream 41 never reached the application.
    assert_calmed(running, conn, warnings, "stream resets", last_stream_id=39)


def test_completed_responses_earn_resets_back(serve, warnings):
    running = serve(hello, flood_window=WINDOW, h2_max_resets=20)
    conn = connection(running)
    stream_id = 1
    for _ in range(3):  # 3 x (10 resets + 10 answered requests): 30 resets, never over 20
        conn.send(*[h2raw.headers(sid, conn.header_block()) + h2raw.rst_stream(sid)
                    for sid in range(stream_id, stream_id + 20, 2)])
        stream_id += 20
        for sid in range(stream_id, stream_id + 20, 2):
            conn.request(sid)
        for sid in range(stream_id, stream_id + 20, 2):
            assert conn.read_response(sid).status == 200
        stream_id += 20
    assert alive(conn)
    assert warnings() == []


def test_madeyoureset_window_overflow(serve, warnings):
    gate = Gate()

    async def slow(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/slow":
            await gate.wait()
        await hello(scope, receive, send)

    running = serve(slow, flood_window=WINDOW, h2_max_resets=10)
    try:
        conn = connection(running)
        for sid in range(1, 23, 2):
            conn.request(sid, b"/slow")
        assert alive(conn)
        for sid in range(1, 21, 2):  # 10 streams the server must reset: FLOW_CONTROL_ERROR
            conn.send(h2raw.window_update(sid, 2**31 - 1))
        assert alive(conn)
        assert [f.error_code for f in conn.frames if isinstance(f, RstStreamFrame)] == [ErrorCode.FLOW_CONTROL_ERROR] * 10
        conn.send(h2raw.window_update(21, 2**31 - 1))
        assert_calmed(running, conn, warnings, "stream resets", last_stream_id=21)
    finally:
        gate.open(running)


def test_madeyoureset_data_after_end_stream(serve, warnings):
    gate = Gate()

    async def slow(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            await gate.wait()  # the abusive requests; the other clients' GETs are answered
        else:
            await hello(scope, receive, send)

    running = serve(slow, flood_window=WINDOW, h2_max_resets=10)
    try:
        conn = connection(running)
        for sid in range(1, 21, 2):
            conn.request(sid, method=b"POST")  # END_STREAM on HEADERS
            conn.send(h2raw.data(sid, b"late"))  # then DATA: RST_STREAM(STREAM_CLOSED)
        assert alive(conn)
        assert [f.error_code for f in conn.frames if isinstance(f, RstStreamFrame)] == [ErrorCode.STREAM_CLOSED] * 10
        conn.request(21, method=b"POST")
        conn.send(h2raw.data(21, b"late"))
        assert_calmed(running, conn, warnings, "stream resets")
    finally:
        gate.open(running)


def test_malformed_requests_each_reset_count_against_the_budget(serve, warnings):
    running = serve(hello, flood_window=WINDOW, h2_max_resets=10)
    conn = connection(running)
    malformed = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")]  # no :path
    conn.send(*[h2raw.headers(sid, conn.encoder.encode(malformed)) for sid in range(1, 21, 2)])
    assert alive(conn)
    assert [f.error_code for f in conn.frames if isinstance(f, RstStreamFrame)] == [ErrorCode.PROTOCOL_ERROR] * 10
    conn.send(h2raw.headers(21, conn.encoder.encode(malformed)))
    # No request was ever handed to the application.
    assert_calmed(running, conn, warnings, "stream resets", last_stream_id=0)


# -- the stream limit ----------------------------------------------------------------------------

def test_streams_whose_response_waits_on_a_closed_window_count_against_the_limit(serve, warnings):
    """h2spec http2/5.1.2: with a zero window every response waits; the handlers have returned."""
    running = serve(hello, flood_window=WINDOW, h2_max_concurrent_streams=10, h2_max_resets=15)
    conn = h2raw.Connection(running.port, None, timeout=10.0)
    conn.handshake({Setting.INITIAL_WINDOW_SIZE: 0})
    for sid in range(1, 21, 2):
        conn.request(sid)
    for sid in range(1, 21, 2):  # each response's HEADERS go out; its DATA cannot
        conn.read_until(lambda f, sid=sid: conn.responses.get(sid) is not None
                        and conn.responses[sid].status == 200, f"response headers on stream {sid}")
    conn.send(*[h2raw.headers(sid, conn.header_block()) for sid in range(21, 51, 2)])  # 15 more
    assert alive(conn)
    refused = [f.stream_id for f in conn.frames if isinstance(f, RstStreamFrame)]
    assert refused == list(range(21, 51, 2))
    assert all(f.error_code == ErrorCode.REFUSED_STREAM for f in conn.frames if isinstance(f, RstStreamFrame))
    conn.send(h2raw.headers(51, conn.header_block()))  # one refusal too many
    assert_calmed(running, conn, warnings, "stream resets", last_stream_id=19)


# -- control frames ------------------------------------------------------------------------------

CONTROL_FLOODS = {
    "SETTINGS": lambda conn, n: [h2raw.settings({Setting.INITIAL_WINDOW_SIZE: 65535})] * n,
    "PING": lambda conn, n: [h2raw.ping(b"flooding")] * n,
    "PRIORITY": lambda conn, n: [h2raw.priority(sid, 0) for sid in range(101, 101 + 2 * n, 2)],
    "PRIORITY_UPDATE": lambda conn, n: [h2raw.raw_frame(0x10, 0, 0, (101).to_bytes(4, "big") + b"u=3")] * n,
    "WINDOW_UPDATE": lambda conn, n: [h2raw.window_update(0, 1)] * n,
    "unknown": lambda conn, n: [h2raw.raw_frame(0x20, 0, 0, b"x" * 8)] * n,
}


@pytest.mark.parametrize("kind", list(CONTROL_FLOODS))
def test_control_frame_floods_end_at_the_first_frame_over_budget(serve, warnings, kind):
    running = serve(hello, flood_window=WINDOW, h2_max_control_frames=50)
    conn = connection(running)  # 2 spent
    conn.send(*CONTROL_FLOODS[kind](conn, 46))
    assert alive(conn)  # the 49th and 50th
    conn.send(*CONTROL_FLOODS[kind](conn, 1))
    assert_calmed(running, conn, warnings, "control frames", last_stream_id=0)


def test_empty_data_frames_count_as_control_frames(serve, warnings):
    gate = Gate()

    async def upload(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            await gate.wait()  # the abusive requests; the other clients' GETs are answered
        else:
            await hello(scope, receive, send)

    running = serve(upload, flood_window=WINDOW, h2_max_control_frames=50)
    try:
        conn = connection(running)
        conn.request(1, method=b"POST", end_stream=False)
        conn.send(h2raw.data(1, b"a full sixteen b") * 10)  # DATA that delivers is free
        # Empty costs 1, padded or not (padding delivers nothing); tiny (1-15 bytes) a tenth.
        conn.send(*[h2raw.data(1, b"")] * 35 + [h2raw.data(1, b"", pad=20)] * 10 + [h2raw.data(1, b"tiny")] * 10)
        assert alive(conn)
        conn.send(h2raw.data(1, b""))
        assert_calmed(running, conn, warnings, "control frames", last_stream_id=1)
    finally:
        gate.open(running)


def test_empty_continuation_frames_count_as_control_frames(serve, warnings):
    running = serve(hello, flood_window=WINDOW, h2_max_control_frames=20)
    conn = connection(running)
    assert alive(conn)  # 4 spent
    # 16 more use the budget up (h2 alone would take 64); no PING can prove it inside a header block.
    conn.send(h2raw.headers(1, conn.header_block(), end_headers=False),
              *[h2raw.continuation(1, b"", end_headers=False)] * 16)
    conn.send(h2raw.continuation(1, b"", end_headers=False))
    assert_calmed(running, conn, warnings, "control frames", last_stream_id=0)


def test_data_sent_earns_window_updates_for_a_large_download(serve, warnings):
    body = b"x" * (4 * 1024 * 1024)

    async def download(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    # 256 DATA frames of 16 KiB: a client that answers each with two WINDOW_UPDATEs (h2raw does)
    # sends 512, far over the 50 the budget holds on its own.
    running = serve(download, flood_window=WINDOW, h2_max_control_frames=50)
    conn = connection(running)
    conn.request(1)
    response = conn.read_response(1)
    assert len(response.body) == len(body)
    assert alive(conn)
    assert warnings() == []


# -- HPACK ---------------------------------------------------------------------------------------

def test_hpack_crumbs_are_charged_by_the_fields_they_decode_to(serve, warnings):
    running = serve(hello, flood_window=WINDOW, h2_max_resets=100)
    conn = connection(running)

    def crumbs(stream_id: int) -> bytes:
        # A valid request, then one literal added to the dynamic table and 5,000 one-byte
        # references to it: 5 KB on the wire, 185 KB of header list (refused with 431).
        block = conn.header_block() + h2raw.literal_with_indexing(b"x-a", b"b") + bytes([0xBE]) * 5000
        conn.encoder.header_table.add(b"x-a", b"b")
        return h2raw.headers(stream_id, block)

    conn.send(crumbs(1))
    assert conn.read_response(1).status == 431
    # 1 + 5004 fields / 100 per block: the second block goes over 100.
    conn.send(crumbs(3))
    assert_calmed(running, conn, warnings, "stream resets")


# -- fairness ------------------------------------------------------------------------------------

def test_a_connection_is_handled_a_bounded_number_of_frames_per_loop_turn():
    """Socket-free: 1,000 PINGs in one read are answered 100 per turn, reading paused meanwhile."""

    class Transport:
        def __init__(self) -> None:
            self.written = bytearray()
            self.reading = True

        def write(self, data: bytes) -> None:
            self.written += data

        def pause_reading(self) -> None:
            self.reading = False

        def resume_reading(self) -> None:
            self.reading = True

        def is_closing(self) -> bool:
            return False

        def set_write_buffer_limits(self, high: int) -> None:
            pass

        def get_extra_info(self, name: str, default=None):
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def ping_acks(data: bytes) -> int:
        return data.count(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00")

    async def scenario() -> list[tuple[int, bool]]:
        context = ServerContext(app=hello, config=Config(h2_max_control_frames=10**6))
        protocol = HTTP2Protocol(context)
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(PREFACE + h2raw.settings() + h2raw.ping(b"12345678") * 1000)
        turns = []
        for _ in range(12):
            await asyncio.sleep(0)  # one loop turn: the outbox flushes, the next turn parses
            turns.append((ping_acks(bytes(transport.written)), transport.reading))
        return turns

    turns = asyncio.run(scenario())
    counts = [count for count, _ in turns]
    # The first turn parsed the SETTINGS and 99 PINGs, every later turn 100 more.
    assert counts[0] <= 199 and all(b - a <= 100 for a, b in zip(counts, counts[1:]))
    assert counts[-1] == 1000
    assert not turns[0][1]  # reading paused while frames wait
    assert turns[-1][1]  # and resumed once they are all handled


def test_a_flooding_connection_does_not_keep_other_clients_waiting(serve):
    """A PING flood that reads its ACKs (so the server keeps working for it) runs while another
    client's requests are answered; the flood is still running when they all are."""
    running = serve(hello, h2_max_control_frames=10**9)
    stop = threading.Event()
    flooded = threading.Event()
    sent = [0]

    def flood() -> None:
        sock = socket.create_connection(("127.0.0.1", running.port))
        sock.sendall(PREFACE + h2raw.settings())
        reader = threading.Thread(target=lambda: drain(sock), daemon=True)
        reader.start()
        batch = h2raw.ping(b"flooding") * 2000
        try:
            while not stop.is_set() and sent[0] < 5_000_000:
                sock.sendall(batch)
                sent[0] += 2000
                flooded.set()
        except OSError:
            pass
        finally:
            sock.close()

    def drain(sock: socket.socket) -> None:
        try:
            while sock.recv(1 << 20):
                pass
        except OSError:
            pass

    attacker = threading.Thread(target=flood, daemon=True)
    attacker.start()
    try:
        assert flooded.wait(10)
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            for _ in range(20):
                assert client.get(h2_only_url(running)).text == "hello"
        assert attacker.is_alive(), f"the flood ended ({sent[0]} PINGs) before the other client was served"
    finally:
        stop.set()
        attacker.join(10)


# -- legitimate patterns that must not be charged -------------------------------------------------

def test_an_upload_answered_early_is_not_charged_for_its_data_in_flight(serve, warnings):
    async def refuse_upload(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too large"})

    running = serve(refuse_upload, flood_window=WINDOW, h2_max_resets=20)
    conn = connection(running)
    conn.request(1, method=b"POST", end_stream=False)
    # 1,500 frames (192 KB, inside the stream window) already on their way when the 413 comes.
    conn.send(*[h2raw.data(1, b"u" * 128)] * 1500)
    assert alive(conn)
    assert conn.responses[1].status == 413
    # One RST_STREAM(NO_ERROR) asks the client to stop (RFC 9113 §8.1); the DATA in flight is
    # ignored (§5.1), not answered frame by frame.
    assert [f.error_code for f in conn.frames if isinstance(f, RstStreamFrame)] == [ErrorCode.NO_ERROR]
    assert warnings() == []


def test_handlers_still_running_after_their_response_do_not_hold_stream_slots(serve, warnings):
    gate = Gate()

    async def background(scope, receive, send):
        if scope["type"] != "http":
            return
        await hello(scope, receive, send)
        await gate.wait()  # work after the response, like Starlette's BackgroundTasks

    running = serve(background, flood_window=WINDOW, h2_max_concurrent_streams=10, h2_max_resets=5)
    try:
        conn = connection(running)
        for first in range(1, 61, 20):  # 3 rounds of 10 streams: 30 handlers, 10 streams at most open
            conn.send(*[h2raw.headers(sid, conn.header_block()) for sid in range(first, first + 20, 2)])
            for sid in range(first, first + 20, 2):
                assert conn.read_response(sid).status == 200
        assert alive(conn)
        assert not [f for f in conn.frames if isinstance(f, RstStreamFrame)]
        assert warnings() == []
    finally:
        gate.open(running)


def test_a_stream_of_small_messages_is_not_a_flood(serve, warnings):
    async def sink(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await hello(scope, receive, send)

    # 2,000 DATA frames of 4 bytes (small gRPC or WebSocket messages) cost 200 of 1,000.
    running = serve(sink, flood_window=WINDOW)
    conn = connection(running)
    conn.request(1, method=b"POST", end_stream=False)
    conn.send(*[h2raw.data(1, b"ping")] * 2000, h2raw.data(1, b"", end_stream=True))
    assert conn.read_response(1).status == 200
    assert warnings() == []


def test_a_one_byte_window_does_not_buy_control_frames(serve, warnings):
    body = b"d" * 5000

    async def download(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    running = serve(download, flood_window=WINDOW, h2_max_control_frames=20)
    conn = h2raw.Connection(running.port, None, timeout=10.0)
    conn.handshake({Setting.INITIAL_WINDOW_SIZE: 1})
    conn.request(1)
    # Each 1-byte DATA frame is answered with a WINDOW_UPDATE of 1 (data dribbling, CVE-2019-9511):
    # tiny frames earn a tiny refund, so the window updates run the budget dry.
    for _ in range(len(body)):
        frame = conn.read_frame()
        assert frame is not None, "closed without GOAWAY"
        if isinstance(frame, GoAwayFrame):
            break
        if frame.type == 0 and frame.stream_id == 1:
            conn.send(h2raw.window_update(1, 1))
    assert len(conn.responses[1].body) < 40
    assert_calmed(running, conn, warnings, "control frames", last_stream_id=1, frame=frame)
