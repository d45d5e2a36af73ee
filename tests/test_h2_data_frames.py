"""http2/h2lib.py writes ordinary DATA frames itself (ServerH2Connection.send_data): the bytes
and the windows must be exactly what h2 makes, and everything else must still be h2's."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.exceptions
import pytest

from plexicorn.config import Config
from plexicorn.http2.flood import FloodGuard
from plexicorn.http2.h2lib import ServerH2Connection

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def pair(server_class):
    """A server connection of `server_class` with stream 1 open, and the client's connection."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server = (server_class(config, FloodGuard(Config())) if server_class is ServerH2Connection
              else server_class(config))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    client.receive_data(server.data_to_send())  # SETTINGS and the response's HEADERS
    return server, client


def test_data_frames_are_the_bytes_h2_writes_and_use_the_same_windows():
    ours, _ = pair(ServerH2Connection)
    theirs, _ = pair(h2.connection.H2Connection)
    for size in (1, 100, 16384, 7):
        ours.send_data(1, b"a" * size)
        theirs.send_data(1, b"a" * size)
        assert ours.data_to_send() == theirs.data_to_send()
        assert ours.local_flow_control_window(1) == theirs.local_flow_control_window(1)
    ours.send_data(1, memoryview(b"end"), end_stream=True)  # h2's own path: the stream's state changes
    theirs.send_data(1, b"end", end_stream=True)
    assert ours.data_to_send() == theirs.data_to_send()


def test_the_client_reads_every_frame_and_the_stream_ends():
    server, client = pair(ServerH2Connection)
    for _ in range(3):
        server.send_data(1, b"x" * 10000)
    server.end_stream(1)
    events = client.receive_data(server.data_to_send())
    assert sum(len(e.data) for e in events if type(e).__name__ == "DataReceived") == 30000
    assert any(type(e).__name__ == "StreamEnded" for e in events)


@pytest.mark.parametrize("mistake", ["too large for the window", "too large a frame", "closed stream"])
def test_what_h2_refuses_it_still_refuses(mistake):
    server, _ = pair(ServerH2Connection)
    if mistake == "too large for the window":
        data, expected = b"x" * 16384, h2.exceptions.FlowControlError
        for _ in range(3):
            server.send_data(1, data)
        server.send_data(1, b"x" * (65535 - 3 * 16384))  # the client's default window, used up
    elif mistake == "too large a frame":
        data, expected = b"x" * 16385, h2.exceptions.FrameTooLargeError
    else:
        server.send_data(1, b"x", end_stream=True)
        data, expected = b"y", h2.exceptions.StreamClosedError
    with pytest.raises(expected):
        server.send_data(1, data)
