"""Sockets from the system: --bind fd://N, systemd socket activation (the real
systemd-socket-activate), sd_notify to $NOTIFY_SOCKET, and --reuse-port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import free_port
from supervised import APPS, COMMAND, TIMEOUT, http_get, plexicorn, serving_pids  # noqa: F401
from test_cli import assert_one_error_line


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# -- fd:// ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_bind_fd_serves_an_inherited_listening_socket(plexicorn, workers):
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"fd://{sock.fileno()}",
                            "--workers", workers, pass_fds=(sock.fileno(),))
        line = process.stderr.wait_for("Listening on")
        assert f"http://127.0.0.1:{port} " in line
    # The test's copy is closed: only Plexicorn holds the socket now.
    assert http_get(port).startswith(b"old ")
    assert process.stop() == 0


def test_bind_fd_that_is_not_a_listening_socket_is_one_error_line(tmp_path):
    def run(fd: str, pass_fds: tuple[int, ...] = ()) -> str:
        result = subprocess.run([*COMMAND, "good:app", "--app-dir", APPS, "--bind", f"fd://{fd}"], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, pass_fds=pass_fds, capture_output=True, text=True,
                                timeout=TIMEOUT)
        return assert_one_error_line(result)

    assert "cannot listen on fd://99: file descriptor 99 is not open" in run("99")
    assert "cannot listen on fd://0: file descriptor 0 is not a socket" in run("0")  # /dev/null
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, never listening
        fd = bound.fileno()
        assert f"file descriptor {fd} is not a listening stream socket" in run(str(fd), (fd,))
    assert "cannot listen on fd://web: systemd passed no socket named 'web'" in run("web")
    with listening_socket() as sock:
        fd = sock.fileno()
        result = subprocess.run([*COMMAND, "good:app", "--app-dir", APPS, "--bind", f"fd://{fd}", "--bind", f"fd://{fd}"],
                                cwd=tmp_path, stdin=subprocess.DEVNULL, pass_fds=(fd,), capture_output=True, text=True,
                                timeout=TIMEOUT)
        assert f"file descriptor {fd} is given twice" in assert_one_error_line(result)
    assert "invalid --bind 'fd://'" in run("")


# -- systemd socket activation ----------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="needs systemd-socket-activate: apt-get install systemd")
@pytest.mark.parametrize("args", [["--workers", "2"], ["--bind", "fd://web"]], ids=["all-passed-sockets", "by-name"])
def test_systemd_socket_activation(plexicorn, args):
    port = free_port()
    # systemd-socket-activate listens, then execs Plexicorn (same pid) on the first connection
    # with LISTEN_FDS=1, LISTEN_PID and LISTEN_FDNAMES=web, as systemd does for a socket unit.
    activator = ["systemd-socket-activate", "--listen", f"127.0.0.1:{port}", "--fdname", "web", sys.executable]
    process = plexicorn("-m", "plexicorn", "workers_app:app", "--app-dir", APPS, *args, command=activator)
    process.stderr.wait_for(f"Listening on 127.0.0.1:{port} as 3.")
    assert http_get(port).startswith(b"old ")  # waited in the backlog while Plexicorn started
    line = process.stderr.wait_for("Listening on http")
    assert f"http://127.0.0.1:{port} " in line
    assert process.stop() == 0


# -- sd_notify --------------------------------------------------------------------------------------

class NotifySocket:
    """A service manager's NOTIFY_SOCKET: collects datagrams with the sender's pid."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # to see who sends
        self.sock.settimeout(TIMEOUT)
        self.received: list[tuple[int, str]] = []

    def wait_for(self, state: str) -> str:
        while True:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = next(struct.unpack("3i", payload)[0] for level, kind, payload in ancillary
                       if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS))
            self.received.append((pid, data.decode()))
            if state in data.decode().split("\n"):
                return data.decode()

    def close(self) -> None:
        self.sock.close()


def test_sd_notify_ready_reloading_watchdog_stopping_from_the_supervisor(plexicorn, tmp_path):
    notify = NotifySocket(str(tmp_path / "notify"))
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"}
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", 2, env=env)
    ready = notify.wait_for("READY=1")
    assert "STATUS=2 worker(s) serving" in ready
    process.wait_workers(2)
    notify.wait_for("WATCHDOG=1")
    notify.wait_for("WATCHDOG=1")  # again, every WATCHDOG_USEC / 2
    process.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING=1")
    assert "MONOTONIC_USEC=" in reloading  # what Type=notify-reload requires with it
    notify.wait_for("READY=1")
    process.stderr.wait_for("Rolling restart complete")
    process.signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1")
    assert process.wait() == 0
    assert {pid for pid, _ in notify.received} == {process.pid}  # the workers stay quiet
    notify.close()


def test_sd_notify_from_a_single_process(plexicorn, tmp_path):
    notify = NotifySocket(str(tmp_path / "notify"))
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}",
                        env={**os.environ, "NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1")
    assert http_get(port).startswith(b"old ")
    process.signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1")
    assert process.wait() == 0
    notify.close()


# -- --reuse-port -----------------------------------------------------------------------------------

def test_reuse_port_lets_a_second_deployment_listen_beside_the_first(plexicorn):
    port = free_port()
    bind = ("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--no-access-log")
    first = plexicorn(*bind, "--reuse-port")
    first.stderr.wait_for("Listening on")
    refused = plexicorn(*bind)  # without it: the port is taken
    assert refused.wait() == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in refused.stderr.text
    second = plexicorn(*bind, "--reuse-port")
    second.stderr.wait_for("Listening on")
    # The kernel spreads new connections over both.
    assert serving_pids(port, {first.pid, second.pid}) == {first.pid, second.pid}
    assert first.stop() == 0  # the first deployment goes; the second serves on
    deadline = time.monotonic() + TIMEOUT
    for _ in range(20):
        assert int(http_get(port).split()[1]) == second.pid
        assert time.monotonic() < deadline
    assert second.stop() == 0
