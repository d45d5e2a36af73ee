"""WebSockets over HTTP/1.1 (RFC 6455) with ASGI: the `websockets` library as the real client, raw
sockets where a client has to misbehave (malformed handshakes, pings left unanswered, dropped
connections)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import random
import select
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.http11 import Response

from conftest import RunningServer, connect
from rawhttp import Reader

MiB = 1024 * 1024
TIMEOUT = 5.0  # generous upper bound on any single wait; the tests themselves take well under 2 s
KEY = base64.b64encode(b"0123456789abcdef")  # a valid Sec-WebSocket-Key: 16 bytes in base64
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


# -- helpers ---------------------------------------------------------------------------------------

def start(serve: Callable[..., RunningServer], app: Any, **config: Any) -> RunningServer:
    # No lifespan: these apps only speak websocket and http.
    return serve(app, lifespan="off", **config)


def run(coroutine: Awaitable[Any]) -> Any:
    """Run a client coroutine on the test's own loop, bounded so a hang fails instead of stalling."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, TIMEOUT)
    return asyncio.run(bounded())


def client(running: RunningServer, path: str = "/", **options: Any) -> ws_connect:
    options.setdefault("proxy", None)  # never route the test through an environment proxy
    options.setdefault("open_timeout", TIMEOUT)
    options.setdefault("close_timeout", TIMEOUT)
    return ws_connect(f"ws://127.0.0.1:{running.port}{path}", **options)


def answer(ws: ClientConnection) -> Response:
    """The server's handshake response, as the client received it."""
    assert ws.response is not None
    return ws.response


class Outcome:
    """A value set on the server's thread (by the app) and awaited on the test's thread."""

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def set(self, value: Any) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float = TIMEOUT) -> Any:
        return self._future.result(timeout)

    async def wait(self, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(self._future), timeout)


class Seen:
    """What an app saw: its scope, the messages it received and the disconnect that ended it."""

    def __init__(self) -> None:
        self.scope = Outcome()
        self.messages: list[dict[str, Any]] = []
        self.disconnect = Outcome()
        self.websocket_calls = 0


async def plain_http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"plain"})


def echo_app(seen: Seen, **accept: Any) -> Callable[..., Awaitable[None]]:
    """Accepts (with `accept` in websocket.accept), echoes every message, records the disconnect."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await plain_http(scope, receive, send)
            return
        seen.websocket_calls += 1
        seen.scope.set(scope)
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", **accept})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.disconnect.set(message)
                return
            seen.messages.append(message)
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    return app


def handshake(path: str = "/", *, method: bytes = b"GET", replace: dict[bytes, bytes | None] | None = None,
              extra: bytes = b"") -> bytes:
    """An HTTP/1.1 WebSocket opening handshake; `replace` changes or (with None) drops fields."""
    fields: dict[bytes, bytes | None] = {
        b"Host": b"127.0.0.1",
        b"Upgrade": b"websocket",
        b"Connection": b"Upgrade",
        b"Sec-WebSocket-Key": KEY,
        b"Sec-WebSocket-Version": b"13",
    }
    fields.update(replace or {})
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in fields.items() if value is not None)
    return method + b" " + path.encode() + b" HTTP/1.1\r\n" + lines + extra + b"\r\n"


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A masked frame, as clients must send (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    # XOR as one big integer: per-byte Python is too slow for the megabytes some tests send.
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
    return head + mask + masked


class FrameReader(Reader):
    """Reads HTTP/1.1 responses and (unmasked, uncompressed) server frames off a raw socket."""

    def frame(self) -> tuple[int, bytes]:
        first, second = self.exact(2)
        assert not second & 0x80, "server frames must not be masked"
        assert first & 0x80, "this reader expects unfragmented control frames and messages"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self.exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.exact(8))[0]
        return first & 0x0F, self.exact(size)

    def closed(self) -> bool:
        """Whether the server ends the connection now (nothing more than already buffered arrives)."""
        try:
            self._fill()
        except EOFError:
            return True
        return False


def open_raw(running: RunningServer, path: str = "/") -> tuple[socket.socket, FrameReader]:
    """A raw client that did the opening handshake (no extensions, so frames are plain)."""
    sock = connect(running, timeout=TIMEOUT)
    sock.sendall(handshake(path))
    reader = FrameReader(sock)
    response = reader.response()
    assert response.status == 101
    assert response.header(b"sec-websocket-accept") == base64.b64encode(hashlib.sha1(KEY + GUID).digest())
    return sock, reader


def close_payload(payload: bytes) -> tuple[int, str]:
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


# -- messages --------------------------------------------------------------------------------------

def test_text_and_binary_messages_are_echoed_with_their_type(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))

    async def main() -> None:
        async with client(running) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
    run(main())
    assert seen.messages == [{"type": "websocket.receive", "text": "héllo"},
                             {"type": "websocket.receive", "bytes": b"\x00\x01\xff"}]


def test_16mib_message_is_echoed_intact(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))  # the default limit is 16 MiB: exactly that is allowed
    payload = random.Random(16).randbytes(16 * MiB)

    async def main() -> None:
        # Without compression: random bytes do not compress, deflating them would only cost time.
        async with client(running, max_size=None, compression=None) as ws:
            await ws.send(payload)
            echoed = await ws.recv()
            assert len(echoed) == len(payload) and echoed == payload
    run(main())


def test_fragmented_message_is_delivered_to_the_app_whole(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))

    async def main() -> None:
        async with client(running) as ws:
            await ws.send(["frag", "men", "ted"])  # websockets sends an iterable as continuation frames
            assert await ws.recv() == "fragmented"
            await ws.send([b"\x01", b"\x02\x03", b"\x04"])
            assert await ws.recv() == b"\x01\x02\x03\x04"
    run(main())
    assert seen.messages == [{"type": "websocket.receive", "text": "fragmented"},
                             {"type": "websocket.receive", "bytes": b"\x01\x02\x03\x04"}]


def test_fragmented_message_from_a_raw_client_is_delivered_whole(serve):
    # Independent of how websockets fragments: three frames on the wire, one ASGI message.
    seen = Seen()
    running = start(serve, echo_app(seen))
    sock, reader = open_raw(running)
    with sock:
        sock.sendall(client_frame(OP_TEXT, b"ab", fin=False) + client_frame(0x0, b"cd", fin=False)
                     + client_frame(0x0, b"ef"))
        assert reader.frame() == (OP_TEXT, b"abcdef")
    assert seen.messages == [{"type": "websocket.receive", "text": "abcdef"}]


# -- scope -----------------------------------------------------------------------------------------

def test_scope_describes_the_websocket_request(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))

    async def main() -> None:
        async with client(running, "/chat/room%201?x=1&y=2", subprotocols=["chat.v1", "chat.v2"],
                          additional_headers={"X-Test": "abc"}):
            pass
    run(main())
    scope = seen.scope.result()
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/room 1"
    assert scope["raw_path"] == b"/chat/room%201"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    headers = scope["headers"]
    assert all(name == name.lower() and isinstance(value, bytes) for name, value in headers)
    assert (b"x-test", b"abc") in headers
    assert (b"upgrade", b"websocket") in headers
    assert (b"host", f"127.0.0.1:{running.port}".encode()) in headers
    assert scope["client"][0] == "127.0.0.1"
    assert tuple(scope["server"]) == ("127.0.0.1", running.port)
    assert "websocket.http.response" in scope["extensions"]
    assert "tls" not in scope["extensions"]


def test_scope_scheme_is_wss_over_tls_and_echo_works(serve, client_ssl_context):
    seen = Seen()
    running = start(serve, echo_app(seen), tls=True)

    async def main() -> None:
        # Only http/1.1 in ALPN: websockets speaks HTTP/1.1 whatever the server would pick.
        async with ws_connect(f"wss://localhost:{running.port}/secure", ssl=client_ssl_context(("http/1.1",)),
                              proxy=None, open_timeout=TIMEOUT) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
    run(main())
    scope = seen.scope.result()
    assert scope["scheme"] == "wss"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/secure"
    assert "tls" in scope["extensions"]


# -- handshake answer ------------------------------------------------------------------------------

def test_accept_headers_from_the_app_reach_the_client(serve):
    running = start(serve, echo_app(Seen(), headers=[(b"x-server", b"plexicorn"), (b"set-cookie", b"a=1")]))

    async def main() -> None:
        async with client(running) as ws:
            assert answer(ws).status_code == 101
            assert answer(ws).headers["x-server"] == "plexicorn"
            assert answer(ws).headers["set-cookie"] == "a=1"
    run(main())


def test_subprotocol_chosen_by_the_app_is_selected(serve):
    running = start(serve, echo_app(Seen(), subprotocol="chat.v2"))

    async def main() -> None:
        async with client(running, subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert answer(ws).headers["sec-websocket-protocol"] == "chat.v2"
    run(main())


def test_no_subprotocol_is_selected_when_the_app_names_none(serve):
    running = start(serve, echo_app(Seen()))

    async def main() -> None:
        async with client(running, subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol is None
            assert "sec-websocket-protocol" not in answer(ws).headers
    run(main())


def test_subprotocol_the_client_did_not_offer_is_an_app_error_answered_with_500(serve):
    running = start(serve, echo_app(Seen(), subprotocol="other"))

    async def main() -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with client(running, subprotocols=["chat.v1"]):
                pass
        assert caught.value.response.status_code == 500
    run(main())


def test_permessage_deflate_is_negotiated_when_the_client_offers_it(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))
    text = "compressible " * 5000

    async def main() -> None:
        async with client(running) as ws:  # websockets offers permessage-deflate by default
            assert answer(ws).headers["sec-websocket-extensions"].startswith("permessage-deflate")
            assert [type(extension) for extension in ws.protocol.extensions] == [PerMessageDeflate]
            await ws.send(text)  # compressed both ways, so both directions of the codec are exercised
            assert await ws.recv() == text
    run(main())
    assert seen.messages == [{"type": "websocket.receive", "text": text}]


def test_permessage_deflate_is_not_negotiated_when_the_client_disables_compression(serve):
    running = start(serve, echo_app(Seen()))

    async def main() -> None:
        async with client(running, compression=None) as ws:
            assert "sec-websocket-extensions" not in answer(ws).headers
            assert ws.protocol.extensions == []
            await ws.send("plain")
            assert await ws.recv() == "plain"
    run(main())


# -- closing ---------------------------------------------------------------------------------------

def test_client_close_code_and_reason_reach_the_app_and_are_echoed(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))

    async def main() -> None:
        ws = await client(running)
        await ws.close(4001, "bye")
        echoed = ws.protocol.close_rcvd
        assert echoed is not None and echoed.code == 4001  # the server echoes the code
        assert await seen.disconnect.wait() == {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}
    run(main())


def test_app_close_code_and_reason_reach_the_client(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})

    running = start(serve, app)

    async def main() -> None:
        async with client(running) as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4002, "done")
            # The client answered the Close; the server then ends the TCP connection.
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    run(main())


# RFC 6455 §7.4: 1004 is reserved, 1005, 1006 and 1015 must never be sent, 1016-2999 are
# unassigned (2000 stands for them), and a code is two bytes at most.
@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 2000, 70000])
def test_app_close_with_a_code_it_may_not_send_is_an_app_error_closed_with_1011(serve, code):
    raised = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code})
        except Exception as exc:
            raised.set(exc)
            raise

    running = start(serve, app)

    async def main() -> None:
        async with client(running) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1011
    run(main())
    assert f"invalid websocket.close code {code}" in str(raised.result())


def test_app_close_ends_the_tcp_connection_after_the_clients_close_answer(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})

    running = start(serve, app)
    sock, reader = open_raw(running)
    with sock:
        opcode, payload = reader.frame()
        assert (opcode, close_payload(payload)) == (OP_CLOSE, (4002, "done"))
        sock.sendall(client_frame(OP_CLOSE, struct.pack("!H", 4002)))
        assert reader.closed() and not reader.buffer


def test_close_before_accept_is_answered_with_403(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    running = start(serve, app)

    async def main() -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with client(running):
                pass
        assert caught.value.response.status_code == 403
        assert caught.value.response.body == b""
    run(main())


def test_denial_response_reaches_the_client_with_its_status_and_body(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"away"})

    running = start(serve, app)

    async def main() -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with client(running):
                pass
        response = caught.value.response
        assert response.status_code == 403
        assert response.headers["x-denied"] == "yes"
        assert response.body == b"go away"
    run(main())


def test_keep_alive_connection_serves_the_next_request_after_a_denial(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await plain_http(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-length", b"6")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})

    running = start(serve, app)
    with connect(running, timeout=TIMEOUT) as sock:
        reader = Reader(sock)
        sock.sendall(handshake())
        response = reader.response()
        assert (response.status, response.body) == (403, b"denied")
        assert (response.header(b"connection") or b"").lower() != b"close"
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = reader.response()
        assert (response.status, response.body) == (200, b"plain")


def test_app_returning_after_accept_closes_with_1000(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    running = start(serve, app)

    async def main() -> None:
        async with client(running) as ws:
            with pytest.raises(ConnectionClosedOK) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1000
    run(main())


def test_app_raising_after_accept_closes_with_1011(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom (expected by the test)")

    running = start(serve, app)

    async def main() -> None:
        async with client(running) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1011
    run(main())


def test_app_raising_before_accept_is_answered_with_500(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("boom (expected by the test)")

    running = start(serve, app)

    async def main() -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with client(running):
                pass
        assert caught.value.response.status_code == 500
    run(main())


def test_connection_dropped_without_close_gives_the_app_disconnect_1006(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))
    sock, reader = open_raw(running)
    sock.sendall(client_frame(OP_TEXT, b"hi"))
    assert reader.frame() == (OP_TEXT, b"hi")  # the app is running and accepted
    sock.close()  # no Close frame
    assert seen.disconnect.result()["code"] == 1006


def test_send_after_the_client_is_gone_raises_an_oserror_in_the_app(serve):
    sent_after_drop = Outcome()
    dropped = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        dropped.set(await receive())
        try:
            await send({"type": "websocket.send", "text": "anyone there?"})
        except OSError as error:
            sent_after_drop.set(error)
        else:
            sent_after_drop.set(None)

    running = start(serve, app)
    sock, _ = open_raw(running)
    sock.close()
    assert dropped.result()["type"] == "websocket.disconnect"
    assert isinstance(sent_after_drop.result(), OSError)


def test_message_over_max_message_size_closes_with_1009(serve):
    seen = Seen()
    running = start(serve, echo_app(seen), ws_max_message_size=1024)

    async def main() -> None:
        async with client(running, compression=None) as ws:
            await ws.send(b"x" * 1024)  # exactly the limit is allowed
            assert await ws.recv() == b"x" * 1024
            await ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
        assert (await seen.disconnect.wait())["code"] == 1009
    run(main())
    assert seen.messages == [{"type": "websocket.receive", "bytes": b"x" * 1024}]


def test_compressed_message_over_max_message_size_closes_with_1009(serve):
    # The limit applies to the message, not its deflated size on the wire (no decompression bombs).
    seen = Seen()
    running = start(serve, echo_app(seen), ws_max_message_size=1024)

    async def main() -> None:
        async with client(running) as ws:
            assert ws.protocol.extensions, "permessage-deflate must be in use for this test"
            await ws.send("a" * 4096)  # deflates to a few bytes
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
        assert (await seen.disconnect.wait())["code"] == 1009
    run(main())
    assert seen.messages == []


def test_fragmented_message_over_max_message_size_closes_with_1009(serve):
    # Each fragment is small; only their sum is over the limit.
    seen = Seen()
    running = start(serve, echo_app(seen), ws_max_message_size=1024)

    async def main() -> None:
        async with client(running, compression=None) as ws:
            await ws.send([b"y" * 600, b"y" * 600])
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
        assert (await seen.disconnect.wait())["code"] == 1009
    run(main())
    assert seen.messages == []


# -- keep-alive pings ------------------------------------------------------------------------------

def test_client_that_never_answers_pings_is_closed_with_1011(serve):
    seen = Seen()
    running = start(serve, echo_app(seen), ws_ping_interval=0.2, ws_ping_timeout=0.3)
    sock, reader = open_raw(running)
    with sock:
        # This client only reads: it sees the ping, ignores it, and gets the Close once it is overdue.
        opcode, _ = reader.frame()
        assert opcode == OP_PING
        opcode, payload = reader.frame()
        assert opcode == OP_CLOSE
        assert close_payload(payload)[0] == 1011
        assert reader.closed() and not reader.buffer  # and the server drops the connection
    assert seen.disconnect.result()["code"] == 1011


def test_server_pings_answered_by_the_client_keep_the_websocket_open(serve):
    seen = Seen()
    # A timeout ten times the interval: one stall (client and server share the GIL) must not
    # make a pong late. Pings are answered for longer than the timeout plus an interval, so a
    # server that ignored the pongs would have closed with 1011 by then.
    running = start(serve, echo_app(seen), ws_ping_interval=0.1, ws_ping_timeout=1.0)
    sock, reader = open_raw(running)
    with sock:
        pings = []
        started = time.monotonic()
        while len(pings) < 5 or time.monotonic() - started < 1.5:
            opcode, payload = reader.frame()
            assert opcode == OP_PING
            pings.append(payload)
            sock.sendall(client_frame(OP_PONG, payload))
        assert len(set(pings)) == len(pings)  # each ping is told apart from the last one's late pong
        sock.sendall(client_frame(OP_TEXT, b"still here"))
        while (frame := reader.frame())[0] == OP_PING:
            sock.sendall(client_frame(OP_PONG, frame[1]))
        assert frame == (OP_TEXT, b"still here")
        assert not seen.disconnect.done()


def test_no_pings_are_sent_when_the_ping_interval_is_zero(serve):
    running = start(serve, echo_app(Seen()), ws_ping_interval=0, ws_ping_timeout=0.1)
    sock, reader = open_raw(running)
    with sock:
        # Waiting a bounded time for a ping that must NOT come: 3 ping timeouts' worth.
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            reader.frame()
        sock.settimeout(TIMEOUT)
        sock.sendall(client_frame(OP_TEXT, b"alive"))
        assert reader.frame() == (OP_TEXT, b"alive")


# -- malformed handshakes --------------------------------------------------------------------------

BAD_HANDSHAKES = {
    "missing-key": handshake(replace={b"Sec-WebSocket-Key": None}),
    "key-not-base64": handshake(replace={b"Sec-WebSocket-Key": b"not base64 at all!!"}),
    "key-of-15-bytes": handshake(replace={b"Sec-WebSocket-Key": base64.b64encode(b"x" * 15)}),
    "two-keys": handshake(extra=b"Sec-WebSocket-Key: " + KEY + b"\r\n"),
    "version-8": handshake(replace={b"Sec-WebSocket-Version": b"8"}),
    "missing-version": handshake(replace={b"Sec-WebSocket-Version": None}),
    "method-post": handshake(method=b"POST", extra=b"Content-Length: 0\r\n"),
}


@pytest.mark.parametrize("request_bytes", BAD_HANDSHAKES.values(), ids=BAD_HANDSHAKES.keys())
def test_bad_handshake_is_answered_with_400_and_a_reason_and_the_connection_closes(serve, request_bytes):
    seen = Seen()
    running = start(serve, echo_app(seen))
    with connect(running, timeout=TIMEOUT) as sock:
        sock.sendall(request_bytes)
        reader = FrameReader(sock)
        response = reader.response()
        body = response.body
        assert response.status == 400
        assert (response.header(b"content-type") or b"").startswith(b"text/plain")
        assert body.startswith(b"Bad Request: ") and body.endswith(b"\n") and len(body) > len(b"Bad Request: \n")
        if b"Version: 8" in request_bytes or b"Version" not in request_bytes:
            assert response.header(b"sec-websocket-version") == b"13"
        assert reader.closed() and not reader.buffer
    assert seen.websocket_calls == 0  # the app never saw the bad handshake


def test_ordinary_http_request_works_after_a_bad_handshake(serve):
    running = start(serve, echo_app(Seen()))
    with connect(running, timeout=TIMEOUT) as sock:
        sock.sendall(BAD_HANDSHAKES["version-8"])
        assert Reader(sock).response().status == 400
    with connect(running, timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = Reader(sock).response()
        assert (response.status, response.body) == (200, b"plain")


# -- shutdown --------------------------------------------------------------------------------------

def test_server_shutdown_closes_open_websockets_with_1012(serve):
    seen = Seen()
    running = start(serve, echo_app(seen))

    async def main() -> None:
        async with client(running) as ws:
            await ws.send("up")
            assert await ws.recv() == "up"  # accepted and running
            running.server.request_shutdown()
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1012
        assert (await seen.disconnect.wait())["type"] == "websocket.disconnect"
    run(main())


# -- flow control, close deadline, shutdown and departed clients -----------------------------------

def send_until_held(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """Send 64 KiB binary messages until the server stops reading (nothing taken for 0.3 s).

    Returns the unsent rest of the last frame and the messages begun; the socket is left
    blocking with the usual timeout.
    """
    # A fixed send buffer keeps the client's kernel share of the backlog the same on every host;
    # the rest is the server's receive buffer and what it queued for the app.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.setblocking(False)
    payloads: list[bytes] = []  # each 64 KiB message is its index, repeated: order shows
    frame, offset, sent = b"", 0, 0
    while sent < 16 * MiB:
        if offset == len(frame):
            payloads.append(struct.pack("!I", len(payloads)) * (64 * 1024 // 4))
            frame, offset = client_frame(OP_BINARY, payloads[-1]), 0
        try:
            taken = sock.send(frame[offset:])
        except BlockingIOError:
            if not select.select([], [sock], [], 0.3)[1]:
                break  # nothing taken for 0.3 s: the server stopped reading
            continue
        offset += taken
        sent += taken
    assert sent < 8 * MiB, f"the client was never held back: {sent} bytes taken"
    sock.settimeout(TIMEOUT)
    return frame[offset:], payloads


def test_app_closing_while_input_is_held_back_ends_at_the_clients_close_answer(serve):
    close_now = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await close_now.wait()  # never receives what the client sent
        await send({"type": "websocket.close", "code": 1000})

    running = start(serve, app, ws_ping_interval=0, ws_ping_timeout=30)
    sock, reader = open_raw(running)
    with sock:
        rest, _ = send_until_held(sock)
        close_now.set(None)
        opcode, payload = reader.frame()
        assert (opcode, close_payload(payload)) == (OP_CLOSE, (1000, ""))
        sock.sendall(rest + client_frame(OP_CLOSE, struct.pack("!H", 1000)))
        # Read again once closing, the server finds the answer behind the held input and ends at
        # once; held back, it would wait for the 30 s close deadline (past this socket's timeout).
        assert reader.closed() and not reader.buffer


def test_no_ping_timeout_while_input_is_held_back_from_a_slow_app(serve):
    seen = Seen()
    go = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while (message := await receive())["type"] != "websocket.disconnect":
            seen.messages.append(message)
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
        seen.disconnect.set(message)

    # The first ping is due 0.5 s in, after the flood has held the input back (a ping sent while
    # the server still read would be waiting for us below and fail the test spuriously).
    running = start(serve, app, ws_ping_interval=0.5, ws_ping_timeout=0.3)
    sock, reader = open_raw(running)
    with sock:
        rest, payloads = send_until_held(sock)
        # Bounded wait for what must NOT come: while it is not reading, the server cannot see pongs,
        # so it must not drop the client for missing ones (over 2 ping intervals + timeouts).
        sock.settimeout(2.0)
        with pytest.raises(socket.timeout):
            reader.frame()
        sock.settimeout(TIMEOUT)
        go.set(None)
        sock.sendall(rest + client_frame(OP_TEXT, b"still here"))
        while (frame := reader.frame())[0] == OP_PING:  # pings resume once input flows
            sock.sendall(client_frame(OP_PONG, frame[1]))
        assert frame == (OP_TEXT, b"still here")
    assert len(seen.messages) == len(payloads) + 1


def test_app_that_does_not_receive_holds_the_client_back_then_gets_every_message_in_order(serve):
    seen = Seen()
    release = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()  # receives nothing until the client has been held back
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.disconnect.set(message)
                return
            seen.messages.append(message)

    running = start(serve, app, ws_ping_interval=0)
    sock, reader = open_raw(running)
    with sock:
        # A fixed send buffer keeps the client's kernel share of the backlog the same on every host;
        # the rest is the server's receive buffer and what it queued for the app.
        rest, payloads = send_until_held(sock)
        release.set(None)
        sock.sendall(rest + client_frame(OP_CLOSE, struct.pack("!H", 1000)))
        opcode, payload = reader.frame()
        assert (opcode, close_payload(payload)) == (OP_CLOSE, (1000, ""))
    assert seen.disconnect.result()["code"] == 1000
    received = [message.get("bytes") for message in seen.messages]
    assert len(received) == len(payloads)
    wrong = [index for index, (got, want) in enumerate(zip(received, payloads)) if got != want]
    assert not wrong, f"messages {wrong[:5]}... differ from what was sent"


def test_late_pong_after_the_servers_close_does_not_keep_the_websocket_open(serve):
    seen = Seen()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the client's cue: it holds a ping it has not answered
        await send({"type": "websocket.close", "code": 4000})
        seen.disconnect.set(await receive())

    # ws_ping_timeout is both the ping's deadline (our "close now" must beat it) and the close
    # deadline (our pong must arrive before it, or there is nothing left for the pong to spoil).
    running = start(serve, app, ws_ping_interval=0.1, ws_ping_timeout=2.0)
    sock, reader = open_raw(running)
    with sock:
        opcode, ping = reader.frame()
        assert opcode == OP_PING
        sock.sendall(client_frame(OP_TEXT, b"close now"))
        opcode, payload = reader.frame()
        assert (opcode, close_payload(payload)[0]) == (OP_CLOSE, 4000)
        # The pong for the ping sent before the Close comes in; the Close itself is never answered,
        # so the close deadline (ws_ping_timeout) must still end the WebSocket.
        sock.sendall(client_frame(OP_PONG, ping))
        sock.settimeout(10.0)
        try:
            closed = reader.closed()
        except TimeoutError:  # socket.timeout
            closed = False
        assert closed, "the WebSocket is still open 10 s after the server's Close (ws_ping_timeout is 2 s)"
        assert not reader.buffer
    assert seen.disconnect.result()["code"] == 1006  # no close handshake


def test_websocket_accepted_after_shutdown_began_is_closed_with_1012(serve):
    seen = Seen()
    connecting = Outcome()
    release = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await plain_http(scope, receive, send)
            return
        await receive()
        connecting.set(True)
        await release.wait()  # still deciding when the shutdown begins
        await send({"type": "websocket.accept"})
        seen.disconnect.set(await receive())

    running = start(serve, app, ws_ping_interval=0)
    with connect(running, timeout=TIMEOUT) as sock, connect(running, timeout=TIMEOUT) as bystander:
        sock.sendall(handshake())
        connecting.result()
        bystander_reader = FrameReader(bystander)
        bystander.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert bystander_reader.response().status == 200
        running.server.request_shutdown()
        # The idle keep-alive connection is closed in the same pass over the connections that
        # tells the pending WebSocket: once it ends, the shutdown has reached both.
        assert bystander_reader.closed()
        release.set(None)
        reader = FrameReader(sock)
        assert reader.response().status == 101
        opcode, payload = reader.frame()
        assert (opcode, close_payload(payload)[0]) == (OP_CLOSE, 1012)
        sock.sendall(client_frame(OP_CLOSE, payload[:2]))
        assert reader.closed() and not reader.buffer
    assert seen.disconnect.result()["code"] == 1012


def test_accept_after_the_client_left_raises_an_oserror_in_the_app(serve):
    connecting = Outcome()
    gone = Outcome()
    raised = Outcome()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        connecting.set(True)
        gone.set(await receive())  # the client leaves before the app answers its handshake
        try:
            await send({"type": "websocket.accept"})
        except BaseException as exc:
            raised.set(exc)
            raise
        raised.set(None)

    running = start(serve, app)
    with connect(running, timeout=TIMEOUT) as sock:
        sock.sendall(handshake())
        connecting.result()
    assert gone.result() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    # ASGI 2.4: an OSError (ClientDisconnected) the app may let through, not an app error.
    error = raised.result()
    assert isinstance(error, OSError), repr(error)


def test_ping_timeout_drops_a_client_that_stopped_reading_while_the_app_sends(serve):
    raised = Outcome()
    chunk = b"x" * MiB

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": chunk})
        except OSError as exc:
            raised.set(exc)

    running = start(serve, app, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    sock, reader = open_raw(running)
    with sock:
        # This client reads nothing more: the ping waits behind megabytes of messages, unanswered,
        # and the app's sends wait for room that never comes until the ping timeout.
        assert isinstance(raised.result(), OSError)
        # The server let go of the socket rather than wait for the client to read what is queued:
        # the client's next frame meets a reset instead of a connection still being drained.
        sock.sendall(client_frame(OP_TEXT, b"late"))
        with pytest.raises(ConnectionResetError):
            reader.until_closed()
