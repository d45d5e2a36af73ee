"""HTTP/1.1 without sockets: an HTTP1Protocol fed bytes through a fake transport, its keep-alive
timer fired by hand, the bytes it writes read back with h11 as a client would."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from conftest import HTTP1_PARSER
from fakes import FakeTransport, ManualTimers
from plexicorn import Config
from plexicorn.http1.connection import HTTP1Protocol
from plexicorn.runtime.context import ServerContext


async def echo_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode() + b" " + body})


class Server:
    def __init__(self, **config: Any) -> None:
        self.runtime = ManualTimers()
        context = ServerContext(app=echo_path, config=Config(access_log=False, http1_parser=HTTP1_PARSER, **config), runtime=self.runtime)
        self.protocol = HTTP1Protocol(context)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)
        self.client = h11.Connection(h11.CLIENT)

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    async def settle(self) -> None:
        for _ in range(100):  # app tasks, one pipelined request per turn, the outbox's flushes
            await asyncio.sleep(0)

    def responses(self) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        """Every complete response written so far, parsed by an h11 client."""
        self.client.receive_data(bytes(self.transport.written))
        self.transport.written.clear()
        found, head, body = [], None, b""
        while True:
            event = self.client.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                if event is h11.PAUSED and self.client.our_state is h11.DONE:
                    self.client.start_next_cycle()
                    continue
                return found
            if isinstance(event, h11.Response):
                head, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                found.append((head.status_code, dict(head.headers), body))

    def request(self, target: bytes, body: bytes = b"") -> bytes:
        headers = [(b"host", b"localhost")] + ([(b"content-length", str(len(body)).encode())] if body else [])
        data = self.client.send(h11.Request(method="POST" if body else "GET", target=target, headers=headers))
        if body:
            data += self.client.send(h11.Data(data=body))
        return data + self.client.send(h11.EndOfMessage())


def test_a_request_is_answered_and_the_connection_kept_alive():
    async def scenario() -> None:
        server = Server()
        server.send(server.request(b"/one", b"hello"))
        await server.settle()
        ((status, headers, body),) = server.responses()
        assert (status, body) == (200, b"/one hello")
        assert b"date" in headers and headers.get(b"connection") != b"close"
        assert not server.transport.closed
    asyncio.run(scenario())


def test_pipelined_requests_are_answered_in_order():
    async def scenario() -> None:
        server = Server()
        # Three requests in one read, written by a client that does not wait for answers.
        wire = b"".join(b"GET /%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % n for n in range(3))
        server.send(wire)
        await server.settle()
        # h11's client cannot pipeline, so the three responses are split by hand.
        written = bytes(server.transport.written)
        assert written.count(b"HTTP/1.1 200 ") == 3
        parts = written.split(b"HTTP/1.1 ")[1:]
        assert [b"\r\n/%d \r\n" % n in part for n, part in enumerate(parts)] == [True] * 3  # chunked bodies
    asyncio.run(scenario())


def test_a_malformed_request_gets_400_in_words_and_the_connection_closes():
    async def scenario() -> None:
        server = Server()
        server.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nbad header\r\n\r\n")
        await server.settle()
        written = bytes(server.transport.written)
        assert written.startswith(b"HTTP/1.1 400 ")
        assert b"bytearray" not in written and b"b'" not in written  # a reason in words, no repr
        assert server.transport.closed
    asyncio.run(scenario())


def test_the_keep_alive_timer_closes_an_idle_connection():
    async def scenario() -> None:
        server = Server(keep_alive_timeout=7.0)
        server.send(server.request(b"/"))
        await server.settle()
        assert len(server.responses()) == 1 and not server.transport.closed
        server.runtime.fire(7.0)  # the keep-alive timeout, fired by hand
        await server.settle()
        assert server.transport.closed
    asyncio.run(scenario())


def test_the_keep_alive_timeout_counts_from_the_last_response_with_one_timer():
    async def scenario() -> None:
        server = Server(keep_alive_timeout=7.0)
        server.send(server.request(b"/first"))
        await server.settle()
        assert len(server.responses()) == 1
        server.runtime.now = 4.0  # the second request comes 4 s later
        server.client.start_next_cycle()
        server.send(server.request(b"/second"))
        await server.settle()
        assert len(server.responses()) == 1
        assert len([timer for timer in server.runtime.timers if not timer.cancelled]) == 1
        server.runtime.fire(7.0)  # armed at 0 s: early for a connection idle since 4 s
        await server.settle()
        assert not server.transport.closed
        server.runtime.fire(4.0)  # the rest: 7 s after the last response (at 11 s)
        await server.settle()
        assert server.transport.closed
    asyncio.run(scenario())


class ReadingTransport(FakeTransport):
    """A fake transport that records whether the protocol lets it read."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def test_reading_resumes_after_a_response_to_a_body_the_app_left_unread():
    # A whole body over the read high-water mark stops reading while the app ignores it; the
    # response ends the exchange, and the connection must read the next request again.
    async def scenario() -> None:
        async def ignore_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await asyncio.sleep(0)  # answers on a later loop turn (else, started eagerly, at once)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        server = Server()
        server.protocol.context.app = ignore_body
        transport = ReadingTransport()
        server.protocol.connection_made(transport)
        server.transport = transport
        server.send(server.request(b"/", bytes(200 * 1024)))
        assert not transport.reading
        await server.settle()
        assert [status for status, _, _ in server.responses()] == [200]
        assert transport.reading and not transport.closed
        server.client.start_next_cycle()
        server.send(server.request(b"/again"))
        await server.settle()
        assert [status for status, _, _ in server.responses()] == [200]
    asyncio.run(scenario())
