"""The `plexicorn` command end to end: real processes, real sockets, real signals.

User mistakes must end in one `plexicorn: error:` line and exit status 2 (3 for a failed
lifespan startup); a running server must stop gracefully on SIGTERM with status 0.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import h2.connection
import h2.events
import httpx
import pytest
from conftest import REPO, free_port
from h2client import H2Client
from plexicorn.config import Config

APPS = Path(__file__).resolve().parent / "apps"
MODULE_COMMAND = [sys.executable, "-m", "plexicorn"]
TIMEOUT = 10.0


# -- helpers -----------------------------------------------------------------------------------

class LineReader:
    """Collects a stream's lines in a thread so tests can wait for one with a deadline."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        """The next line containing `text` (lines before it are skipped, but kept in .text)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line containing {text!r} within {timeout} s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"stream ended before a line containing {text!r}:\n{self.text}")
            if text in line:
                return line

    def join(self, timeout: float = TIMEOUT) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        return "".join(self.lines)


class Plexicorn:
    """A running `plexicorn` process."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None, command: list[str],
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.process = subprocess.Popen([*command, *args], cwd=cwd, env=env, pass_fds=pass_fds,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.stderr = LineReader(self.process.stderr)

    def wait_listening(self) -> int:
        """Wait for the "Listening on" line; return its port."""
        line = self.stderr.wait_for("Listening on")
        match = re.search(r"Listening on https?://[^ ]*:(\d+) ", line)
        assert match, line
        return int(match.group(1))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Exit status, once the process is gone and its stderr read to the end."""
        status = self.process.wait(timeout)
        self.stderr.join()
        return status

    def stop(self) -> int:
        self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def plexicorn(tmp_path):  # type: ignore[no-untyped-def]
    """Start `plexicorn ARGS...` (from tmp_path unless cwd= is given); every process is killed after the test."""
    processes: list[Plexicorn] = []

    def start(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
              command: list[str] | None = None) -> Plexicorn:
        process = Plexicorn([str(arg) for arg in args], cwd=cwd or tmp_path, env=env,
                            command=command or MODULE_COMMAND)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()


def serve_good_app(plexicorn, *args: object, env: dict[str, str] | None = None) -> tuple[Plexicorn, int]:  # type: ignore[no-untyped-def]
    """tests/apps/good.py on a free port, once it is listening."""
    port = free_port()
    process = plexicorn("good:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", *args, env=env)
    assert process.wait_listening() == port
    return process, port


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODULE_COMMAND, *(str(arg) for arg in args)], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT)


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The whole output is one `plexicorn: error:` line and the exit status is `status`; return the line."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("plexicorn: error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def read_http1_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before the response head: {data!r}"
        data += chunk
    return data


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=15)


# -- user mistakes: one line, exit status 2 -----------------------------------------------------

SIMPLE_MISTAKES = [
    pytest.param(["no_such_module:app"], ["cannot import module 'no_such_module': no such module",
                                          "--app-dir"], id="missing-module"),
    pytest.param(["good:no_such_app"], ["module 'good' has no attribute 'no_such_app'"], id="missing-attribute"),
    pytest.param(["broken_syntax:app"], ["SyntaxError", f"{APPS / 'broken_syntax.py'}:4"], id="syntax-error"),
    pytest.param(["raises_on_import:app"], ["importing 'raises_on_import' failed",
                                            "RuntimeError: DATABASE_URL is not set",
                                            f"{APPS / 'raises_on_import.py'}:3"], id="raises-on-import"),
    pytest.param(["good"], ["APP must be MODULE:ATTRIBUTE", "'good'"], id="no-colon"),
    pytest.param([], ["the following arguments are required: APP"], id="missing-app"),
    pytest.param(["good:app", "--keyfile", "key.pem"], ["--keyfile needs --certfile"], id="keyfile-alone"),
    pytest.param(["good:app", "--certfile", "cert.pem", "--dev-cert"],
                 ["either --certfile/--keyfile or --dev-cert, not both"], id="certfile-and-dev-cert"),
    pytest.param(["good:app", "--bind", "nonsense"], ["invalid --bind 'nonsense'", "HOST:PORT"], id="bind-nonsense"),
    pytest.param(["good:app", "--bind", "127.0.0.1:99999"], ["invalid --bind '127.0.0.1:99999'",
                                                             "port must be a number from 0 to 65535"],
                 id="bind-port-too-large"),
    pytest.param(["good:app", "--bind", "::1:80"], ["invalid --bind '::1:80'", "[::1]:8443"],
                 id="bind-ipv6-without-brackets"),
    pytest.param(["good:app", "--lifespan", "maybe"], ["--lifespan", "invalid choice: 'maybe'"], id="bad-choice"),
    pytest.param(["good:app", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"], id="unknown-flag"),
    pytest.param(["good:app", "--graceful-timeout", "soon"], ["--graceful-timeout", "invalid float value"],
                 id="not-a-number"),
    pytest.param(["good:app", "--fd", "-1"], ["argument --fd: '-1': expected a file descriptor"], id="fd-negative"),
    pytest.param(["good:app", "--fd", "three"], ["argument --fd: 'three': expected a file descriptor"],
                 id="fd-not-a-number"),
    # Two HSTS fields in one response: the operator picks one of the two ways.
    pytest.param(["good:app", "--certfile", "cert.pem", "--hsts", "600", "--header",
                  "Strict-Transport-Security: max-age=600; includeSubDomains"],
                 ["--hsts and --header strict-transport-security both set HSTS: use one"], id="hsts-twice"),
    pytest.param(["good:app", "--root-path", "api/"], ["--root-path must start with '/'"], id="bad-root-path"),
    pytest.param(["good:app", "--http", "2", "--no-h2c"], ["--http 2 and --no-h2c contradict each other"],
                 id="http2-without-h2c"),
    pytest.param(["good:app", "--ws-ping-timeout", "0"], ["--ws-ping-timeout must be greater than 0"],
                 id="ws-ping-timeout-zero"),
    pytest.param(["good:app", "--ws-max-message-size", "0"], ["--ws-max-message-size must be at least 1"],
                 id="ws-max-message-size-zero"),
    pytest.param(["good:app", "--wsgi-threads", "0"], ["--wsgi-threads must be at least 1"], id="wsgi-threads-zero"),
    pytest.param(["good:app", "--interface", "cgi"], ["--interface", "cgi"], id="interface-unknown"),
    pytest.param(["good:app", "--gc-threshold", "-1"], ["--gc-threshold must be from 0 to 2147483647"],
                 id="gc-threshold-negative"),
    pytest.param(["good:app", "--gc-threshold", "3000000000"], ["--gc-threshold must be from 0 to 2147483647"],
                 id="gc-threshold-too-large"),
]


@pytest.mark.parametrize(("args", "expected"), SIMPLE_MISTAKES)
def test_user_mistake_is_one_error_line_and_exit_status_2(tmp_path, args, expected):
    line = assert_one_error_line(run_cli(*args, "--app-dir", APPS, cwd=tmp_path))
    for text in expected:
        assert text in line


IMPORTER_MISTAKES = [
    pytest.param(["factory:settings"], ["'factory:settings' is not callable", "--factory"], id="not-callable"),
    pytest.param(["factory:Application"], ["'factory:Application' is a class", "--factory"], id="class"),
    pytest.param(["factory:create_app"], ["'factory:create_app' is a function taking ()",
                                          "not an ASGI 3 app (scope, receive, send)", "WSGI app (environ, start_response)",
                                          "pass --factory"], id="factory-without-flag"),
    pytest.param(["factory:takes_anything"], ["'factory:takes_anything' is a function taking (*args)",
                                              "fits several interfaces; pass --interface asgi3, asgi2 or wsgi"],
                 id="ambiguous-interface"),
    pytest.param(["factory:create_app", "--interface", "wsgi"],
                 ["'factory:create_app' is a function taking (): it cannot be called as --interface wsgi"],
                 id="interface-does-not-fit"),
    pytest.param(["factory:create_nothing", "--factory"], ["factory 'factory:create_nothing' did not return a callable"],
                 id="factory-returns-non-callable"),
    pytest.param(["factory:create_factory", "--factory"],
                 ["the app built by factory 'factory:create_factory' is a function taking ()",
                  "not an ASGI 3 app (scope, receive, send)"],
                 id="factory-returns-non-asgi-callable"),
    pytest.param(["factory:create_broken", "--factory"], ["app factory 'factory:create_broken' failed",
                                                          "ValueError: missing SECRET_KEY",
                                                          f"{APPS / 'factory.py'}:"], id="factory-raises"),
]


@pytest.mark.parametrize(("args", "expected"), IMPORTER_MISTAKES)
def test_app_that_is_not_an_asgi_app_is_a_user_mistake(tmp_path, args, expected):
    line = assert_one_error_line(run_cli(*args, "--app-dir", APPS, cwd=tmp_path))
    for text in expected:
        assert text in line


def test_port_already_in_use_is_a_user_mistake(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        line = assert_one_error_line(run_cli("good:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}",
                                             cwd=tmp_path))
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in line


def test_missing_or_unreadable_certificate_is_a_user_mistake(tmp_path, tls_files):
    not_pem = tmp_path / "not-a-cert.pem"
    not_pem.write_text("hello\n")
    cases = [
        (tmp_path / "missing.pem", [], f"cannot read certificate file '{tmp_path / 'missing.pem'}'"),
        # A directory stands in for an unreadable file: the tests may run as root, who can read anything.
        (tmp_path, [], f"cannot read certificate file '{tmp_path}': Is a directory"),
        (not_pem, [], f"certificate file '{not_pem}' does not contain a PEM certificate"),
        (tls_files[0], ["--keyfile", tmp_path / "missing.key"],
         f"cannot read private key file '{tmp_path / 'missing.key'}'"),
    ]
    for certfile, extra, expected in cases:
        line = assert_one_error_line(run_cli("good:app", "--app-dir", APPS, "--bind", "127.0.0.1:0",
                                             "--certfile", certfile, *extra, cwd=tmp_path))
        assert expected in line


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param('colour = "blue"\n', "unknown setting 'colour'", id="unknown-key"),
    pytest.param("access_log = \n", "is not valid TOML", id="invalid-toml"),
    pytest.param('access_log = "no"\n', "access_log must be true or false", id="wrong-type"),
])
def test_bad_config_file_is_a_user_mistake(tmp_path, content, expected):
    config = tmp_path / "plexicorn.toml"
    config.write_text(content)
    line = assert_one_error_line(run_cli("good:app", "--app-dir", APPS, "--config", config, cwd=tmp_path))
    assert str(config) in line
    assert expected in line


def test_missing_config_file_is_a_user_mistake(tmp_path):
    line = assert_one_error_line(run_cli("good:app", "--app-dir", APPS, "--config", tmp_path / "nope.toml",
                                         cwd=tmp_path))
    assert f"cannot read config file '{tmp_path / 'nope.toml'}'" in line


def test_lifespan_startup_failure_exits_3_with_the_apps_message(tmp_path):
    result = run_cli("lifespan_fail:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "Listening on" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("plexicorn: error:")]
    assert errors == ["plexicorn: error: application startup failed: database unreachable"], result.stderr


# -- help -------------------------------------------------------------------------------------------

def test_help_lists_a_flag_for_every_config_field(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    flags = set(re.findall(r"--[a-z0-9-]+", result.stdout))
    assert "--config" in flags
    for config_field in dataclasses.fields(Config):
        flag = "--" + config_field.name.replace("_", "-")
        assert flag in flags, f"{flag} missing from --help"
        if isinstance(config_field.default, bool):
            assert "--no-" + flag[2:] in flags, f"--no-{flag[2:]} missing from --help"


# -- serving --------------------------------------------------------------------------------------

@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_loop_flag_selects_the_event_loop(plexicorn, loop):
    process, port = serve_good_app(plexicorn, "--loop", loop)
    response = httpx.get(f"http://127.0.0.1:{port}/scope", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["loop"].split(".")[0] == loop
    assert process.stop() == 0


def test_console_script_serves_the_readme_quick_start(plexicorn, tmp_path):
    """`plexicorn demo:app --app-dir examples --dev-cert`, run from the repository as the README says."""
    script = shutil.which("plexicorn", path=os.path.dirname(sys.executable))
    assert script is not None, "the plexicorn console script is not installed next to the interpreter"
    port = free_port()
    process = plexicorn("demo:app", "--app-dir", "examples", "--dev-cert", "--bind", f"127.0.0.1:{port}",
                        "--certs-dir", tmp_path / "certs", cwd=REPO, command=[script])
    assert process.wait_listening() == port
    page = curl("--http2", "-k", "-w", "\n%{http_version}", f"https://localhost:{port}/")
    assert page.returncode == 0, page.stderr
    body, _, version = page.stdout.rpartition("\n")
    assert version == "2"
    assert "Hello from Plexicorn" in body
    hello = curl("--http2", "-k", "-w", "\n%{http_version}", f"https://localhost:{port}/hello")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "Hello over HTTP/2\n\n2"
    assert process.stop() == 0


def test_dev_cert_is_created_once_then_reused(plexicorn, tmp_path):
    certs = tmp_path / "certs"
    ca, ca_key, leaf, leaf_key = (certs / name for name in
                                  ("plexicorn-dev-ca.pem", "plexicorn-dev-ca.key", "localhost.pem", "localhost.key"))

    process, port = serve_good_app(plexicorn, "--dev-cert", "--certs-dir", certs)
    stderr = process.stderr.text
    assert f"Created a development CA: {ca}" in stderr
    hint = next(line for line in stderr.splitlines() if "trust it with" in line)
    assert f"curl --cacert {ca} https://localhost:{port}/" in hint
    assert ca.is_file() and leaf.is_file()
    assert ca_key.stat().st_mode & 0o777 == 0o600
    assert leaf_key.stat().st_mode & 0o777 == 0o600

    result = curl("--cacert", str(ca), "--http2", "-w", "\n%{http_version}", f"https://localhost:{port}/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello over HTTP/2\n2"
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(ca)), timeout=TIMEOUT) as client:
        response = client.get(f"https://localhost:{port}/hello")
    assert response.http_version == "HTTP/2"
    assert response.text == "Hello over HTTP/2"
    assert process.stop() == 0

    before = {path: path.read_bytes() for path in (ca, ca_key, leaf, leaf_key)}
    process, port = serve_good_app(plexicorn, "--dev-cert", "--certs-dir", certs)
    assert "Created" not in process.stderr.text
    assert "Issued" not in process.stderr.text
    assert f"Development CA: {ca}" in process.stderr.text
    assert {path: path.read_bytes() for path in before} == before
    result = curl("--cacert", str(ca), "--http2", "-w", "\n%{http_version}", f"https://localhost:{port}/hello")
    assert result.stdout == "Hello over HTTP/2\n2", result.stderr
    assert process.stop() == 0


def test_access_log_names_the_protocol_version(plexicorn, tls_files, verify):
    process, port = serve_good_app(plexicorn, "--certfile", tls_files[0], "--keyfile", tls_files[1])
    for http2, version in ((True, "2"), (False, "1.1")):
        with httpx.Client(http2=http2, verify=verify, timeout=TIMEOUT) as client:
            response = client.get(f"https://localhost:{port}/hello")
        assert response.text == f"Hello over HTTP/{version}"
        line = process.stderr.wait_for(f'"GET /hello HTTP/{version}"')
        assert re.search(rf'127\.0\.0\.1:\d+ - "GET /hello HTTP/{re.escape(version)}" 200 '
                         rf'{len(response.content)} \d+\.\d+ms "python-httpx/[^"]+"$', line.rstrip("\n")), line
    assert process.stop() == 0


def test_no_access_log_flag_suppresses_access_lines(plexicorn):
    process, port = serve_good_app(plexicorn, "--no-access-log")
    assert httpx.get(f"http://127.0.0.1:{port}/hello", timeout=TIMEOUT).status_code == 200
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:  # h2c with prior knowledge
        response = client.get(f"http://127.0.0.1:{port}/hello")
    assert response.http_version == "HTTP/2"
    assert process.stop() == 0
    assert "Listening on" in process.stderr.text  # other logging still on
    assert '"GET' not in process.stderr.text


def test_log_level_warning_hides_info_and_access_lines(plexicorn, tmp_path):
    port = free_port()
    process = plexicorn("good:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", "--log-level", "warning")
    # Nothing is logged at this level, so poll for the listening socket instead of reading stderr.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
            break
        except ConnectionRefusedError:
            assert process.process.poll() is None, process.stderr.text
            assert time.monotonic() < deadline, "server did not start listening"
            time.sleep(0.02)
    assert httpx.get(f"http://127.0.0.1:{port}/hello", timeout=TIMEOUT).status_code == 200
    assert process.stop() == 0
    assert "Listening on" not in process.stderr.text
    assert " INFO " not in process.stderr.text
    assert '"GET' not in process.stderr.text


def test_config_file_settings_are_applied(plexicorn, tmp_path):
    port = free_port()
    config = tmp_path / "plexicorn.toml"
    config.write_text(f'bind = ["127.0.0.1:{port}"]\naccess_log = false\nroot_path = "/api"\n')
    process = plexicorn("good:app", "--app-dir", APPS, "--config", config)
    assert process.wait_listening() == port
    # The proxy in front strips the prefix; the app sees it back in root_path and path.
    scope = httpx.get(f"http://127.0.0.1:{port}/scope", timeout=TIMEOUT).json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"
    assert process.stop() == 0
    assert '"GET' not in process.stderr.text


def test_command_line_flags_override_the_config_file(plexicorn, tmp_path):
    file_port, flag_port = free_port(), free_port()
    config = tmp_path / "plexicorn.toml"
    config.write_text(f'bind = ["127.0.0.1:{file_port}"]\naccess_log = false\nroot_path = "/api"\n')
    process = plexicorn("good:app", "--app-dir", APPS, "--config", config,
                        "--bind", f"127.0.0.1:{flag_port}", "--access-log", "--root-path", "/v2")
    assert process.wait_listening() == flag_port
    scope = httpx.get(f"http://127.0.0.1:{flag_port}/scope", timeout=TIMEOUT).json()
    assert scope["root_path"] == "/v2"
    assert scope["path"] == "/v2/scope"
    process.stderr.wait_for('"GET /scope HTTP/1.1" 200')
    assert_refused(file_port)
    assert process.stop() == 0


def test_factory_flag_calls_the_factory(plexicorn):
    for spec in ("factory:create_app", "factory:Application"):
        port = free_port()
        process = plexicorn(spec, "--factory", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}")
        assert process.wait_listening() == port
        response = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.text == "Hello over HTTP/1.1"
        assert process.stop() == 0


def test_app_dir_makes_a_module_elsewhere_importable(plexicorn, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "elsewhere_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from elsewhere'})\n")
    # From tmp_path the module is one directory down: not importable without --app-dir.
    line = assert_one_error_line(run_cli("elsewhere_app:app", "--lifespan", "off", cwd=tmp_path))
    assert "cannot import module 'elsewhere_app'" in line
    port = free_port()
    process = plexicorn("elsewhere_app:app", "--app-dir", "project", "--lifespan", "off",
                        "--bind", f"127.0.0.1:{port}", cwd=tmp_path)
    assert process.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "from elsewhere"
    assert process.stop() == 0


def test_root_path_flag_is_in_the_scope(plexicorn):
    process, port = serve_good_app(plexicorn, "--root-path", "/api")
    # The proxy in front strips the prefix; the app sees it back in root_path and path.
    scope = httpx.get(f"http://127.0.0.1:{port}/scope", timeout=TIMEOUT).json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"
    assert process.stop() == 0


# -- shutdown -----------------------------------------------------------------------------------

def test_sigterm_runs_lifespan_shutdown_and_exits_0(plexicorn, tmp_path):
    marker = tmp_path / "shutdown-marker"
    process, port = serve_good_app(plexicorn, env={**os.environ, "PLEXICORN_TEST_SHUTDOWN_MARKER": str(marker)})
    assert httpx.get(f"http://127.0.0.1:{port}/hello", timeout=TIMEOUT).status_code == 200
    assert not marker.exists()
    assert process.stop() == 0
    assert marker.read_text() == "shutdown complete"


def test_sigterm_lets_an_in_flight_http11_request_finish_and_refuses_new_connections(plexicorn):
    process, port = serve_good_app(plexicorn)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345")
        head = read_http1_head(sock)  # the app has the request: it answered before reading the body
        assert head.startswith(b"HTTP/1.1 200 ")
        process.signal(signal.SIGTERM)
        process.stderr.wait_for("Shutting down")  # logged after the listening sockets are closed
        assert_refused(port)
        sock.sendall(b"67890")
        rest = read_to_eof(sock)  # the server closes the connection once the response is done
    assert b"received 10 bytes" in head + rest
    assert process.wait() == 0


def test_sigterm_lets_an_in_flight_http2_stream_finish_after_goaway(plexicorn):
    process, port = serve_good_app(plexicorn)
    with H2Client(port) as client:
        stream_id = client.request("POST", "/upload", body=b"x" * 1000, end_stream=False)
        client.wait_for(lambda: client.responses[stream_id]["status"] == 200)
        process.signal(signal.SIGTERM)
        # Two graceful GOAWAYs (RFC 9113 §6.8): 2^31-1 first, then, after a PING round trip,
        # the last stream served.
        client.wait_for(lambda: len(client.events_of(h2.events.ConnectionTerminated)) == 2)
        first, second = client.events_of(h2.events.ConnectionTerminated)
        assert (first.error_code, first.last_stream_id) == (0, 2**31 - 1)
        assert (second.error_code, second.last_stream_id) == (0, stream_id)
        assert_refused(port)
        client.send_body(stream_id, b"y" * 10)
        response = client.response(stream_id)
        assert response["reset"] is None
        assert bytes(response["body"]) == b"received 1010 bytes"
        client.wait_closed()
    assert process.wait() == 0


@pytest.mark.parametrize("second_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_stops_at_once_while_a_request_hangs(plexicorn, second_signal):
    process, port = serve_good_app(plexicorn)  # graceful timeout 10 s by default
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()  # the graceful timeout runs from the first signal
        process.signal(signal.SIGTERM)
        process.stderr.wait_for("Shutting down")
        process.signal(second_signal)
        # Not the 10 s graceful timeout: loose below it for a loaded machine.
        assert process.wait(timeout=9) == 0
        assert time.monotonic() - started < 8
        try:
            assert read_to_eof(sock) == b""  # the hanging response was cut off
        except ConnectionResetError:
            pass
    assert "stopping now" in process.stderr.text


def test_graceful_timeout_cuts_a_hanging_request_and_still_runs_lifespan_shutdown(plexicorn, tmp_path):
    marker = tmp_path / "shutdown-marker"
    process, port = serve_good_app(plexicorn, "--graceful-timeout", "0.3",
                                   env={**os.environ, "PLEXICORN_TEST_SHUTDOWN_MARKER": str(marker)})
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_http1_head(sock).startswith(b"HTTP/1.1 200 ")
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    assert "graceful timeout: closing 1 connection(s)" in process.stderr.text
    assert marker.read_text() == "shutdown complete"


# -- the garbage collector of a serving process --------------------------------------------------

def interpreter_gc_threshold() -> int:
    done = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"],
                          capture_output=True, text=True, check=True, timeout=TIMEOUT)
    return int(done.stdout)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
@pytest.mark.parametrize(("args", "threshold"), [
    pytest.param([], 10_000, id="default"),
    pytest.param(["--gc-threshold", "50000"], 50_000, id="set"),
    pytest.param(["--gc-threshold", "0"], None, id="interpreter's"),
])
def test_a_serving_process_collects_garbage_as_gc_threshold_says(plexicorn, args, threshold, workers):
    port = free_port()
    process = plexicorn("gc_report:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}", *args, *workers)
    assert process.wait_listening() == port
    report = httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).json()
    assert report == {"threshold": threshold or interpreter_gc_threshold()}
    assert process.stop() == 0


def test_an_embedded_server_leaves_its_programs_garbage_collector_alone(serve):
    import gc
    before = gc.get_threshold()
    running = serve("gc_report:app", app_dir=str(APPS))  # loaded as the command loads it
    assert httpx.get(running.url + "/", timeout=TIMEOUT).status_code == 200
    assert gc.get_threshold() == before
