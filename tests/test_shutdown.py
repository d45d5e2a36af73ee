"""Graceful shutdown, in-process: idle connections go at once, in-flight requests finish."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from conftest import connect


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"done"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_shutdown_closes_idle_keep_alive_connections_and_lets_in_flight_requests_finish(serve):
    reached = threading.Event()
    release: list[asyncio.Event] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            release.append(asyncio.Event())
            reached.set()
            await release[0].wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    running = serve(app, keep_alive_timeout=60)  # idle connections would otherwise stay a minute
    with connect(running) as idle, connect(running) as busy:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle).endswith(b"done")  # served, now idle in keep-alive
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reached.wait(5)
        running.server.request_shutdown()
        idle.settimeout(5)
        assert idle.recv(1) == b""  # closed at once, not after the keep-alive timeout
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.port), timeout=5).close()
        running.loop.call_soon_threadsafe(release[0].set)
        response = read_response(busy)
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b"done")
    assert b"connection: close" in response.lower()  # and it says this connection ends
