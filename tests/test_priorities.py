"""RFC 9218 priorities on HTTP/2: urgency, incremental round-robin, sequential, updates.

To see the server's choice, the tests first exhaust the connection window (the client
acknowledges nothing), let every app queue its response, then open the window and read the
order in which DATA frames arrive.
"""

from __future__ import annotations

import struct
import threading

import h2.events
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from h2client import H2Client

BODY = 48 * 1024  # three frames of 16 KiB per response
WINDOW = 65535


class Arrivals:
    def __init__(self) -> None:
        self.count = 0
        self.condition = threading.Condition()

    def arrive(self) -> None:
        with self.condition:
            self.count += 1
            self.condition.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: self.count >= count, 5)


def make_app(arrivals: Arrivals, response_priority: dict[str, bytes] | None = None):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        size = WINDOW if scope["path"] == "/fill" else BODY
        headers = [(b"content-length", str(size).encode())]
        if response_priority and scope["path"] in response_priority:
            headers.append((b"priority", response_priority[scope["path"]]))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * size})
        arrivals.arrive()  # its whole body is queued in the server
    return app


def blocked_client(running) -> H2Client:
    """A client whose connection window the server has used up."""
    client = H2Client(running.port, auto_window=False, settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    fill = client.request("GET", "/fill")
    client.response(fill)
    assert len(client.responses[fill]["body"]) == WINDOW
    return client


def request(client: H2Client, path: str, priority: bytes | None = None) -> int:
    return client.request("GET", path, headers=[(b"priority", priority)] if priority else [])


def data_order(client: H2Client, stream_ids: list[int]) -> list[int]:
    """Open the connection window, then the stream id of every DATA frame, in arrival order."""
    first_event = len(client.events)
    client.conn.increment_flow_control_window(2**30)
    client.flush()
    client.wait_for(lambda: all(client.responses[s]["ended"] for s in stream_ids))
    return [e.stream_id for e in client.events[first_event:]
            if isinstance(e, h2.events.DataReceived) and e.data and e.stream_id in stream_ids]


def queued(client: H2Client, arrivals: Arrivals, count: int) -> None:
    assert arrivals.wait_for(count)
    client.ping_barrier()


def runs(order: list[int]) -> list[int]:
    """Collapse consecutive repeats: [1, 1, 3, 3, 1] -> [1, 3, 1]."""
    return [s for index, s in enumerate(order) if index == 0 or order[index - 1] != s]


def test_more_urgent_responses_are_sent_first(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with blocked_client(running) as client:
        low = request(client, "/low", b"u=5")
        high = request(client, "/high", b"u=1")
        default = request(client, "/default")  # u=3
        queued(client, arrivals, 4)
        order = data_order(client, [low, high, default])
    assert runs(order) == [high, default, low]


def test_incremental_responses_of_one_urgency_share_round_robin(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with blocked_client(running) as client:
        first = request(client, "/a", b"u=3, i")
        second = request(client, "/b", b"u=3, i")
        queued(client, arrivals, 3)
        order = data_order(client, [first, second])
    assert order in ([first, second] * 3, [second, first] * 3)  # one frame each, in turn


def test_non_incremental_responses_go_one_after_another(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with blocked_client(running) as client:
        first = request(client, "/a", b"u=3")
        second = request(client, "/b", b"u=3")
        queued(client, arrivals, 3)
        order = data_order(client, [first, second])
    assert order == [first] * 3 + [second] * 3


def priority_update(stream_id: int, field: bytes, on_stream: int = 0) -> bytes:
    payload = struct.pack(">I", stream_id) + field
    return struct.pack(">I", len(payload))[1:] + bytes([0x10, 0]) + struct.pack(">I", on_stream) + payload


def test_priority_update_frame_moves_a_queued_response_ahead(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with blocked_client(running) as client:
        late = request(client, "/late", b"u=5")
        normal = request(client, "/normal", b"u=3")
        queued(client, arrivals, 3)
        client.sock.sendall(priority_update(late, b"u=0"))
        client.ping_barrier()
        order = data_order(client, [late, normal])
    assert runs(order) == [late, normal]


def test_app_response_priority_header_reprioritizes_its_stream(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals, {"/urgent": b"u=0"}))
    with blocked_client(running) as client:
        normal = request(client, "/normal")
        urgent = request(client, "/urgent")
        queued(client, arrivals, 3)
        order = data_order(client, [normal, urgent])
    assert runs(order) == [urgent, normal]


def test_server_disables_rfc7540_priorities_and_ignores_priority_frames(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with H2Client(running.port) as client:
        client.wait_for(lambda: client.events_of(h2.events.RemoteSettingsChanged))
        settings = client.events_of(h2.events.RemoteSettingsChanged)[0].changed_settings
        assert settings[0x9].new_value == 1  # SETTINGS_NO_RFC7540_PRIORITIES
        stream_id = request(client, "/a")
        client.conn.prioritize(stream_id, weight=256, depends_on=0, exclusive=True)  # RFC 7540 PRIORITY
        client.flush()
        assert client.response(stream_id)["status"] == 200
        assert not client.events_of(h2.events.ConnectionTerminated)


def test_priority_update_on_a_request_stream_is_a_connection_error(serve):
    arrivals = Arrivals()
    running = serve(make_app(arrivals))
    with H2Client(running.port) as client:
        stream_id = request(client, "/a")
        client.response(stream_id)
        client.sock.sendall(priority_update(stream_id, b"u=0", on_stream=stream_id))
        client.wait_closed()
        (goaway,) = client.events_of(h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_a_flood_of_priority_updates_does_not_grow_the_send_queue(serve):
    arrivals = Arrivals()
    # The queue's own bound, under the flood budget that would end such a connection.
    running = serve(make_app(arrivals), h2_max_control_frames=10_000)
    with blocked_client(running) as client:
        waiting = request(client, "/waiting", b"u=7")
        queued(client, arrivals, 2)
        # Alternate its urgency 5000 times while it is queued (the window is still closed).
        client.sock.sendall(b"".join(priority_update(waiting, b"u=6" if n % 2 else b"u=7") for n in range(5000)))
        client.ping_barrier()
        (protocol,) = [c for c in running.server.context.connections if hasattr(c, "table")]
        assert running.call(lambda: len(protocol.table.scheduler)) <= 100  # one live entry plus bounded stale ones
        order = data_order(client, [waiting])
    assert len(order) == 3  # and the response still goes out whole
