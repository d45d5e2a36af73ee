"""Helpers for the process-model tests: a `plexicorn` command with its stderr followed line by
line, and ways to see which worker processes answer."""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import test_cli as cli

APPS = Path(__file__).resolve().parent / "apps"
COMMAND = [sys.executable, "-m", "plexicorn"]
TIMEOUT = 15.0
READY = re.compile(r"\(pid (\d+)\) ready")  # the supervisor's line for a worker that serves


def ready_pids(text: str) -> list[int]:
    """The pids of the workers that `text` (a supervisor's stderr) says are ready, in order."""
    return [int(pid) for pid in READY.findall(text)]


class Plexicorn(cli.Plexicorn):
    """test_cli's `plexicorn` process, with the supervisor's workers in view."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), command: list[str] | None = None) -> None:
        super().__init__(args, cwd=cwd, env=env, command=command or COMMAND, pass_fds=pass_fds)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = TIMEOUT) -> int:  # a supervisor drains several workers
        return super().wait(timeout)

    def wait_workers(self, count: int, timeout: float = TIMEOUT) -> list[int]:
        """The pids of the next `count` workers to report ready."""
        pids = []
        for _ in range(count):
            (pid,) = ready_pids(self.stderr.wait_for(") ready", timeout))
            pids.append(pid)
        return pids


@pytest.fixture
def plexicorn(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[Plexicorn] = []

    def start(*args: object, cwd: Path | None = None, **options: object) -> Plexicorn:
        process = Plexicorn([str(arg) for arg in args], cwd=cwd or tmp_path, **options)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def http_get(port: int, path: str = "/", timeout: float = TIMEOUT) -> bytes:
    """One request on a new connection; the response body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return body


def serving_pids(port: int, expected: set[int], timeout: float = TIMEOUT) -> set[int]:
    """Pids answering on `port`, asked until all of `expected` have answered.

    Each request blocks its worker's event loop for 50 ms, so that concurrent connections are
    accepted by the other workers.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout

    def ask() -> None:
        seen.add(int(http_get(port, "/block?seconds=0.05").split()[1]))

    while not expected <= seen:
        assert time.monotonic() < deadline, f"only {seen} of {expected} answered"
        threads = [threading.Thread(target=ask) for _ in range(2 * len(expected))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.02)
