"""--limit-concurrency: requests beyond N in flight in the process get 503 with Retry-After, over
HTTP/1.1, HTTP/2 and for WebSocket handshakes, without reaching the app; the server stays
responsive and admits again once a request in flight ends.

Requests are held in flight by an app waiting on a gate the test opens; the test waits on the
app's own report that N requests have entered, never on time.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from conftest import connect
from h2client import H2Client
from h2wsclient import H2WSConnection
from rawhttp import Reader
from test_http1 import assert_closed
from test_robustness import Gate

HOST = b"Host: 127.0.0.1\r\n"


class Holder:
    """An app whose `/hold` requests (and WebSockets) wait on a gate; counts what reached it."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.entered: list[str] = []
        self._changed = threading.Condition()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        with self._changed:
            self.entered.append(scope["path"])
            self._changed.notify_all()
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await self.gate.wait()
            await send({"type": "websocket.close"})
            return
        if scope["path"] == "/hold":
            await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def wait_entered(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.entered) >= count, 10), self.entered


def hold_http1(running, count: int, holder: Holder) -> list:
    """`count` requests in flight, each on its own connection (the limit is per process)."""
    socks = []
    for _ in range(count):
        sock = connect(running, timeout=10)
        sock.sendall(b"GET /hold HTTP/1.1\r\n" + HOST + b"\r\n")
        socks.append(sock)
    holder.wait_entered(count)
    return socks


def test_http1_request_over_the_limit_gets_503_with_retry_after_and_the_server_stays_responsive(serve):
    holder = Holder()
    running = serve(holder, limit_concurrency=2)
    held = hold_http1(running, 2, holder)
    with connect(running, timeout=10) as sock:
        reader = Reader(sock)
        for _ in range(2):  # the connection stays open after a 503 to a bodiless request
            sock.sendall(b"GET /other HTTP/1.1\r\n" + HOST + b"\r\n")
            response = reader.response()
            assert response.status == 503
            assert response.header(b"retry-after") == b"1"
            assert response.header(b"date") is not None  # a head like any other
            assert b"retry later" in response.body
        assert holder.entered == ["/hold", "/hold"]  # the refused requests never reached the app
        assert running.server.counters.limit_hits == {"concurrency": 2}
        holder.gate.open(running)
        for sock_held in held:
            assert Reader(sock_held).response().status == 200
            sock_held.close()
        # Both slots are free again: the same connection is admitted.
        sock.sendall(b"GET /other HTTP/1.1\r\n" + HOST + b"\r\n")
        response = reader.response()
        assert (response.status, response.body) == (200, b"ok")


def test_http1_refused_request_with_a_body_closes_its_connection(serve):
    holder = Holder()
    running = serve(holder, limit_concurrency=1)
    held = hold_http1(running, 1, holder)
    with connect(running, timeout=10) as sock:
        # The body is not read: the connection cannot carry another request after the 503.
        sock.sendall(b"POST /upload HTTP/1.1\r\n" + HOST + b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 503 and response.header(b"connection") == b"close"
        assert_closed(reader)
    holder.gate.open(running)
    assert Reader(held[0]).response().status == 200
    held[0].close()


def test_http2_stream_over_the_limit_gets_503_and_the_connection_goes_on(serve):
    holder = Holder()
    running = serve(holder, limit_concurrency=2)
    client = H2Client(running.port)
    first, second = client.request(path="/hold"), client.request(path="/hold")
    holder.wait_entered(2)
    refused = client.request(path="/other")
    client.wait_for(lambda: client.responses[refused]["ended"])
    response = client.responses[refused]
    assert response["status"] == 503 and response["reset"] is None  # a response, not REFUSED_STREAM
    assert dict(response["headers"])[b"retry-after"] == b"1"
    assert b"retry later" in bytes(response["body"])
    # Counted across the whole process: an HTTP/1.1 request is refused too.
    with connect(running, timeout=10) as sock:
        sock.sendall(b"GET /other HTTP/1.1\r\n" + HOST + b"\r\n")
        assert Reader(sock).response().status == 503
    assert running.server.counters.limit_hits == {"concurrency": 2}
    holder.gate.open(running)
    client.wait_for(lambda: client.responses[first]["ended"] and client.responses[second]["ended"])
    again = client.request(path="/other")
    client.wait_for(lambda: client.responses[again]["ended"])
    assert client.responses[again]["status"] == 200
    assert holder.entered == ["/hold", "/hold", "/other"]


def test_an_open_websocket_holds_a_slot_and_a_websocket_over_the_limit_is_denied_with_503(serve):
    holder = Holder()
    running = serve(holder, limit_concurrency=1)

    async def scenario() -> None:
        async with ws_connect(f"ws://127.0.0.1:{running.port}/ws", open_timeout=10) as ws:
            holder.wait_entered(1)
            # The WebSocket is in flight for as long as it is open.
            async with httpx.AsyncClient() as client:
                assert (await client.get(running.url + "/other")).status_code == 503
            with pytest.raises(InvalidStatus) as caught:
                async with ws_connect(f"ws://127.0.0.1:{running.port}/ws", open_timeout=10):
                    pass
            assert caught.value.response.status_code == 503
            assert caught.value.response.headers["retry-after"] == "1"
            # Over HTTP/2 (RFC 8441), the extended CONNECT is answered 503 as well.
            conn = await H2WSConnection.open(running.port)
            async with conn:
                denied = await conn.websocket("/ws")
                assert denied.status == 503
                assert denied.header(b"retry-after") == b"1"
            holder.gate.open(running)
            await ws.wait_closed()
        async with httpx.AsyncClient() as client:
            assert (await client.get(running.url + "/other")).status_code == 200

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert holder.entered == ["/ws", "/other"]
    assert running.server.counters.limit_hits == {"concurrency": 3}


def test_without_the_limit_nothing_is_refused(serve):
    holder = Holder()
    running = serve(holder)
    held = hold_http1(running, 20, holder)
    assert httpx.get(running.url + "/other").status_code == 200
    holder.gate.open(running)
    for sock in held:
        assert Reader(sock).response().status == 200
        sock.close()
    assert running.server.counters.limit_hits == {}
