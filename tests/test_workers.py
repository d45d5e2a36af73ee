"""--workers: a supervisor process and its workers, with real processes and real signals."""

from __future__ import annotations

import os
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from loadclient import _read_http1_response
from plexicorn.cli import parse_config
from supervised import APPS, COMMAND, TIMEOUT, alive, http_get, plexicorn, serving_pids, wait_gone  # noqa: F401
from test_cli import assert_one_error_line, read_http1_head, read_to_eof


def start_workers(plexicorn, count: int, *args: object, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", count,
                        *args, env=env)
    pids = process.wait_workers(count)
    return process, port, pids


def wait_until(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- N workers serve -------------------------------------------------------------------------------

def test_every_worker_serves_tls_http2_and_http11(plexicorn, tls_files, verify):
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", 3,
                        "--certfile", tls_files[0], "--keyfile", tls_files[1], "--no-access-log")
    pids = process.wait_workers(3)
    assert len(set(pids)) == 3 and process.pid not in pids
    # One line per listener (from one worker), one per worker; the supervisor serves nothing.
    assert process.stderr.text.count("Listening on") == 1
    assert f"Supervisor (pid {process.pid}) starting 3 worker(s)" in process.stderr.text
    def ask(http2: bool, seen: set[int]) -> None:
        # A new connection each time (the kernel picks the worker); the worker's loop is
        # blocked 50 ms so that the concurrent ones go to the others.
        with httpx.Client(http1=not http2, http2=http2, verify=verify, timeout=TIMEOUT) as client:
            response = client.get(f"https://localhost:{port}/block?seconds=0.05")
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        seen.add(int(response.text.split()[1]))

    for http2 in (True, False):
        seen: set[int] = set()
        deadline = time.monotonic() + TIMEOUT
        while seen != set(pids):
            assert time.monotonic() < deadline, f"{seen} of {pids} answered"
            threads = [threading.Thread(target=ask, args=(http2, seen)) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT)
    assert process.stop() == 0
    for pid in pids:
        assert not alive(pid)


def test_dev_cert_with_workers_is_created_once(plexicorn, tmp_path):
    port = free_port()
    certs = tmp_path / "certs"
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", 3,
                        "--dev-cert", "--certs-dir", certs)
    pids = process.wait_workers(3)
    assert process.stderr.text.count("Created a development CA") == 1
    verify = ssl.create_default_context(cafile=str(certs / "plexicorn-dev-ca.pem"))
    with httpx.Client(http2=True, verify=verify, timeout=TIMEOUT) as client:
        response = client.get(f"https://localhost:{port}/")
    assert response.http_version == "HTTP/2" and int(response.text.split()[1]) in pids
    assert process.stop() == 0


def test_workers_auto_is_the_cpus_this_process_may_use():
    _, config = parse_config(["app:app", "--workers", "auto"])
    assert config.workers == len(os.sched_getaffinity(0))


# -- workers that die, hang, fail -----------------------------------------------------------------

def test_kill_9_of_a_worker_under_load_replaces_it_and_the_others_clients_never_notice(plexicorn):
    process, port, pids = start_workers(plexicorn, 2, "--no-access-log")
    victim, survivor = pids
    # Keep-alive connections to both workers (a blocked worker leaves the next connection to the other).
    connections: dict[int, list[socket.socket]] = {victim: [], survivor: []}
    deadline = time.monotonic() + TIMEOUT
    while not (connections[victim] and connections[survivor]):
        assert time.monotonic() < deadline
        socks = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(4)]
        for sock in socks:
            sock.sendall(b"GET /block?seconds=0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in socks:
            connections[int(_read_http1_response(sock)[1].split()[1])].append(sock)
    results: dict[int, list[object]] = {victim: [], survivor: []}
    stop = threading.Event()

    def keep_asking(pid: int, sock: socket.socket) -> None:
        while not stop.is_set():
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                results[pid].append(_read_http1_response(sock)[1])
            except Exception as exc:  # noqa: BLE001 - recorded, judged below
                results[pid].append(exc)
                return

    threads = [threading.Thread(target=keep_asking, args=(pid, sock))
               for pid, socks in connections.items() for sock in socks]
    for thread in threads:
        thread.start()
    wait_until(lambda: all(len(results[pid]) >= 10 for pid in results))  # load flowing on both workers
    os.kill(victim, signal.SIGKILL)
    process.stderr.wait_for(f"(pid {victim}) was killed by SIGKILL: starting another")
    (replacement,) = process.wait_workers(1)
    before = len(results[survivor])
    wait_until(lambda: len(results[survivor]) >= before + 50)  # still served after the kill
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT)
    for socks in connections.values():
        for sock in socks:
            sock.close()
    assert any(isinstance(result, Exception) for result in results[victim])  # its clients lost their connection
    assert not [result for result in results[survivor] if isinstance(result, Exception)]
    assert serving_pids(port, {survivor, replacement}) == {survivor, replacement}
    assert process.stop() == 0


def test_a_worker_that_stops_answering_the_heartbeat_is_killed_and_replaced(plexicorn):
    # 2 s: the replacement must answer every heartbeat within it on a loaded machine too, and the
    # blocked worker (30 s) is still killed after 2-2.5 s.
    process, port, (first,) = start_workers(plexicorn, 1, "--max-requests", 1000, "--worker-healthcheck-timeout", 2)
    def block() -> None:
        with pytest.raises((AssertionError, OSError)):  # its worker is killed: no response
            http_get(port, "/block?seconds=30")

    blocked = threading.Thread(target=block, daemon=True)
    blocked.start()  # the worker's event loop sleeps 30 s: no heartbeat answers
    line = process.stderr.wait_for("did not answer the heartbeat")
    assert f"Worker 1 (pid {first})" in line
    process.stderr.wait_for(f"Worker 1 (pid {first}) was killed by SIGKILL: starting another")
    (replacement,) = process.wait_workers(1)
    assert http_get(port).split()[1] == str(replacement).encode()
    assert process.stop() == 0


def test_a_worker_that_cannot_be_started_is_retried_with_a_back_off(plexicorn):
    process, port, (first, second) = start_workers(plexicorn, 2)
    limit = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (3, limit[1]))  # no new descriptor: EMFILE
    try:
        os.kill(first, signal.SIGKILL)
        process.stderr.wait_for("a new worker failed to start: cannot start a worker process")
    finally:
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, limit)
    (replacement,) = process.wait_workers(1)  # the keeper is still at work
    assert serving_pids(port, {second, replacement}) == {second, replacement}
    assert "Traceback" not in process.stderr.text
    assert process.stop() == 0


def test_a_killed_worker_is_replaced_even_when_a_process_it_started_lives_on(plexicorn):
    process, port, _ = start_workers(plexicorn, 2)
    victim = int(http_get(port, "/spawn").split()[1])  # leaves a `sleep 30` in the worker's process group
    try:
        os.kill(victim, signal.SIGKILL)
        # Waiting for the end of the control socket, which `sleep 30` holds, would take 30 s;
        # a fresh interpreter can take seconds on a loaded machine.
        process.stderr.wait_for(f"(pid {victim}) was killed by SIGKILL: starting another", timeout=TIMEOUT)
        process.wait_workers(1, timeout=TIMEOUT)
    finally:
        os.killpg(victim, signal.SIGKILL)
    assert process.stop() == 0


def test_a_paused_supervisor_kills_no_healthy_worker_when_it_resumes(plexicorn):
    process, port, pids = start_workers(plexicorn, 2, "--worker-healthcheck-timeout", 2)
    process.signal(signal.SIGSTOP)  # Ctrl-Z, docker pause: the workers keep answering, unread
    time.sleep(4)
    process.signal(signal.SIGCONT)
    time.sleep(2.5)  # past a timeout since it resumed
    assert serving_pids(port, set(pids)) == set(pids)
    assert "did not answer the heartbeat" not in process.stderr.text
    assert process.stop() == 0


@pytest.mark.parametrize(("app", "env", "status", "message"), [
    pytest.param("raises_on_import:app", {}, 2, "importing 'raises_on_import' failed", id="import-error"),
    pytest.param("workers_app:app", {"PLEXICORN_TEST_FAIL_STARTUP": "1"}, 3,
                 "application startup failed: database unreachable", id="lifespan-failure"),
])
def test_a_worker_failing_at_startup_stops_the_server_with_its_error(tmp_path, app, env, status, message):
    # The timeout is the bound on stopping (no elapsed-time check: 3 interpreters start on 2 vCPUs
    # in CI). A 60 s graceful timeout puts the wrong ways of stopping far past it: respawning, or
    # waiting out the graceful timeout (or the kill margin after it) for the other workers.
    result = subprocess.run([*COMMAND, app, "--app-dir", APPS, "--bind", "127.0.0.1:0", "--workers", "3",
                             "--graceful-timeout", "60"],
                            cwd=tmp_path, env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == status, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("plexicorn: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr
    assert "starting another" not in result.stderr  # no respawn loop
    assert "Listening on" not in result.stderr


@pytest.mark.parametrize("import_seconds", [0, 1], ids=["serving", "starting"])
def test_workers_stop_by_themselves_when_the_supervisor_is_killed(plexicorn, import_seconds):
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", 2,
                        env={**os.environ, "PLEXICORN_TEST_IMPORT_SECONDS": str(import_seconds)})
    process.stderr.wait_for("starting 2 worker(s)")
    if not import_seconds:
        process.wait_workers(2)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    wait_until(lambda: len(children.read_text().split()) == 2)
    workers = [int(pid) for pid in children.read_text().split()]
    process.kill()  # SIGKILL: no goodbye; the workers see their end of the control socket close
    for pid in workers:
        wait_gone(pid)
    assert "Traceback" not in process.stderr.text


# -- signals ---------------------------------------------------------------------------------------

def test_sigterm_drains_every_worker_in_flight_requests_finish(plexicorn):
    process, port, pids = start_workers(plexicorn, 2)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /slow?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")  # in flight in a worker
        process.signal(signal.SIGTERM)
        process.stderr.wait_for("Shutting down")
        process.stderr.wait_for("Shutting down")  # both workers closed their listening sockets
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        rest = read_to_eof(sock)  # the rest of the body, then the worker closes the connection
    assert rest.startswith(b"old ") and int(rest.split()[1]) in pids
    assert process.wait() == 0
    assert process.stderr.text.count(") stopped") == 2


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGQUIT,)], ids=["SIGTERM-twice", "SIGINT-twice", "SIGQUIT"])
def test_stop_at_once_while_a_request_hangs(plexicorn, signals):
    process, port, _ = start_workers(plexicorn, 2)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        process.signal(signals[0])
        if len(signals) > 1:
            process.stderr.wait_for("Shutting down")
            process.signal(signals[1])
        # Not the 10 s graceful timeout (from the first signal): loose below it for a loaded machine.
        assert process.wait(timeout=9) == 0
        assert time.monotonic() - started < 8
        try:
            assert read_to_eof(sock) == b""
        except ConnectionResetError:
            pass
    assert "stopping now" in process.stderr.text


def test_sighup_and_sigttin_while_starting_wait_for_the_start_up(plexicorn):
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--workers", 2,
                        env={**os.environ, "PLEXICORN_TEST_IMPORT_SECONDS": "0.5"})
    process.stderr.wait_for("starting 2 worker(s)")
    process.signal(signal.SIGHUP)  # while the workers import
    process.signal(signal.SIGTTIN)
    process.wait_workers(2)
    process.stderr.wait_for("Rolling restart complete")  # then
    assert "Adding a worker: 3 wanted" in process.stderr.text
    assert "failed" not in process.stderr.text
    assert process.stop() == 0


def test_sighup_once_stopping_is_ignored(plexicorn):
    process, port, _ = start_workers(plexicorn, 2)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /slow?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")
        process.signal(signal.SIGTERM)
        process.stderr.wait_for("Shutting down")
        process.signal(signal.SIGHUP)
        process.stderr.wait_for("SIGHUP ignored: the server is stopping")
        assert read_to_eof(sock).startswith(b"old ")
    assert process.wait() == 0
    assert "Rolling restart" not in process.stderr.text


def test_a_draining_worker_whose_supervisor_dies_keeps_draining(plexicorn):
    process, port, _ = start_workers(plexicorn, 2)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /slow?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")
        process.signal(signal.SIGTERM)
        process.stderr.wait_for("Shutting down")
        process.stderr.wait_for("Shutting down")
        process.kill()
        assert read_to_eof(sock).startswith(b"old ")  # not cut short


def test_sigttin_adds_a_worker_and_sigttou_removes_one(plexicorn):
    process, port, pids = start_workers(plexicorn, 2)
    process.signal(signal.SIGTTIN)
    (added,) = process.wait_workers(1)
    assert f"Worker 3 (pid {added}) ready" in process.stderr.text
    assert serving_pids(port, {*pids, added}) == {*pids, added}
    process.signal(signal.SIGTTOU)
    process.stderr.wait_for(f"Worker 3 (pid {added}) stopped")
    wait_gone(added)
    assert process.stop() == 0


def test_sigttou_for_a_worker_still_starting_is_no_failed_start(plexicorn):
    process, port, pids = start_workers(plexicorn, 2, env={**os.environ, "PLEXICORN_TEST_IMPORT_SECONDS": "1"})
    process.signal(signal.SIGTTIN)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    wait_until(lambda: len(children.read_text().split()) == 3)
    time.sleep(0.3)  # the supervisor has its handle on it (its import takes 1 s)
    process.signal(signal.SIGTTOU)  # stops the new worker while it imports
    process.stderr.wait_for("Removing a worker: 2 wanted")
    time.sleep(1.5)
    assert serving_pids(port, set(pids)) == set(pids)
    assert process.stop() == 0
    assert "failed to start" not in process.stderr.text


def test_max_requests_replaces_workers_gracefully(plexicorn):
    process, port, pids = start_workers(plexicorn, 2, "--max-requests", 5, "--max-requests-jitter", 2)
    seen: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    while seen <= set(pids):  # each request on a new connection, none may fail
        assert time.monotonic() < deadline, "no worker was replaced"
        seen.add(int(http_get(port).split()[1]))
    line = process.stderr.wait_for("(--max-requests): replacing it")
    served = int(line.split(" served ")[1].split()[0])
    assert 5 <= served <= 7
    recycled = int(line.split("(pid ")[1].split(")")[0])
    process.stderr.wait_for(f"(pid {recycled}) stopped")  # drained once its replacement served
    assert process.stop() == 0


# -- mistakes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["--workers", "0"], "--workers must be from 1 to 1024 (or auto), not 0", id="zero"),
    pytest.param(["--workers", "many"], "--workers must be a number of processes or auto, not 'many'", id="many"),
    pytest.param(["--workers", "-3"], "--workers must be a number of processes or auto, not '-3'", id="negative"),
    pytest.param(["--worker-healthcheck-timeout", "0"], "--worker-healthcheck-timeout must be greater than 0",
                 id="healthcheck-zero"),
    pytest.param(["--max-requests", "-1"], "--max-requests cannot be negative", id="max-requests-negative"),
    # Abbreviations are off: this once silently meant --max-requests-per-connection.
    pytest.param(["--max-requests-per", "10"], "unrecognized arguments: --max-requests-per", id="abbreviation"),
])
def test_bad_process_settings_are_one_error_line(tmp_path, args, expected):
    result = subprocess.run([*COMMAND, "good:app", "--app-dir", APPS, *args], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert expected in assert_one_error_line(result)


def test_max_requests_is_its_own_flag_now():
    _, config = parse_config(["app:app", "--max-requests", "10"])
    assert (config.max_requests, config.max_requests_per_connection) == (10, 0)
