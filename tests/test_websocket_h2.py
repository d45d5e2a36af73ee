"""WebSockets over HTTP/2 (RFC 8441) seen from the wire: the extended CONNECT handshake and its
refusals, messages both ways, closing, limits, ping timeouts, resets, and that WebSocket
streams share a connection fairly with each other and with ordinary requests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from wsproto.connection import Connection as _FrameConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from h2client import H2Client
from h2wsclient import Close, H2WebSocket, H2WSConnection
from plexicorn.asgi.http import ClientDisconnected
from plexicorn.http2 import lifecycle

KIB = 1024
MIB = 1024 * 1024
TEST_TIMEOUT = 10.0


# -- helpers ---------------------------------------------------------------------------------------

class Signal:
    """A one-shot value between the app (server loop, its own thread) and the test (client loop).

    Backed by a concurrent future, so either side may set it and either loop may await it."""

    def __init__(self, what: str = "the signal") -> None:
        self.what = what
        self._future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def set(self, value: Any = None) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def is_set(self) -> bool:
        return self._future.done()

    @property
    def value(self) -> Any:
        assert self._future.done(), f"{self.what} never came"
        return self._future.result()

    async def wait(self, timeout: float = 5.0) -> Any:
        # shield: a timed-out wait must not cancel the shared future for later waiters.
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._future)), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {self.what}") from None


def run(scenario: Awaitable[None]) -> None:
    """Run the client side of a test on its own loop (the server has another, in its thread)."""
    asyncio.run(asyncio.wait_for(scenario, TEST_TIMEOUT))


async def connect(running, ssl_context=None, **options: Any) -> H2WSConnection:
    return await H2WSConnection.open(running.port, ssl_context=ssl_context, **options)


async def respond(send, status: int = 200, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo_loop(receive, send, received: list | None = None) -> dict:
    """Echo every message until the disconnect, which is returned."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message
        assert message["type"] == "websocket.receive", message
        if received is not None:
            received.append(message)
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def echo_app(done: Signal | None = None) -> Callable:
    """WebSocket: accept and echo; HTTP: answer with the path."""
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await respond(send, body=f"path {scope['path']}".encode())
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await echo_loop(receive, send)
        if done is not None:
            done.set(message)
    return app


def serve_ws(serve, app, **config: Any):
    config.setdefault("lifespan", "off")
    return serve(app, **config)


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(params=["h2c", "tls"])
def transport(request, client_ssl_context):
    """(serve options, client ssl context, expected ASGI scheme) for cleartext and TLS."""
    if request.param == "tls":
        return {"tls": True}, client_ssl_context(alpn=("h2",)), "wss"
    return {}, None, "ws"


@pytest.fixture
def app_errors(caplog, monkeypatch) -> Callable[[], list[logging.LogRecord]]:
    """ERROR records of plexicorn.error (the server logs from its thread; logging is process-wide)."""
    # An in-process CLI test may have configured `plexicorn` not to propagate to the root.
    monkeypatch.setattr(logging.getLogger("plexicorn"), "propagate", True)
    caplog.set_level(logging.ERROR, logger="plexicorn.error")
    return lambda: [r for r in caplog.records if r.name == "plexicorn.error" and r.levelno >= logging.ERROR]


# -- handshake ---------------------------------------------------------------------------------------

def test_server_settings_enable_extended_connect(serve):
    running = serve_ws(serve, echo_app())

    async def scenario():
        async with await connect(running) as conn:
            await conn.wait_settings()
            await conn.ping()  # every SETTINGS frame of the server's preface has arrived
            assert conn.remote_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    run(scenario())


def test_text_and_binary_messages_echo(serve, transport):
    options, ssl_context, _ = transport
    running = serve_ws(serve, echo_app(), **options)
    binary = bytes(range(256)) * 4

    async def scenario():
        async with await connect(running, ssl_context) as conn:
            ws = await conn.websocket("/echo")
            assert ws.status == 200
            assert not ws.stream.finished  # :status 200 without END_STREAM: the tunnel is open
            await ws.send_text("héllo wörld")
            assert await ws.receive() == "héllo wörld"
            await ws.send_bytes(binary)
            assert await ws.receive() == binary
            await ws.send_text("")
            assert await ws.receive() == ""
            await ws.close()
            assert await ws.wait_closed() == Close(1000, "")
    run(scenario())


def test_scope_describes_a_websocket_over_http2(serve, transport):
    options, ssl_context, scheme = transport
    scope_seen, first_message = Signal("the scope"), Signal("the first message")

    async def app(scope, receive, send):
        scope_seen.set(dict(scope))
        first_message.set(await receive())
        await send({"type": "websocket.close"})

    running = serve_ws(serve, app, **options)

    async def scenario():
        async with await connect(running, ssl_context) as conn:
            ws = await conn.websocket("/chat/r%C3%B6om?x=1&y=two", subprotocols=["a", "b"],
                                      headers=[("x-extra", "yes")])
            assert ws.status == 403
    run(scenario())

    scope = scope_seen.value
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0" and scope["asgi"]["spec_version"] == "2.4"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == scheme
    assert scope["path"] == "/chat/röom"
    assert scope["raw_path"] == b"/chat/r%C3%B6om"
    assert scope["query_string"] == b"x=1&y=two"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["a", "b"]
    assert (b"x-extra", b"yes") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"][1] == running.port
    assert "websocket.http.response" in scope["extensions"]
    assert ("tls" in scope["extensions"]) == (scheme == "wss")
    assert first_message.value == {"type": "websocket.connect"}


# -- messages ------------------------------------------------------------------------------------------

def test_16_mib_message_travels_both_ways_whole(serve):
    payload = payload_of(16 * MIB, seed=1)  # exactly the default ws_max_message_size
    sizes: list[int] = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        sizes.append(len(message["bytes"]))
        await send({"type": "websocket.send", "bytes": message["bytes"]})
        await receive()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await ws.send_bytes(payload)
            echoed = await ws.receive_bytes()
            assert len(echoed) == len(payload)
            assert echoed == payload
            await ws.close()
            await ws.wait_closed()
    run(scenario())
    assert sizes == [16 * MIB]


def test_fragmented_message_reaches_the_app_as_one_message(serve):
    received: list[dict] = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await echo_loop(receive, send, received)

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            frames: list[bytes] = []
            queue = ws.stream.queue

            def spy(data: bytes, *, end_stream: bool = False) -> None:
                frames.append(data)
                queue(data, end_stream=end_stream)
            ws.stream.queue = spy  # type: ignore[method-assign]
            await ws.send_fragmented(["frag", "men", "ted ", "text"])
            # On the wire: TEXT without FIN, CONTINUATIONs, the last with FIN.
            assert [frame[0] for frame in frames] == [0x01, 0x00, 0x00, 0x80]
            assert await ws.receive() == "fragmented text"
            await ws.send_fragmented([b"\x00\x01", b"\x02", b"\x03\x04"])
            assert await ws.receive() == b"\x00\x01\x02\x03\x04"
            await ws.close()
            await ws.wait_closed()
    run(scenario())
    assert [m.get("text") for m in received] == ["fragmented text", None]
    assert received[1]["bytes"] == b"\x00\x01\x02\x03\x04"


# -- closing ---------------------------------------------------------------------------------------------

def test_client_close_code_and_reason_reach_the_app_and_the_server_echoes_the_code(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done))

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await ws.send_text("x")
            assert await ws.receive() == "x"
            await ws.close(4001, "bye")
            close = await ws.wait_closed()
            assert close.code == 4001
            assert ws.stream.ended_cleanly
            assert await done.wait() == {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}
    run(scenario())


def test_app_close_reaches_the_client_and_the_stream_ends_after_the_clients_close(serve):
    accepted_close_sent = Signal("the app's close")

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done here"})
        accepted_close_sent.set()
        await receive()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await accepted_close_sent.wait()
            events: list = []
            while not events:
                chunk = await ws.stream.read_chunk()
                assert chunk is not None, "the stream ended before the Close frame"
                ws.ws.receive_data(chunk)
                events += ws.ws.events()
            assert len(events) == 1 and events[0].code == 4002 and events[0].reason == "done here"
            # Until our Close goes back, the server keeps its side of the stream open.
            await conn.ping()
            assert not ws.stream.finished
            await ws.stream.send(ws.ws.send(events[0].response()))
            await ws.stream.wait_finished()
            assert ws.stream.ended_cleanly
    run(scenario())


def test_app_close_is_seen_by_the_client_through_receive(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})
        await receive()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            assert await ws.receive() == Close(4002, "done")
            assert ws.close_sent == (4002, "done")  # our reply went back
            await ws.stream.wait_finished()
            assert ws.stream.ended_cleanly
    run(scenario())


def test_app_returning_after_accept_closes_with_1000(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1000
            await ws.wait_closed()
            assert ws.stream.ended_cleanly
    run(scenario())


def test_app_raising_after_accept_closes_with_1011(serve):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await respond(send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom after accept")

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            assert ws.status == 200
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1011
            await ws.stream.wait_finished()
            # Only the stream is gone: the connection goes on.
            assert (await conn.request("GET", "/")).status == 200
    run(scenario())


# -- refusals --------------------------------------------------------------------------------------------

def test_denial_response_reaches_the_client_as_an_http_response(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"policy")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            assert ws.status == 403
            assert ws.header(b"x-why") == b"policy"
            assert ws.header(b"sec-websocket-protocol") is None
            assert await ws.stream.read_all() == b"no entry"
            assert ws.stream.ended_cleanly
    run(scenario())


def test_close_before_accept_is_a_403_with_an_empty_body(serve):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close"})

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            assert ws.status == 403
            assert await ws.stream.read_all() == b""
            assert ws.stream.ended_cleanly
    run(scenario())


def test_plain_connect_is_501(serve):
    called = threading.Event()

    async def app(scope, receive, send):
        called.set()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            stream = conn.open_stream([(":method", "CONNECT"), (":authority", "example.com:443")])
            response = await conn.read_response(stream)
            assert response.status == 501
            assert stream.ended_cleanly
    run(scenario())
    assert not called.is_set()


def test_extended_connect_for_another_protocol_is_501(serve):
    called = threading.Event()

    async def app(scope, receive, send):
        called.set()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/.well-known/masque/udp/192.0.2.6/443/", protocol="connect-udp",
                                      headers=[("capsule-protocol", "?1")])
            assert ws.status == 501
            await ws.stream.read_all()
            assert ws.stream.ended_cleanly
    run(scenario())
    assert not called.is_set()


@pytest.mark.parametrize("version", [None, "8"])
def test_missing_or_unsupported_websocket_version_is_400(serve, version):
    called = threading.Event()

    async def app(scope, receive, send):
        called.set()

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/", version=version)
            assert ws.status == 400
            await ws.stream.read_all()
            assert ws.stream.ended_cleanly
    run(scenario())
    assert not called.is_set()


# -- negotiation -----------------------------------------------------------------------------------------

def test_subprotocol_chosen_by_the_app_is_the_response_header(serve):
    offered = Signal("the scope's subprotocols")

    async def app(scope, receive, send):
        offered.set(scope["subprotocols"])
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "b"})
        await echo_loop(receive, send)

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/", subprotocols=["a", "b"])
            assert ws.status == 200
            assert ws.header(b"sec-websocket-protocol") == b"b"
            await ws.send_text("on b")
            assert await ws.receive() == "on b"
    run(scenario())
    assert offered.value == ["a", "b"]


def test_permessage_deflate_is_negotiated_and_compresses_on_the_wire(serve):
    text = ("All work and no play makes Jack a dull boy. " * 30000)[:MIB]

    running = serve_ws(serve, echo_app())

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/", extensions=[PerMessageDeflate()])
            agreed = ws.header(b"sec-websocket-extensions")
            assert agreed is not None and agreed.startswith(b"permessage-deflate")
            assert [extension.name for extension in ws.extensions] == ["permessage-deflate"]
            await ws.send_text(text)
            assert await ws.receive() == text
            # Both directions crossed the wire compressed (1 MiB of repetitive text).
            assert ws.stream.bytes_sent < 64 * KIB, ws.stream.bytes_sent
            assert ws.stream.bytes_received < 64 * KIB, ws.stream.bytes_received
    run(scenario())


# -- limits and liveness -----------------------------------------------------------------------------

def test_message_over_the_size_limit_closes_with_1009(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done), ws_max_message_size=1024)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await ws.send_bytes(b"x" * 1024)  # at the limit: fine
            assert await ws.receive() == b"x" * 1024
            await ws.send_bytes(b"y" * 1025)
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1009
            assert (await done.wait())["code"] == 1009
    run(scenario())


def test_fragmented_message_over_the_size_limit_closes_with_1009(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done), ws_max_message_size=1024)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await ws.send_fragmented([b"z" * 600, b"z" * 600])  # each frame fits, the message does not
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1009
            assert (await done.wait())["code"] == 1009
    run(scenario())


def test_unanswered_pings_send_close_1011_then_reset_the_stream_and_the_app_sees_1011(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done), ws_ping_interval=0.2, ws_ping_timeout=0.3)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/", auto_pong=False)
            ws.auto_close_reply = False  # a dead client: no Pong, no Close echo
            # Our window is open, so the Close goes out ahead of the RST_STREAM (receive() skips pings).
            message = await ws.receive(timeout=3)
            assert ws.pings, "the server never pinged"
            assert isinstance(message, Close) and message.code == 1011, message
            await ws.stream.wait_finished()
            assert ws.stream.reset_by_server and ws.stream.reset_code == ErrorCodes.CANCEL
            assert not ws.stream.remote_ended  # reset, not ended: no close handshake was waited for
            assert (await done.wait())["code"] == 1011
            # The stream is reset, not the connection.
            assert (await conn.request("GET", "/")).status == 200
    run(scenario())


def test_answered_pings_keep_the_websocket_open(serve):
    # A timeout ten times the interval: one stall (client and server share the GIL) must not
    # make a pong late. Pings are answered for longer than the timeout plus an interval, so a
    # server that ignored the pongs would have closed with 1011 by then.
    running = serve_ws(serve, echo_app(), ws_ping_interval=0.1, ws_ping_timeout=1.0)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/", auto_pong=True)
            started = time.monotonic()
            # Read (and answer) pings; no Close comes.
            while len(ws.pings) < 5 or time.monotonic() - started < 1.5:
                event = await ws.receive_event()
                assert not isinstance(event, CloseConnection), event
            await ws.send_text("still here")
            assert await ws.receive() == "still here"
    run(scenario())


# -- resets and drops ------------------------------------------------------------------------------

def test_client_rst_stream_gives_the_app_disconnect_1006(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done))

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            await ws.send_text("before")
            assert await ws.receive() == "before"
            ws.reset(ErrorCodes.CANCEL)
            assert (await done.wait())["code"] == 1006
            # Only the stream is gone.
            other = await conn.websocket("/")
            await other.send_text("after")
            assert await other.receive() == "after"
    run(scenario())


def test_dropped_connection_gives_the_app_disconnect_1006(serve):
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done))

    async def scenario():
        conn = await connect(running)
        ws = await conn.websocket("/")
        await ws.send_text("before")
        assert await ws.receive() == "before"
        conn.abort()
        message = await done.wait()
        assert message["type"] == "websocket.disconnect" and message["code"] == 1006
        await conn.aclose()
    run(scenario())


# -- multiplexing and flow control ---------------------------------------------------------------

def test_50_websockets_and_50_requests_share_one_connection(serve):
    running = serve_ws(serve, echo_app())

    async def echo(ws, index: int) -> str | bytes | Close:
        await ws.send_text(f"message {index}")
        return await ws.receive()

    async def scenario():
        async with await connect(running) as conn:
            await conn.wait_settings()
            # All 50 WebSockets are open together, and stay open while the requests run.
            sockets = await asyncio.gather(*(conn.websocket(f"/ws/{index}") for index in range(50)))
            assert [ws.status for ws in sockets] == [200] * 50
            requests = [conn.request("GET", f"/http/{index}") for index in range(50)]
            results = await asyncio.gather(*(echo(ws, index) for index, ws in enumerate(sockets)), *requests)
            assert results[:50] == [f"message {index}" for index in range(50)]
            for index, response in enumerate(results[50:]):
                assert response.status == 200 and response.body == f"path /http/{index}".encode()
            assert not any(ws.stream.finished for ws in sockets)
            assert len({ws.stream_id for ws in sockets}) == 50 and len(conn.streams) == 100
            await asyncio.gather(*(ws.close() for ws in sockets))
            closes = await asyncio.gather(*(ws.wait_closed() for ws in sockets))
            assert closes == [Close(1000, "")] * 50
    run(scenario())


def test_unread_websocket_does_not_stall_others_on_the_connection(serve):
    total, chunk = 4 * MIB, 64 * KIB
    flood = payload_of(total, seed=7)
    progress = {"sent": 0}
    flood_done = Signal("the app to finish sending")

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await respond(send, body=b"fine")
            return
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/flood":
            for offset in range(0, total, chunk):
                await send({"type": "websocket.send", "bytes": flood[offset:offset + chunk]})
                progress["sent"] = offset + chunk
            flood_done.set()
        await echo_loop(receive, send)

    running = serve_ws(serve, app)

    async def scenario():
        # Our stream window is 64 KiB: that is all the server may send on a stream we do not read.
        async with await connect(running, initial_window_size=65535) as conn:
            flooded = await conn.websocket("/flood")
            await flooded.stream.wait_for(lambda: flooded.stream.bytes_received >= 65535)

            other = await conn.websocket("/other")
            for index in range(20):
                await other.send_text(f"ping {index}")
                assert await other.receive() == f"ping {index}"
            response = await conn.request("GET", "/")
            assert response.status == 200 and response.body == b"fine"

            await conn.ping()
            assert flooded.stream.bytes_received == 65535  # the window held
            assert not flood_done.is_set(), "the app's sends did not wait for the client's window"
            assert running.call(lambda: progress["sent"]) < total

            # Reading again re-opens the window and everything arrives intact.
            received = bytearray()
            while len(received) < total:
                received += await flooded.receive_bytes()
            assert received == flood
            await flood_done.wait()
    run(scenario())


def test_app_not_receiving_stops_the_stream_window_while_other_streams_work(serve):
    message = payload_of(16 * KIB, seed=9)
    release = Signal("the test to let the app read")
    counted = Signal("the app to receive every message")
    sent_count = Signal("the number of messages sent")

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/deaf":
            await release.wait(timeout=10)
            count = 0
            while (incoming := await receive())["type"] == "websocket.receive":
                assert incoming["bytes"] == message
                count += 1
                if count == sent_count.value:
                    counted.set(count)
        else:
            await echo_loop(receive, send)

    running = serve_ws(serve, app)

    async def scenario():
        async with await connect(running) as conn:
            deaf = await conn.websocket("/deaf")
            queued = 0

            def blocked() -> bool:
                return bool(deaf.stream.pending_send) and deaf.stream.send_window == 0
            # Queue messages until one is held back by a shut window that stays shut once the
            # server has processed everything (PING round trip); 8 MiB is far past any sane
            # per-stream buffer.
            while True:
                while not blocked():
                    assert queued * len(message) < 8 * MIB, \
                        "the server kept opening the window of a stream whose app does not read"
                    deaf.queue_event(BytesMessage(data=message))
                    queued += 1
                    await deaf.stream.wait_for(lambda: not deaf.stream.pending_send or blocked())
                await conn.ping()
                if blocked():
                    break

            other = await conn.websocket("/other")
            await other.send_bytes(b"other stream")
            assert await other.receive() == b"other stream"
            assert deaf.stream.send_window == 0

            sent_count.set(queued)
            release.set()
            await deaf.stream.wait_for(lambda: not deaf.stream.pending_send)
            assert await counted.wait() == queued
    run(scenario())


# -- regressions: ping floods, shutdown, early client actions, access log -------------------------

def test_ping_flood_from_a_client_not_reading_queues_bounded_pongs_and_the_websocket_still_works(serve):
    pings, payload = 20_000, b"p" * 125  # 125 bytes: the largest control frame payload

    # A budget the flood stays within: this is about the pongs (test_flood_websocket.py: the budget).
    running = serve_ws(serve, echo_app(), ws_ping_interval=0, ws_max_pings=1_000_000)

    async def scenario():
        # A zero stream window: nothing the server queues for us can leave until we open it.
        async with await connect(running, initial_window_size=0) as conn:
            ws = await conn.websocket("/")
            assert ws.status == 200
            flood = b"".join(ws.ws.send(Ping(payload=payload)) for _ in range(pings))
            await ws.stream.send(flood)  # ~2.6 MiB: the server keeps acknowledging it
            await conn.ping()  # every Ping has been through the server
            assert ws.stream.bytes_received == 0
            await ws.send_text("after the flood")

            ws.stream.open_window(4 * MIB)
            pong_bytes = pongs = 0
            while True:
                event = await ws.receive_event(timeout=3)
                if isinstance(event, Pong):
                    assert event.payload == payload
                    pongs += 1
                    pong_bytes += 2 + len(event.payload)  # frame header + payload, unmasked
                elif isinstance(event, TextMessage):
                    assert event.data == "after the flood"
                    break
                else:
                    raise AssertionError(f"unexpected {event!r}")
            # One Pong per Ping would be 2.5 MiB; the server answers the pings of one read with
            # one pong and none while its send buffer is full (RFC 6455 §5.5.3 lets it skip all
            # but the latest).
            assert 0 < pong_bytes < 256 * KIB, (pongs, pong_bytes)
            await ws.send_text("and again")
            assert await ws.receive() == "and again"
    run(scenario())


def test_websocket_accepted_after_shutdown_began_gets_close_1012(serve):
    connecting = Signal("the app to get websocket.connect")
    shutdown_begun = Signal("the test to start the shutdown")
    done = Signal("the app's websocket.disconnect")

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        connecting.set()
        await shutdown_begun.wait()
        await send({"type": "websocket.accept"})
        done.set(await echo_loop(receive, send))

    running = serve_ws(serve, app, ws_ping_interval=0)

    async def scenario():
        async with await connect(running) as conn:
            await conn.wait_settings()
            stream, offered = conn.start_websocket("/late")
            await connecting.wait()
            running.server.request_shutdown()
            # The server's GOAWAY: its shutdown has gone through this connection's streams.
            await conn.wait_for(lambda: conn.goaway is not None)
            shutdown_begun.set()
            ws = await conn.websocket_response(stream, offered)
            assert ws.status == 200
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1012, message
            await ws.wait_closed()
            assert ws.stream.ended_cleanly
            assert (await done.wait())["code"] == 1012
    run(scenario())


def test_websocket_opened_between_the_two_shutdown_goaways_gets_close_1012(monkeypatch, serve):
    # Only our PING ACK may bring the final GOAWAY: the 1 s fallback could beat our request.
    monkeypatch.setattr(lifecycle, "GOAWAY_ROUND_TRIP", 30.0)
    done = Signal("the app's websocket.disconnect")
    running = serve_ws(serve, echo_app(done=done), ws_ping_interval=0)
    with H2Client(running.port) as client:
        client.wait_for(lambda: client.events_of(h2.events.SettingsAcknowledged))
        running.server.request_shutdown()
        # Read the first GOAWAY (last stream 2^31-1) and its PING without handing them to h2 yet:
        # no PING ACK leaves, so the server has not sent its final GOAWAY when our request lands.
        held = b""
        while not any(frame_type == 0x7 for frame_type in frame_types(held)):
            chunk = client.sock.recv(65536)
            assert chunk, "the server closed before its first GOAWAY"
            held += chunk
        stream_id = client.request("CONNECT", "/late", end_stream=False,
                                   headers=[(b":protocol", b"websocket"), (b"sec-websocket-version", b"13")])
        for event in client.conn.receive_data(held):
            client._record(event)
        client.flush()
        client.wait_for(lambda: client.responses[stream_id]["status"] is not None)
        assert client.responses[stream_id]["status"] == 200  # served: it came before the final GOAWAY
        ws = _FrameConnection(ConnectionType.CLIENT)
        body = client.responses[stream_id]["body"]
        client.wait_for(lambda: len(body) >= 4)  # a Close frame with a code: at least 4 bytes
        ws.receive_data(bytes(body))
        events = list(ws.events())
        assert [event.code for event in events if isinstance(event, CloseConnection)] == [1012]
        client.conn.send_data(stream_id, ws.send(CloseConnection(code=1012)))
        client.flush()
    assert asyncio.run(done.wait())["code"] == 1012


def frame_types(data: bytes) -> list[int]:
    """The types of the whole HTTP/2 frames at the start of `data` (RFC 9113 §4.1)."""
    types = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        types.append(data[3])
        data = data[9 + length:]
    return types


def test_shutdown_sends_close_1012_on_a_connection_already_going_away(serve):
    done = Signal("the app's websocket.disconnect")
    # The WebSocket is the connection's only request: it makes the server send GOAWAY at once.
    running = serve_ws(serve, echo_app(done=done), ws_ping_interval=0, max_requests_per_connection=1)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/")
            assert ws.status == 200
            # The second, final GOAWAY (after the PING round trip) names the WebSocket's stream.
            await conn.wait_for(lambda: conn.goaway is not None and conn.goaway.last_stream_id == ws.stream_id)
            await ws.send_text("still open")
            assert await ws.receive() == "still open"

            running.server.request_shutdown()
            message = await ws.receive()
            assert isinstance(message, Close) and message.code == 1012, message
            await ws.wait_closed()
            assert ws.stream.ended_cleanly
            assert (await done.wait())["code"] == 1012
    run(scenario())


def test_accept_after_the_client_reset_the_stream_raises_client_disconnected(serve, app_errors):
    connecting = Signal("the app to get websocket.connect")
    reset_seen = Signal("the test to reset the stream")
    outcome = Signal("the outcome of websocket.accept")

    async def app(scope, receive, send):
        await receive()
        if scope["path"] != "/gone":
            await send({"type": "websocket.accept"})
            await echo_loop(receive, send)
            return
        connecting.set()
        await reset_seen.wait()
        try:
            await send({"type": "websocket.accept"})
        except BaseException as exc:
            outcome.set(exc)
            raise
        outcome.set(None)

    running = serve_ws(serve, app, ws_ping_interval=0)

    async def scenario():
        async with await connect(running) as conn:
            await conn.wait_settings()
            stream, _ = conn.start_websocket("/gone")
            await connecting.wait()
            conn.reset(stream.stream_id, ErrorCodes.CANCEL)
            await conn.ping()  # the server has processed the RST_STREAM
            reset_seen.set()
            error = await outcome.wait()
            # ASGI 2.4: the client being gone is an OSError, not an app error.
            assert isinstance(error, ClientDisconnected), repr(error)
            # The connection carries on.
            other = await conn.websocket("/other")
            await other.send_text("after")
            assert await other.receive() == "after"
    run(scenario())
    assert app_errors() == []


def test_end_stream_before_accept_delivers_the_early_message_then_disconnect_1006(serve):
    early_sent = Signal("the client's message and END_STREAM")
    received = Signal("what the app received after accepting")

    async def app(scope, receive, send):
        await receive()
        await early_sent.wait()
        await send({"type": "websocket.accept"})
        messages = []
        try:
            while (message := await asyncio.wait_for(receive(), 5))["type"] != "websocket.disconnect":
                messages.append(message)
            messages.append(message)
        finally:
            received.set(messages)

    running = serve_ws(serve, app, ws_ping_interval=0)

    async def scenario():
        async with await connect(running) as conn:
            await conn.wait_settings()
            stream, _ = conn.start_websocket("/")
            ws = H2WebSocket(stream, subprotocol=None, extensions=[], auto_pong=False)
            # "hi", then our side of the stream ends: the client can never send again.
            await stream.send(ws.ws.send(TextMessage(data="hi")), end_stream=True)
            await conn.ping()  # the server has both, and the app has not accepted yet
            assert stream.status is None
            early_sent.set()
            await stream.wait_response()
            assert stream.status == 200
            # No Close frame can answer (1006 is never sent): the server just ends its side.
            await stream.wait_finished()
            assert stream.ended_cleanly
            assert await stream.read_all() == b""
            assert await received.wait() == [
                {"type": "websocket.receive", "text": "hi"},
                {"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    run(scenario())


def test_access_log_has_a_connect_line_at_accept_and_a_close_line_per_websocket(serve, access_lines):
    running = serve_ws(serve, echo_app(), access_log=True, ws_ping_interval=0)

    async def scenario():
        async with await connect(running) as conn:
            ws = await conn.websocket("/chat?room=1")
            # Logged as it is accepted: before any message, while the WebSocket is open.
            lines = access_lines()
            assert len(lines) == 1 and '"CONNECT /chat?room=1 HTTP/2" 200' in lines[0], lines
            await ws.send_text("x")
            assert await ws.receive() == "x"

            reset = await conn.websocket("/reset")
            assert len(access_lines()) == 2 and '"CONNECT /reset HTTP/2" 200' in access_lines()[1]
            reset.reset(ErrorCodes.CANCEL)

            await ws.close()
            await ws.wait_closed()
            await conn.ping()  # the server has dealt with both ends
    run(scenario())
    # Each end adds its closing line: the close code (1006 for the reset: no close handshake).
    closes = access_lines()[2:]
    assert len(closes) == 2, access_lines()
    assert any('"CONNECT /reset HTTP/2" 200 ' in line and line.endswith(" websocket-close 1006") for line in closes)
    assert any('"CONNECT /chat?room=1 HTTP/2" 200 ' in line and line.endswith(" websocket-close 1000")
               for line in closes)
