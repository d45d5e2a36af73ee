"""Every task waiting in receive() is woken: a disconnect reaches them all, and a receive()
that is cancelled (a timeout, anyio's is_disconnected check) leaves the others waiting."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from conftest import connect
from h2client import H2Client


class ConcurrentReceivers:
    """Reads the body, then waits in two receive() tasks while a third receive() is cancelled."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.results: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        tasks = [asyncio.ensure_future(receive()) for _ in range(2)]
        await asyncio.sleep(0)  # both wait now
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), 0.05)  # cancelled: must not take the others' wake-up
        self.waiting.set()
        try:
            messages = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        except asyncio.TimeoutError:
            self.results.append("not woken")
            return
        self.results += [message["type"] for message in messages]

    def wait_results(self) -> list[str]:
        deadline = time.monotonic() + 8
        while len(self.results) < 2 and "not woken" not in self.results and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.results


def test_http1_disconnect_wakes_every_waiting_receive(serve: Any) -> None:
    app = ConcurrentReceivers()
    running = serve(app, lifespan="off")
    sock = connect(running)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert app.waiting.wait(5)
    sock.close()
    assert app.wait_results() == ["http.disconnect", "http.disconnect"]


def test_http2_disconnect_wakes_every_waiting_receive(serve: Any) -> None:
    app = ConcurrentReceivers()
    running = serve(app, lifespan="off")
    client = H2Client(running.port)
    client.request("GET", "/")
    assert app.waiting.wait(5)
    client.close()
    assert app.wait_results() == ["http.disconnect", "http.disconnect"]


def test_http2_stream_reset_wakes_every_waiting_receive(serve: Any) -> None:
    app = ConcurrentReceivers()
    running = serve(app, lifespan="off")
    with H2Client(running.port) as client:
        stream_id = client.request("GET", "/")
        assert app.waiting.wait(5)
        client.reset(stream_id)
        assert app.wait_results() == ["http.disconnect", "http.disconnect"]


def test_websocket_disconnect_wakes_every_waiting_receive(serve: Any) -> None:
    results: list[str] = []
    waiting = threading.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        tasks = [asyncio.ensure_future(receive()) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), 0.05)
        waiting.set()
        try:
            results.extend(message["type"] for message in await asyncio.wait_for(asyncio.gather(*tasks), 5))
        except asyncio.TimeoutError:
            results.append("not woken")

    running = serve(app, lifespan="off")
    sock = connect(running)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    assert waiting.wait(5)
    sock.close()
    deadline = time.monotonic() + 8
    while not results and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    assert results == ["websocket.disconnect", "websocket.disconnect"]
