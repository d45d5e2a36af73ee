"""--metrics-bind: real servers, real clients, and /metrics scraped after the traffic.

Every number asserted is one the test caused: requests by protocol and status class, bytes both
ways to the byte (HTTP/1.1), requests in flight and open connections while they are, HTTP/2
streams refused and reset by each side, GOAWAYs by code, TLS handshakes, WebSocket close codes,
and, under a supervisor, the sum over the workers and the restarts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from conftest import free_port
from h2client import H2Client
from h2wsclient import H2WSConnection
from metricshelp import scrape, serve, value, wait_metrics
from supervised import APPS, COMMAND, TIMEOUT, alive, plexicorn, wait_gone  # noqa: F401
from test_cli import assert_one_error_line, read_to_eof

H1, H2 = {"protocol": "http/1.1"}, {"protocol": "h2"}


def exchange(port: int, request: bytes) -> bytes:
    """One raw HTTP/1.1 exchange on its own connection, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        return read_to_eof(sock)


def test_http11_requests_status_classes_durations_and_exact_bytes(plexicorn):
    process, port, metrics_port = serve(plexicorn)
    requests = [b"GET /status/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % status
                for status in (200, 204, 404, 503)]
    requests.append(b"GET /not a request\r\n\r\n")  # malformed: the server answers 400 itself
    answers = [exchange(port, request) for request in requests]
    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"200", b"204", b"404", b"503", b"400"]

    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_connections_open", **H1) == 0
                           and value(s, "plexicorn_connections_opened_total", **H1) == 5)
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == 2
    assert value(samples, "plexicorn_requests_total", **H1, status="4xx") == 2  # the app's 404, our 400
    assert value(samples, "plexicorn_requests_total", **H1, status="5xx") == 1
    # The histogram covers the application's requests (not the server's own 400).
    assert value(samples, "plexicorn_request_duration_seconds_count", **H1) == 4
    assert value(samples, "plexicorn_request_duration_seconds_bucket", **H1, le="+Inf") == 4
    assert 0 < value(samples, "plexicorn_request_duration_seconds_sum", **H1) < 4 * TIMEOUT
    assert value(samples, "plexicorn_requests_in_flight", **H1) == 0
    assert value(samples, "plexicorn_bytes_received_total", **H1) == sum(map(len, requests))
    assert value(samples, "plexicorn_bytes_sent_total", **H1) == sum(map(len, answers))
    # Nothing went over HTTP/2, and the scrapes themselves are not counted.
    assert value(samples, "plexicorn_requests_total", **H2, status="2xx") == 0
    assert value(samples, "plexicorn_connections_opened_total", **H2) == 0
    assert process.stop() == 0


def test_metrics_listener_is_its_own(plexicorn):
    process, port, metrics_port = serve(plexicorn)
    # The app's port serves the app, /metrics included; the metrics port only /metrics.
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").text == str(process.pid)
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/").status_code == 404
    assert httpx.post(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 405
    openmetrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics",
                            headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    with httpx.Client(http1=False, http2=True) as client:  # h2c too, like every listener
        assert client.get(f"http://127.0.0.1:{metrics_port}/metrics").http_version == "HTTP/2"
    assert process.stop() == 0


def test_h2_in_flight_client_reset_refused_stream_and_goaways(plexicorn):
    process, port, metrics_port = serve(plexicorn, "--h2-max-concurrent-streams", 1)
    with H2Client(port) as client:
        held = client.request("GET", "/hold")
        samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_requests_in_flight", **H2) == 1)
        assert value(samples, "plexicorn_connections_open", **H2) == 1
        assert value(samples, "plexicorn_h2_streams_opened_total") == 1
        refused = client.request("GET", "/status/200")  # one stream over the limit
        assert client.response(refused)["reset"] == 7  # REFUSED_STREAM
        client.reset(held)  # CANCEL: the app sees http.disconnect and returns
        samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_requests_in_flight", **H2) == 0)
        assert value(samples, "plexicorn_h2_streams_refused_total") == 1
        assert value(samples, "plexicorn_h2_streams_reset_total", by="server", code="REFUSED_STREAM") == 1
        assert value(samples, "plexicorn_h2_streams_reset_total", by="client", code="CANCEL") == 1
        # The held request ended without any response: status class "none".
        assert value(samples, "plexicorn_requests_total", **H2, status="none") == 1
        assert value(samples, "plexicorn_h2_streams_opened_total") == 1
        ok = client.request("GET", "/status/200")
        assert client.response(ok)["status"] == 200
        client.sock.sendall(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # DATA on stream 0: a connection error
        client.wait_closed()
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_connections_open", **H2) == 0)
    assert value(samples, "plexicorn_h2_goaways_sent_total", code="PROTOCOL_ERROR") == 1
    assert value(samples, "plexicorn_requests_total", **H2, status="2xx") == 1
    assert value(samples, "plexicorn_request_duration_seconds_count", **H2) == 2
    assert value(samples, "plexicorn_bytes_received_total", **H2) > 0
    assert value(samples, "plexicorn_bytes_sent_total", **H2) > 0
    assert process.stop() == 0


def test_h2_idle_connection_gets_two_graceful_goaways(plexicorn):
    process, port, metrics_port = serve(plexicorn, "--keep-alive-timeout", 0.3)
    with H2Client(port) as client:
        assert client.response(client.request("GET", "/"))["status"] == 200
        client.wait_closed()  # idle: GOAWAY, PING, final GOAWAY, close
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_connections_open", **H2) == 0)
    assert value(samples, "plexicorn_h2_goaways_sent_total", code="NO_ERROR") == 2
    assert process.stop() == 0


def test_tls_handshakes_completed_and_failed_and_h2_over_tls(plexicorn, tls_files, verify):
    process, port, metrics_port = serve(plexicorn, "--certfile", tls_files[0], "--keyfile", tls_files[1])
    with httpx.Client(http2=True, verify=verify) as client:
        assert client.get(f"https://localhost:{port}/").http_version == "HTTP/2"
    with httpx.Client(verify=verify) as client:
        assert client.get(f"https://localhost:{port}/status/201").status_code == 201
    exchange(port, b"GET / HTTP/1.1\r\n\r\n")  # cleartext to a TLS port: the handshake fails
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_tls_handshakes_total", result="failed") == 1
                           and value(s, "plexicorn_connections_open", **H1) == 0
                           and value(s, "plexicorn_connections_open", **H2) == 0)
    assert value(samples, "plexicorn_tls_handshakes_total", result="completed") == 2
    assert value(samples, "plexicorn_requests_total", **H2, status="2xx") == 1
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == 1
    assert value(samples, "plexicorn_connections_opened_total", **H1) == 1  # the failed one never spoke HTTP
    assert process.stop() == 0


def test_websocket_sessions_opened_open_and_closed_by_code(plexicorn):
    process, port, metrics_port = serve(plexicorn)
    with ws_connect(f"ws://127.0.0.1:{port}/echo") as websocket:
        websocket.send("hello")
        assert websocket.recv(TIMEOUT) == "hello"
        samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_websocket_sessions_open", **H1) == 1)
        websocket.close(code=4001)
    with ws_connect(f"ws://127.0.0.1:{port}/close/1000") as websocket:
        with pytest.raises(Exception):
            websocket.recv(TIMEOUT)  # the app closes it

    async def over_h2() -> None:
        connection = await H2WSConnection.open(port)
        async with connection:
            websocket = await connection.websocket("/echo")
            assert websocket.status == 200
            await websocket.close(1001)
            await websocket.stream.wait_finished(TIMEOUT)
    asyncio.run(asyncio.wait_for(over_h2(), TIMEOUT))

    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_websocket_sessions_open", **H1) == 0
                           and value(s, "plexicorn_websocket_sessions_open", **H2) == 0
                           and value(s, "plexicorn_websocket_sessions_closed_total", **H2, code="1001") == 1)
    assert value(samples, "plexicorn_websocket_sessions_opened_total", **H1) == 2
    assert value(samples, "plexicorn_websocket_sessions_opened_total", **H2) == 1
    assert value(samples, "plexicorn_websocket_sessions_closed_total", **H1, code="4xxx") == 1
    assert value(samples, "plexicorn_websocket_sessions_closed_total", **H1, code="1000") == 1
    # WebSockets are sessions, not requests: neither counted nor timed as such.
    assert value(samples, "plexicorn_request_duration_seconds_count", **H1) == 0
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == 0
    assert process.stop() == 0


def test_workers_numbers_are_the_whole_servers_and_restarts_are_counted(plexicorn):
    process, port, metrics_port = serve(plexicorn, workers=2)
    pids = set(process.pids)
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def ask() -> None:
        # A new connection each time; the loop blocked 50 ms sends concurrent ones to the other worker.
        pid = int(httpx.get(f"http://127.0.0.1:{port}/block?seconds=0.05", timeout=TIMEOUT).text)
        with lock:
            seen[pid] = seen.get(pid, 0) + 1

    deadline = time.monotonic() + TIMEOUT
    while set(seen) != pids:
        assert time.monotonic() < deadline, f"only {seen} of {pids} answered"
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    total = sum(seen.values())
    assert all(seen.values()) and len(seen) == 2  # both workers served: the sum is of two processes
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_requests_total", **H1, status="2xx") == total
                           and value(s, "plexicorn_connections_open", **H1) == 0)
    assert value(samples, "plexicorn_connections_opened_total", **H1) == total
    assert value(samples, "plexicorn_request_duration_seconds_count", **H1) == total
    assert value(samples, "plexicorn_worker_restarts_total", reason="exited") == 0

    # A worker dies: its counts stay in the totals, the supervisor counts the restart.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_gone(victim)
    process.wait_workers(1)
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_worker_restarts_total", reason="exited") == 1)
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == total
    for _ in range(3):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_requests_total", **H1, status="2xx") == total + 3)
    assert value(samples, "plexicorn_connections_opened_total", **H1) == total + 3
    assert process.stop() == 0


def test_a_rolling_restart_counts_each_worker_replaced(plexicorn):
    process, port, metrics_port = serve(plexicorn, workers=2)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 200
    wait_metrics(metrics_port, lambda s: value(s, "plexicorn_requests_total", **H1, status="2xx") == 1)
    process.signal(signal.SIGHUP)
    process.wait_workers(2)
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_worker_restarts_total", reason="restart") == 2)
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == 1  # the old workers' count stays
    assert process.stop() == 0


def test_a_worker_past_max_requests_is_a_restart_and_its_requests_stay_counted(plexicorn):
    process, port, metrics_port = serve(plexicorn, "--max-requests", 3, workers=1)
    for _ in range(3):
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 200
    process.wait_workers(1)  # the replacement
    samples = wait_metrics(metrics_port, lambda s: value(s, "plexicorn_worker_restarts_total", reason="max_requests") == 1
                           and value(s, "plexicorn_requests_total", **H1, status="2xx") == 3)
    assert value(samples, "plexicorn_worker_restarts_total", reason="exited") == 0
    assert process.stop() == 0


BLOCKED = "import sys; sys.modules['prometheus_client'] = None; from plexicorn.cli import main; main()"


@pytest.mark.parametrize("workers", [1, 2])
def test_without_prometheus_client_the_flag_is_one_error_line(tmp_path, workers):
    result = subprocess.run([sys.executable, "-c", BLOCKED, "metrics_app:app", "--app-dir", str(APPS),
                             "--bind", f"127.0.0.1:{free_port()}", "--metrics-bind", f"127.0.0.1:{free_port()}",
                             "--workers", str(workers)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    line = assert_one_error_line(result)
    assert line == "plexicorn: error: --metrics-bind needs prometheus_client: pip install 'plexicorn[metrics]'"


@pytest.mark.parametrize("metrics_bind, message", [
    ("unix:/tmp/metrics.sock", "--metrics-bind takes HOST:PORT"),
    ("localhost", "invalid --metrics-bind 'localhost'"),
    ("APP", "is an address the app is served on"),
])
def test_bad_metrics_bind_is_one_error_line(tmp_path, metrics_bind, message):
    port = free_port()
    metrics_bind = f"127.0.0.1:{port}" if metrics_bind == "APP" else metrics_bind
    result = subprocess.run([*COMMAND, "metrics_app:app", "--app-dir", str(APPS), "--bind", f"127.0.0.1:{port}",
                             "--metrics-bind", metrics_bind], cwd=tmp_path, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert message in assert_one_error_line(result)


def test_metrics_port_taken_is_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run([*COMMAND, "metrics_app:app", "--app-dir", str(APPS), "--bind",
                                 f"127.0.0.1:{free_port()}", "--metrics-bind", f"127.0.0.1:{taken.getsockname()[1]}"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert "address already in use" in assert_one_error_line(result)


def test_scrapes_are_not_counted(plexicorn):
    process, _, metrics_port = serve(plexicorn)
    for _ in range(3):
        scrape(metrics_port)
    samples = scrape(metrics_port)
    assert value(samples, "plexicorn_connections_opened_total", **H1) == 0
    assert value(samples, "plexicorn_requests_total", **H1, status="2xx") == 0
    assert alive(process.pid)
    assert process.stop() == 0
