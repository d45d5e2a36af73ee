"""Load that keeps a server busy while it restarts, counting every request that fails.

The clients behave as the RFCs let a careful client behave, and no more leniently:
- HTTP/1.1 (RFC 9112 §9.3.1): a GET whose reused keep-alive connection closes before any byte
  of the response came back is retried once on a new connection (as curl and browsers do); any
  other error, and any failure on a new connection, is a failed request.
- HTTP/2 (RFC 9113 §6.8): after a GOAWAY no new stream goes on that connection; streams above
  the GOAWAY's last-stream-id (never processed) and REFUSED_STREAM resets are retried on a new
  connection; a stream at or below it must complete, else it failed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import h2.config
import h2.errors
import h2.events

from h2client import RFCClientConnection


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    retries: Counter = field(default_factory=Counter)  # why → requests sent again
    bodies: Counter = field(default_factory=Counter)  # response body → count
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def success(self, body: bytes) -> None:
        with self.lock:
            self.ok += 1
            self.bodies[body.decode()] += 1

    @property
    def retried(self) -> int:
        return sum(self.retries.values())

    def retry(self, why: str, count: int = 1) -> None:
        if count:
            with self.lock:
                self.retries[why] += count

    def failure(self, what: str) -> None:
        with self.lock:
            self.failed += 1
            self.errors.append(what)


class Load:
    """Runs `clients` threads against 127.0.0.1:port until stop()."""

    def __init__(self, port: int, *, http1: int = 2, http2: int = 2, streams: int = 8, path: str = "/") -> None:
        self.port = port
        self.path = path
        self.streams = streams
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._http1, daemon=True) for _ in range(http1)]
        self._threads += [threading.Thread(target=self._http2, daemon=True) for _ in range(http2)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
            assert not thread.is_alive(), "a load client hung"
        return self.tally

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` more responses have come back (the load is flowing)."""
        target = self.tally.ok + count
        deadline = time.monotonic() + timeout
        while self.tally.ok < target:
            assert time.monotonic() < deadline, f"load stalled at {self.tally.ok} responses: {self.tally.errors[:5]}"
            time.sleep(0.01)

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    # -- HTTP/1.1 -------------------------------------------------------------------------------
    def _http1(self) -> None:
        tally = self.tally
        request = f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        sock: socket.socket | None = None
        reused = False
        while not self._stop.is_set():
            try:
                if sock is None:
                    sock, reused = self._connect(), False
                with tally.lock:
                    tally.sent += 1
                try:
                    sock.sendall(request)
                except OSError as exc:  # the server closed it: nothing was processed
                    raise _NothingBack(str(exc)) from None
                head, body = _read_http1_response(sock)
            except _NothingBack as exc:
                if sock is not None:
                    sock.close()
                sock = None
                if reused:
                    tally.retry("HTTP/1.1 keep-alive connection closed before the response")
                    continue
                tally.failure(f"HTTP/1.1 on a new connection: {exc}")
                continue
            except OSError as exc:
                if sock is not None:
                    sock.close()
                sock = None
                tally.failure(f"HTTP/1.1: {type(exc).__name__}: {exc}")
                continue
            if not head.startswith(b"HTTP/1.1 200 "):
                tally.failure(f"HTTP/1.1 status {head.splitlines()[0]!r}")
            else:
                tally.success(body)
            if b"\r\nconnection: close" in head.lower():
                sock.close()
                sock = None
            else:
                reused = True
        if sock is not None:
            sock.close()

    # -- HTTP/2 ---------------------------------------------------------------------------------
    def _http2(self) -> None:
        retry = 0  # requests owed from a connection that went away (never processed there)
        while not self._stop.is_set() or retry:
            try:
                sock = self._connect()
            except OSError as exc:
                self.tally.failure(f"HTTP/2 connect: {exc}")
                continue
            with sock:
                retry = self._h2_connection(sock, retry)

    def _h2_connection(self, sock: socket.socket, retry: int) -> int:
        """Batches of streams on one connection until it goes away; returns the requests to retry."""
        tally = self.tally
        conn = RFCClientConnection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while True:
            count = retry or self.streams
            retry = 0
            bodies: dict[int, bytearray] = {}
            for _ in range(count):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
                                              (":path", self.path)], end_stream=True)
                bodies[stream_id] = bytearray()
            with tally.lock:
                tally.sent += count
            sock.sendall(conn.data_to_send())
            pending = set(bodies)
            last_stream: int | None = None
            closed = False
            while pending and not closed:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed = True
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        pending.discard(event.stream_id)
                        tally.success(bytes(bodies[event.stream_id]))
                    elif isinstance(event, h2.events.StreamReset):
                        pending.discard(event.stream_id)
                        if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                            tally.retry("HTTP/2 REFUSED_STREAM")
                            retry += 1
                        else:
                            tally.failure(f"HTTP/2 stream reset with {event.error_code!r}")
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        if event.error_code:
                            closed = True
                        last_stream = event.last_stream_id if last_stream is None else min(last_stream,
                                                                                           event.last_stream_id)
                unprocessed = {stream_id for stream_id in pending if last_stream is not None and stream_id > last_stream}
                pending -= unprocessed
                retry += len(unprocessed)
                tally.retry("HTTP/2 stream above the GOAWAY's last stream", len(unprocessed))
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    closed = True
            for stream_id in pending:  # processed (or no GOAWAY said otherwise), never answered
                tally.failure(f"HTTP/2 stream {stream_id} lost (GOAWAY last stream {last_stream})")
            if closed or last_stream is not None or self._stop.is_set():
                return retry


class _NothingBack(Exception):
    """The connection closed before any byte of the response."""


def _read_http1_response(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if not data:
                raise _NothingBack("closed before the response")
            raise ConnectionError(f"closed in the response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the response body")
        body += chunk
    return head, body
