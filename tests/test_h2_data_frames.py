"""http2/h2lib.py writes ordinary DATA frames itself (ServerH2Connection.send_data): the bytes
and the windows must be exactly what h2 makes, and everything else must still be h2's."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
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


def test_end_stream_frames_are_h2s_bytes_and_leave_the_stream_as_h2_does():
    ours, _ = pair(ServerH2Connection)
    theirs, _ = pair(h2.connection.H2Connection)
    ours.send_data(1, memoryview(b"last bytes"), end_stream=True)
    theirs.send_data(1, b"last bytes", end_stream=True)
    assert ours.data_to_send() == theirs.data_to_send()
    assert ours.streams[1].state_machine.state == theirs.streams[1].state_machine.state
    assert ours.local_flow_control_window  # the connection is still usable
    with pytest.raises(h2.exceptions.StreamClosedError):
        ours.send_data(1, b"more")


def test_several_frames_at_once_are_the_frames_send_data_writes_one_by_one():
    ours, _ = pair(ServerH2Connection)
    theirs, _ = pair(h2.connection.H2Connection)
    payloads = [b"a" * 16384, memoryview(b"b" * 16384), b"c" * 5]
    ours.send_data_frames(1, payloads, end_stream=True)
    for index, payload in enumerate(payloads):
        theirs.send_data(1, bytes(payload), end_stream=index == len(payloads) - 1)
    assert ours.data_to_send() == theirs.data_to_send()
    assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window
    assert ours.streams[1].state_machine.state == theirs.streams[1].state_machine.state


def test_several_frames_beyond_the_window_fail_as_h2_would_after_the_frames_that_fit():
    server, _ = pair(ServerH2Connection)
    with pytest.raises(h2.exceptions.FlowControlError):
        server.send_data_frames(1, [b"x" * 16384] * 5)  # the client's window is 65535
    assert server.local_flow_control_window(1) == 65535 - 3 * 16384


def test_frames_h2_writes_between_ours_keep_their_order_and_partial_reads_work():
    ours, _ = pair(ServerH2Connection)
    theirs, _ = pair(h2.connection.H2Connection)
    for conn in (ours, theirs):
        conn.send_data(1, b"first")
        conn.ping(b"12345678")
        conn.send_data(1, b"second")
        conn.increment_flow_control_window(1000)
        conn.end_stream(1)
    expected = theirs.data_to_send()
    assert ours.data_to_send(10) + ours.data_to_send(7) + ours.data_to_send() == expected
    assert ours.data_to_send() == b""


def test_received_data_frames_reach_h2_without_a_hex_repr_of_the_payload():
    traced: list[str] = []

    class Recorder:
        def debug(self, *args):
            pass

        def trace(self, fmt, *args):
            traced.append(fmt % args)

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_data(1, b"\xab" * 1000, end_stream=True)
    server = ServerH2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None,
                                                          logger=Recorder()), FloodGuard(Config()))
    server.initiate_connection()
    events = server.receive_data(client.data_to_send())
    received = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert [e.data for e in received] == [b"\xab" * 1000]
    # h2 would trace repr(frame) for every frame received, hex-encoding a DATA frame's payload.
    assert not any("abab" in line for line in traced)
