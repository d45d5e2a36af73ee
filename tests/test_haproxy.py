"""Beyond one machine: two Plexicorn instances (2 workers each) behind a real HAProxy with health
checks. One instance is rolling-restarted, then stopped, then started again, while HTTP/1.1 and
HTTP/2 load runs through HAProxy: no request fails, and HAProxy's health check sees the stopped
instance go away and come back (and never noticed the rolling restart)."""

from __future__ import annotations

import csv
import io
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port
from loadclient import Load
from supervised import APPS, TIMEOUT, plexicorn  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs HAProxy: apt-get install haproxy")

CONFIG = """\
global
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 15s
    timeout server 15s
    # A check fails on a refused or dropped connection, a 5xx, or no answer within this; not on
    # an answer slower than `inter` (without this, 100 ms), which a loaded CI machine can take
    # while a worker boots. Refused connections still fail at once, so going DOWN stays quick.
    timeout check 5s
    # A connection refused or closed before any response (an instance going away) is retried,
    # on the other server.
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
frontend http1
    bind 127.0.0.1:{http1}
    default_backend plexicorn
frontend http2
    bind 127.0.0.1:{http2} proto h2
    default_backend plexicorn
backend plexicorn
    balance roundrobin
    option httpchk GET /
    default-server inter 100ms fall 2 rise 2
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check
"""


class HAProxy:
    def __init__(self, directory, ports: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
        self.stats = str(directory / "haproxy.sock")
        config = directory / "haproxy.cfg"
        config.write_text(CONFIG.format(stats=self.stats, **ports))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=TIMEOUT)
        assert check.returncode == 0, check.stdout + check.stderr
        # HAProxy's own log (stderr): each server state change with the failed check's reason.
        self.log = directory / "haproxy.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        self.history: list[tuple[str, str]] = []  # (server, status) each time one changes
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def changes(self) -> str:
        """HAProxy's lines about server state changes (why a check failed), for failure messages."""
        return "\n".join(line for line in self.log.read_text(errors="replace").splitlines() if "Server " in line)

    def status(self) -> dict[str, str]:
        """Health-check status of each backend server: UP, DOWN, ..."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(self.stats)
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row["status"].split()[0] for row in rows if row["pxname"] == "plexicorn"
                and row["svname"] in ("a", "b")}

    def wait_status(self, server: str, status: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.latest(server) != status:
            assert time.monotonic() < deadline, f"HAProxy never saw {server} {status}: {self.history} {self.changes()}"
            time.sleep(0.02)

    def latest(self, server: str) -> str | None:
        return next((status for name, status in reversed(self.history) if name == server), None)

    def start_watching(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:  # the stats socket exists once HAProxy runs
            try:
                self.status()
                break
            except OSError:
                assert time.monotonic() < deadline and self.process.poll() is None, "HAProxy did not start"
                time.sleep(0.02)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for server, status in sorted(self.status().items()):
                if self.latest(server) != status:
                    self.history.append((server, status))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(TIMEOUT)
        self.process.terminate()
        self.process.wait(TIMEOUT)


@pytest.mark.timeout(120)
def test_rolling_restart_and_stop_of_one_instance_behind_haproxy_fail_no_request(plexicorn, tmp_path):
    ports = {"a": free_port(), "b": free_port(), "http1": free_port(), "http2": free_port()}

    def instance(name: str):  # type: ignore[no-untyped-def]
        process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{ports[name]}",
                            "--workers", 2, "--no-access-log")
        return process, set(process.wait_workers(2))

    (a, _), (b, b_pids) = instance("a"), instance("b")
    haproxy = HAProxy(tmp_path, ports)
    try:
        haproxy.start_watching()
        haproxy.wait_status("a", "UP")
        haproxy.wait_status("b", "UP")
        with Load(ports["http1"], http1=3, http2=0) as http1, Load(ports["http2"], http1=0, http2=2) as http2:
            loads = (http1, http2)
            for load in loads:
                load.wait_for_requests(200)

            b.signal(signal.SIGHUP)  # rolling restart of b: HAProxy must not even notice
            b.wait_workers(2)
            b.stderr.wait_for("Rolling restart complete")
            for load in loads:
                load.wait_for_requests(200)
            assert ("b", "DOWN") not in haproxy.history, (haproxy.history, haproxy.changes())

            b.signal(signal.SIGTERM)  # b goes away: drains, HAProxy's check sees it DOWN
            assert b.wait() == 0
            haproxy.wait_status("b", "DOWN")
            for load in loads:
                load.wait_for_requests(200)

            b, b_pids = instance("b")  # and comes back
            haproxy.wait_status("b", "UP")
            for load in loads:
                load.wait_for_requests(200)
            served_by_b = [body for load in loads for body in load.tally.bodies if int(body.split()[1]) in b_pids]
        tallies = [load.tally for load in loads]
    finally:
        haproxy.stop()
    sent = sum(tally.sent for tally in tallies)
    failed = sum(tally.failed for tally in tallies)
    print(f"through HAProxy: {sent} requests sent, {failed} failed, {sum(t.retried for t in tallies)} sent again "
          f"by the client; HAProxy saw b: "
          f"{[status for server, status in haproxy.history if server == 'b']}")
    assert failed == 0, [tally.errors[:5] for tally in tallies]
    assert [status for server, status in haproxy.history if server == "b"] == ["UP", "DOWN", "UP"], haproxy.changes()
    assert served_by_b  # the instance that came back took its share again
    assert a.stop() == 0 and b.stop() == 0
