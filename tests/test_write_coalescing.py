"""At most one transport.write per connection per loop turn, whatever the app's send pattern.

The server's real transport is instrumented (its `write` counted, then called); the traffic
itself is real.
"""

from __future__ import annotations

import h2.connection

from conftest import connect
from h2client import H2Client

CHUNKS = 20


async def chatty_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for index in range(CHUNKS):
        await send({"type": "http.response.body", "body": b"%02d" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def count_writes(running) -> list[int]:
    """Wrap the transport.write of the server's only connection; return the list it appends to."""
    writes: list[int] = []

    def instrument() -> None:
        (connection,) = running.server.context.connections
        transport = connection.transport
        original = transport.write

        def counting_write(data: bytes) -> None:
            writes.append(len(data))
            original(data)
        transport.write = counting_write

    running.call(instrument)
    return writes


def test_http2_many_streams_and_many_sends_go_out_in_few_writes(serve):
    running = serve(chatty_app)
    with H2Client(running.port) as client:
        warm_up = client.request("GET", "/")
        client.response(warm_up)
        writes = count_writes(running)
        # Ten requests in one TCP write: the server sees them in one read.
        conn: h2.connection.H2Connection = client.conn
        stream_ids = []
        for _ in range(10):
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                          (b":authority", b"localhost")], end_stream=True)
            client.responses[stream_id] = {"status": None, "headers": [], "body": bytearray(), "ended": False,
                                           "reset": None}
            stream_ids.append(stream_id)
        client.flush()
        bodies = [bytes(client.response(stream_id)["body"]) for stream_id in stream_ids]
    expected = b"".join(b"%02d" % index for index in range(CHUNKS))
    assert bodies == [expected] * 10
    # 10 streams x (HEADERS + 20 DATA + END_STREAM) would be 220 writes without coalescing.
    assert 1 <= len(writes) <= 4, writes


def test_http1_response_sent_in_many_parts_goes_out_in_few_writes(serve):
    running = serve(chatty_app)
    with connect(running) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b"0\r\n\r\n"):
            response += sock.recv(65536)
        writes = count_writes(running)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"2\r\n19\r\n0\r\n\r\n")
    assert 1 <= len(writes) <= 2, writes  # headers + 20 chunks + terminator: one write
