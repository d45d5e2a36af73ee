"""HTTP/1.1 pipelining floods: one connection that writes thousands of requests at once and does
not read its responses must not starve other connections, must not make the server read (or
answer) without bound, and still gets every response, in order, once it reads."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from pathlib import Path
from typing import Any

import httpx

from conftest import RunningServer
from rawhttp import Reader

REQUESTS = 5_000
# Padding makes the flood (about 8.7 MB) far larger than what the kernel's socket buffers and the
# server's bounded read buffer can hold between them (1-2.4 MB went in before the stall, measured),
# so a server that stops reading stalls it. Few requests, each large: answering them (8 KiB each,
# in order) is what takes the time on a loaded CI machine, not their bytes.
FLOOD_PAD = b"a" * 1700
PAD = b"a" * 400  # the other tests' pipelined requests
BODY_SIZE = 8 * 1024


def _kernel_send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024  # Linux's default maximum


# What can hold responses the client does not read: the server's kernel send buffer (at most
# net.ipv4.tcp_wmem's maximum), the client's tiny receive buffer and the transport's 64 KiB
# high-water mark. Many more responses mean the server went on answering a client that reads
# nothing (640 with Linux's default 4 MiB maximum, of the flood's 5,000).
UNREAD_RESPONSES_BOUND = (_kernel_send_buffer_max() + 1024 * 1024) // BODY_SIZE
STALL = 1.0  # seconds without room to send: far longer than the server needs to take one read
TIMEOUT = 20.0


def body_for(path: str) -> bytes:
    return path.encode().ljust(BODY_SIZE, b".")


def counting_app(served: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        served.append(scope["path"])
        body = body_for(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


def pipelined(count: int, pad: bytes = PAD) -> bytes:
    return b"".join(b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n" % (index, pad)
                    for index in range(count))


def flooding_socket(running: RunningServer) -> socket.socket:
    """Small kernel buffers, set before connecting so the TCP windows stay small."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", running.port))
    return sock


def send_until_stalled(sock: socket.socket, data: memoryview) -> int:
    """Send without reading until all is sent or the server takes nothing for STALL seconds."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            try:
                sent += sock.send(data[sent:])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], STALL)
                if not writable:
                    break
    finally:
        sock.settimeout(TIMEOUT)
    return sent


def connection_write_buffers(running: RunningServer) -> list[int]:
    return running.call(lambda: [c.transport.get_write_buffer_size() for c in running.server.context.connections
                                 if getattr(c, "transport", None) is not None])


def test_pipelining_flood_is_read_boundedly_starves_nobody_and_is_answered_in_order(serve):
    served: list[str] = []
    # A keep-alive timeout far shorter than the stall below: a connection whose requests wait for
    # its client to read is not idle, and must not be closed with them unanswered.
    running = serve(counting_app(served), lifespan="off", keep_alive_timeout=0.2)
    flood = memoryview(pipelined(REQUESTS, FLOOD_PAD))

    with flooding_socket(running) as sock:
        sent = send_until_stalled(sock, flood)
        # (b) The server stopped reading a client that reads none of its responses: were it
        # reading on (into h11's buffer), the whole flood would have gone through.
        assert sent < len(flood), "the server read the whole 8.7 MB flood from a client that reads nothing"
        answered_unread = len(served)
        assert answered_unread <= UNREAD_RESPONSES_BOUND, (
            f"{answered_unread} responses produced for a client that reads none of them")
        assert max(connection_write_buffers(running), default=0) < 2 * 1024 * 1024

        # (a) Meanwhile another connection is served.
        response = httpx.get(f"{running.url}/other", timeout=TIMEOUT)
        assert (response.status_code, response.content) == (200, body_for("/other"))

        # (c) Once the flooder reads, every request is answered, in order.
        received: list[bytes] = []
        failure: list[BaseException] = []

        def read_all() -> None:
            reader = Reader(sock)
            try:
                for _ in range(REQUESTS):
                    response = reader.response()
                    assert response.status == 200
                    received.append(response.body)
            except BaseException as exc:  # reported by the test thread
                failure.append(exc)

        reading = threading.Thread(target=read_all, daemon=True)
        reading.start()
        sock.sendall(flood[sent:])  # the rest goes through as responses are read
        reading.join(TIMEOUT * 2)
        assert not reading.is_alive(), f"only {len(received)} of {REQUESTS} responses arrived"
        assert not failure, failure
    assert len(received) == REQUESTS
    for index, body in enumerate(received):
        assert body == body_for(f"/{index}"), f"response {index} is {body[:16]!r}"
    assert served.count("/other") == 1 and len(served) == REQUESTS + 1


def test_slow_reader_gets_every_pipelined_response_while_other_clients_are_served(serve):
    served: list[str] = []
    running = serve(counting_app(served), lifespan="off", keep_alive_timeout=0.2)
    count = 2_000
    with flooding_socket(running) as sock:
        # ~870 KB of requests: more than the buffers hold, so sending goes on as we read.
        sending = threading.Thread(target=sock.sendall, args=(pipelined(count),), daemon=True)
        sending.start()
        reader = Reader(sock)
        for index in range(count):
            response = reader.response()
            assert response.body == body_for(f"/{index}")
            if index % 400 == 0:
                # The server waits on our unread responses meanwhile (longer than its keep-alive
                # timeout, too), and answers others.
                other = httpx.get(f"{running.url}/other{index}", timeout=TIMEOUT)
                assert other.status_code == 200
        sending.join(TIMEOUT)
        assert not sending.is_alive()
    assert len(served) == count + 5


def test_input_for_a_request_handed_to_h11_behind_one_in_flight_is_read_boundedly(serve):
    # A plain request (its app waits) pipelined with a chunked upload, which the python codec
    # hands to h11 while the first is in flight: the upload's bytes must count towards pausing
    # reading, whichever codec the connection started on (CI runs this file with each parser).
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            while not release.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    running = serve(app, lifespan="off")
    head = (b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (16384, b"u" * 16384) for _ in range(512))  # 8 MiB
    flood = memoryview(head + chunks)
    try:
        with flooding_socket(running) as sock:
            sent = send_until_stalled(sock, flood)
            assert sent < len(flood), "the server read the whole 8 MiB upload behind a request in flight"
    finally:
        release.set()
