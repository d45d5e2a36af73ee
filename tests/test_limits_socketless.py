"""The limits' timers without sockets: protocols driven through a fake transport, their timers
fired by hand (tests/fakes.py), so which timer runs when is checked exactly, not by waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes import ManualTimers
from hyperframe.frame import DataFrame, GoAwayFrame, RstStreamFrame
from plexicorn import Config
from plexicorn.asgi.http import HTTPCycle
from plexicorn.runtime.context import ServerContext
from test_cli import APPS, assert_one_error_line, run_cli
from test_h1_socketless import Server
from test_h2_socketless import Peer, body_app


def pending(runtime: ManualTimers) -> list[float]:
    return sorted(timer.delay for timer in runtime.timers if not timer.cancelled)


def test_http1_the_header_timer_replaces_the_keep_alive_timer_from_a_heads_first_byte():
    async def scenario() -> None:
        server = Server(keep_alive_timeout=7.0, header_timeout=3.0)
        assert pending(server.runtime) == [7.0]  # nothing sent yet: the keep-alive timer
        server.send(b"GET / HTTP/1.1\r\nHost: l")
        assert pending(server.runtime) == [3.0]
        server.send(b"ocalhost\r\n")  # more bytes do not restart it
        assert pending(server.runtime) == [3.0] and len(server.runtime.timers) == 2
        server.runtime.fire(3.0)
        await server.settle()
        written = bytes(server.transport.written)
        assert written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"connection: close\r\n" in written
        assert server.transport.closed
        assert server.protocol.context.counters.limit_hits == {"header timeout": 1}
    asyncio.run(scenario())


def test_http1_no_header_timer_runs_while_a_request_is_served_or_after_a_whole_head():
    async def scenario() -> None:
        server = Server(keep_alive_timeout=7.0, header_timeout=3.0)
        server.send(server.request(b"/one"))
        await server.settle()
        assert [status for status, _, _ in server.responses()] == [200]
        assert pending(server.runtime) == [7.0]  # back to waiting for the next request
    asyncio.run(scenario())


def test_body_timer_runs_only_while_the_app_waits_in_receive():
    async def scenario() -> None:
        runtime = ManualTimers()
        context = ServerContext(app=body_app({}), config=Config(body_timeout=4.0), runtime=runtime)
        ended: list[bool] = []

        class Cycle(HTTPCycle):
            def _wire_request_ended(self, answered: bool) -> None:
                ended.append(answered)

            def _wire_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
                pass

            def _wire_body_nowait(self, body: bytes, more_body: bool) -> None:
                pass

        cycle = Cycle({"method": "POST", "path": "/", "client": None})
        cycle.limits = context.body_limits
        # An is_disconnected()-style probe: a receive() cancelled almost at once.
        try:
            await asyncio.wait_for(cycle.receive(), 0.01)
        except TimeoutError:
            pass
        assert pending(runtime) == []  # the app does other work now: nothing is timed
        waiter = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        assert pending(runtime) == [4.0]
        cycle.feed_body(b"piece")
        assert (await waiter)["body"] == b"piece"
        assert pending(runtime) == []
        waiter = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        runtime.fire(4.0)  # the next piece never came
        assert (await waiter) == {"type": "http.disconnect"}
        assert ended == [True] and cycle.status == 408
        assert context.counters.limit_hits == {"body timeout": 1}
    asyncio.run(scenario())


def test_a_body_timeout_of_0_times_nothing():
    async def scenario() -> None:
        server = Server(body_timeout=0, keep_alive_timeout=7.0)
        server.send(b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\n\r\nab")
        await server.settle()  # the app waits for the rest of its body
        assert [delay for delay in pending(server.runtime) if delay != 7.0] == []  # keep-alive's stays armed
        server.send(b"cde")
        await server.settle()
        assert [(status, body) for status, _, body in server.responses()] == [(200, b"/ abcde")]
    asyncio.run(scenario())


def test_http2_a_header_block_left_open_ends_the_connection_when_the_timer_fires():
    async def scenario() -> None:
        peer = Peer(body_app({}), header_timeout=3.0)
        await peer.settle()
        peer.frames()
        assert 3.0 not in pending(peer.runtime)
        # HEADERS without END_HEADERS, written by hand: h2's client would never leave it open.
        block = peer.client.encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "t"),
                                            (":path", "/")])
        peer.send(len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block)
        await peer.settle()
        assert [f for f in peer.frames() if isinstance(f, GoAwayFrame)] == []  # a whole block: served
        peer.send(len(block).to_bytes(3, "big") + b"\x01\x01" + (3).to_bytes(4, "big") + block)
        assert 3.0 in pending(peer.runtime)
        peer.runtime.fire(3.0)
        await peer.settle()
        goaways = [f for f in peer.frames() if isinstance(f, GoAwayFrame)]
        assert [(g.error_code, g.last_stream_id) for g in goaways] == [(0xB, 1)]  # ENHANCE_YOUR_CALM
    asyncio.run(scenario())


def echo_app(received: list[bytes]) -> Any:
    """Reads its body to the end (each step's body so far into `received`), then echoes it."""
    async def echo(scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            received.append(body)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    return echo


def test_http2_body_timer_does_not_blame_the_client_while_the_connection_holds_reading():
    """A client that leaves our writes unread makes the connection stop reading it (pause_writing):
    the body it sends meanwhile cannot arrive, so --body-timeout waits again instead of a 408."""
    received: list[bytes] = []

    async def scenario() -> None:
        peer = Peer(echo_app(received), body_timeout=4.0)
        stream_id = peer.client.get_next_available_stream_id()
        peer.client.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                                             (":path", "/")])
        peer.client.send_data(stream_id, b"abc")
        peer.send()
        await peer.settle()
        assert received == [b"abc"] and pending(peer.runtime) == [4.0]  # the app waits for the rest
        peer.protocol.pause_writing()  # the client stopped reading: so do we
        peer.runtime.fire(4.0)
        await peer.settle()
        assert pending(peer.runtime) == [4.0]  # timed again, not ended
        assert peer.protocol.context.counters.limit_hits == {}
        peer.protocol.resume_writing()
        peer.client.send_data(stream_id, b"def", end_stream=True)
        peer.send()
        await peer.settle()
        frames = peer.frames()
        assert b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id) == b"abcdef"
        assert not [f for f in frames if isinstance(f, RstStreamFrame)]
        assert 4.0 not in pending(peer.runtime)
    asyncio.run(scenario())


def test_http2_body_timer_still_ends_a_stalled_upload_when_reading_goes_on():
    async def scenario() -> None:
        peer = Peer(echo_app([]), body_timeout=4.0)
        stream_id = peer.client.get_next_available_stream_id()
        peer.client.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                                             (":path", "/")])
        peer.client.send_data(stream_id, b"abc")
        peer.send()
        await peer.settle()
        peer.runtime.fire(4.0)
        await peer.settle()
        assert peer.protocol.context.counters.limit_hits == {"body timeout": 1}
    asyncio.run(scenario())


@pytest.mark.parametrize(("args", "expected"), [
    (["--header-timeout", "0"], "--header-timeout must be greater than 0"),
    (["--body-timeout", "-1"], "--body-timeout cannot be negative"),
    (["--limit-concurrency", "-1"], "--limit-concurrency cannot be negative"),
    (["--max-request-body-size", "-5"], "--max-request-body-size cannot be negative"),
    (["--max-request-body-size", "1MiB"], "--max-request-body-size: invalid int value"),
    (["--body-timeout", "nan"], "--body-timeout must be a number of seconds, not nan"),
])
def test_bad_limit_settings_are_one_error_line_and_exit_status_2(tmp_path, args, expected):
    line = assert_one_error_line(run_cli("good:app", "--app-dir", APPS, *args, cwd=tmp_path))
    assert expected in line


def test_limit_settings_come_from_a_config_file_too(tmp_path):
    path = tmp_path / "limits.toml"
    path.write_text("limit_concurrency = 8\nmax_request_body_size = 1048576\nheader_timeout = 2.5\nbody_timeout = 0\n")
    config = Config.from_toml(path)
    assert (config.limit_concurrency, config.max_request_body_size, config.header_timeout,
            config.body_timeout) == (8, 1048576, 2.5, 0)
