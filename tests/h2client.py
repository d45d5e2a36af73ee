"""A small blocking HTTP/2 client on h2's state machine, for frame-level tests.

It exposes the events h2 reports, so tests can assert exactly what the server sent
(RST_STREAM codes, SETTINGS, WINDOW_UPDATEs, GOAWAY) rather than what a
high-level client makes of it.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class RFCClientConnection(h2.connection.H2Connection):
    """h2 goes CLOSED on any GOAWAY and then refuses every frame, although RFC 9113 §6.8 lets
    streams up to the GOAWAY's last stream finish. Tests need the RFC's behaviour to see what
    the server does after a graceful GOAWAY, so a NO_ERROR GOAWAY only yields the event."""

    def _receive_goaway_frame(self, frame):  # type: ignore[no-untyped-def]
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class H2Client:
    def __init__(self, port: int, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 settings: dict[int, int] | None = None, auto_window: bool = True, preamble: bytes = b"") -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if preamble:  # bytes before TLS and HTTP/2: a PROXY protocol header
            sock.sendall(preamble)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.timeout = timeout
        # auto_window: re-open windows as DATA arrives; off to play a slow reader.
        self.auto_window = auto_window
        self.conn = RFCClientConnection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.responses: dict[int, dict] = {}
        self.closed = False
        self._barriers = 0
        self.flush()

    # -- sending ----------------------------------------------------------------------------
    def ping_barrier(self) -> None:
        """PING round trip: once acked, the server has processed everything sent before it."""
        # A payload of its own: an earlier barrier's ACK must not end this one's wait.
        self._barriers += 1
        data = b"b%07d" % self._barriers
        self.conn.ping(data)
        self.flush()
        self.wait_for(lambda: any(e.ping_data == data for e in self.events_of(h2.events.PingAckReceived)))

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", *, body: bytes | None = None,
                headers: list[tuple[bytes, bytes]] | None = None, end_stream: bool | None = None,
                authority: bytes = b"localhost") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        block = [(b":method", method.encode()), (b":scheme", b"https" if isinstance(self.sock, ssl.SSLSocket)
                 else b"http"), (b":path", path.encode()), (b":authority", authority)] + (headers or [])
        ends = True if end_stream is None else end_stream
        self.conn.send_headers(stream_id, block, end_stream=ends and not body)
        self.responses[stream_id] = {"status": None, "headers": [], "body": bytearray(), "ended": False,
                                     "reset": None}
        if body:
            self.send_body(stream_id, body, end_stream=ends)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end_stream: bool = True) -> None:
        """Send as much of body as windows allow, reading the socket while they are closed."""
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.receive_once()
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end_stream:
            self.conn.end_stream(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = 8) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    # -- receiving ---------------------------------------------------------------------------
    def receive_once(self) -> list[h2.events.Event]:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            self._record(event)
        self.flush()
        return events

    def _record(self, event: h2.events.Event) -> None:
        self.events.append(event)
        response = self.responses.get(getattr(event, "stream_id", 0))
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            headers = list(event.headers)
            response["status"] = int(dict(headers)[b":status"])
            response["headers"] = headers
        elif isinstance(event, h2.events.DataReceived):
            if response is not None:
                response["body"] += event.data
            if self.auto_window and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response["ended"] = True
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response["reset"] = event.error_code
        elif isinstance(event, h2.events.TrailersReceived) and response is not None:
            response["trailers"] = list(event.headers)

    def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not condition():
            if self.closed:
                raise ConnectionError("server closed the connection")
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            self.receive_once()

    def wait_closed(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.closed:
            if time.monotonic() > deadline:
                raise TimeoutError("connection still open")
            try:
                self.receive_once()
            except h2.exceptions.ProtocolError:
                pass

    def response(self, stream_id: int, timeout: float | None = None) -> dict:
        """Wait until the stream ends or is reset; return status, headers, body, reset code."""
        entry = self.responses[stream_id]
        self.wait_for(lambda: entry["ended"] or entry["reset"] is not None, timeout)
        return entry

    def events_of(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

