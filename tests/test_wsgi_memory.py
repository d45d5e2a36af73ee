"""The server's memory stays bounded while a slow WSGI app reads a 256 MiB upload and while a
slow client reads a 256 MiB streamed download, over HTTP/1.1 and HTTP/2.

The server is its own process (tests/apps/wsgi_memory.py, from the command line); its peak
resident set (VmHWM, reset before each transfer through /proc/PID/clear_refs) must stay within
32 MiB of what it used before the transfer.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import h2.events
import pytest

from tests.conftest import REPO, free_port
from tests.h2client import H2Client
from tests.test_cli import MODULE_COMMAND, Plexicorn

SIZE = 256 * 1024 * 1024
BOUND = 32 * 1024 * 1024
SLOW_CLIENT_BYTES = 8 * 1024 * 1024  # the client sleeps while reading the first 8 MiB
APPS = REPO / "tests" / "apps"
BUFFER = b"u" * (1024 * 1024)

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    process = Plexicorn(["wsgi_memory:app", "--app-dir", str(APPS), "--bind", f"127.0.0.1:{port}",
                         "--no-access-log", "--wsgi-threads", "4"],
                        cwd=tmp_path_factory.mktemp("memory"), env=None, command=MODULE_COMMAND)
    try:
        assert process.wait_listening() == port
        yield process, port
    finally:
        process.kill()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakGrowth:
    """Peak RSS growth of `pid` during the block, in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.growth = 0

    def __enter__(self) -> PeakGrowth:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.before = status_kib(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = (status_kib(self.pid, "VmHWM") - self.before) * 1024


def http1_upload(port: int, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // len(BUFFER)):
            sock.sendall(BUFFER)
        return read_http1_response(sock)


def read_http1_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return body


def http1_download(port: int, size: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /download?%d HTTP/1.1\r\nhost: x\r\n\r\n" % size)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        received = len(data.partition(b"\r\n\r\n")[2])
        buffer = bytearray(256 * 1024)
        while received < size:
            count = sock.recv_into(buffer)
            assert count, "connection closed early"
            received += count
            if received < SLOW_CLIENT_BYTES:
                time.sleep(0.002)
        return received


def h2_upload(port: int, size: int) -> bytes:
    with H2Client(port, timeout=30) as client:
        stream = client.request("POST", "/upload", end_stream=False)
        for _ in range(size // len(BUFFER)):
            client.send_body(stream, BUFFER, end_stream=False)
        client.conn.end_stream(stream)
        client.flush()
        return bytes(client.response(stream)["body"])


def h2_download(port: int, size: int) -> int:
    with H2Client(port, timeout=30, auto_window=False) as client:
        client.request("GET", f"/download?{size}")
        received = 0
        ended = False
        while not ended:
            data = client.sock.recv(256 * 1024)
            assert data, "connection closed early"
            for event in client.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    client.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError("download reset")
            client.flush()
            if received < SLOW_CLIENT_BYTES:
                time.sleep(0.002)
        return received


def warm_up(port: int) -> None:
    """Threads started, buffers and imports done: what follows measures the transfer alone."""
    for _ in range(2):
        assert http1_upload(port, 4 * len(BUFFER)) == str(4 * len(BUFFER)).encode()
        assert http1_download(port, 4 * len(BUFFER)) == 4 * len(BUFFER)
        assert h2_upload(port, 4 * len(BUFFER)) == str(4 * len(BUFFER)).encode()
        assert h2_download(port, 4 * len(BUFFER)) == 4 * len(BUFFER)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transfer", ["http1-upload", "http1-download", "h2-upload", "h2-download"])
def test_256_mib_transfer_keeps_server_rss_growth_under_32_mib(server, transfer):
    process, port = server
    warm_up(port)
    with PeakGrowth(process.process.pid) as peak:
        if transfer == "http1-upload":
            assert http1_upload(port, SIZE) == str(SIZE).encode()
        elif transfer == "http1-download":
            assert http1_download(port, SIZE) == SIZE
        elif transfer == "h2-upload":
            assert h2_upload(port, SIZE) == str(SIZE).encode()
        else:
            assert h2_download(port, SIZE) == SIZE
    print(f"{transfer}: peak RSS growth {peak.growth / 2**20:.1f} MiB")
    assert peak.growth < BOUND, f"{transfer}: RSS grew by {peak.growth / 2**20:.1f} MiB"
