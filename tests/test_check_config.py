"""`--check-config`: settings parsed, certificates loaded, app imported, exit 0 (or one error line
and exit 2), and no socket bound: a port in use does not matter and nothing listens."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import httpx
import pytest
from conftest import free_port
from test_cli import APPS, TIMEOUT, assert_one_error_line, plexicorn, run_cli  # noqa: F401 (plexicorn: the fixture)

APP = ("logging_app:app", "--app-dir", str(APPS))


def test_good_configuration_exits_0_without_binding(tmp_path, tls_files):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(*APP, "--bind", f"127.0.0.1:{port}", "--certfile", tls_files[0], "--keyfile",
                         tls_files[1], "--check-config", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"plexicorn: configuration OK: logging_app:app, 127.0.0.1:{port}, TLS\n"
        assert "Listening on" not in result.stderr
        # Our socket is still the only one: the check did not take it over with SO_REUSEPORT either.
        busy.settimeout(0.1)
        probe = socket.create_connection(("127.0.0.1", port))
        accepted, _ = busy.accept()
        accepted.close()
        probe.close()


def test_a_bad_certificate_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = run_cli(*APP, "--certfile", bad, "--check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("plexicorn: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert str(bad) in result.stderr and result.stdout == ""


def test_a_bad_app_is_one_line_and_exit_2(tmp_path):
    for app, expected in (("no_such_module:app", "no_such_module"), ("logging_app:nope", "no attribute 'nope'"),
                          ("raises_on_import:app", "importing 'raises_on_import' failed")):
        result = run_cli(app, "--app-dir", APPS, "--check-config", cwd=tmp_path)
        assert result.returncode == 2, (app, result.stderr)
        assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_bad_settings_and_log_files_are_caught(tmp_path):
    result = run_cli(*APP, "--access-log-file", tmp_path / "no" / "dir" / "a.log", "--check-config", cwd=tmp_path)
    assert result.returncode == 2 and "--access-log-file" in result.stderr
    result = run_cli(*APP, "--bind", "nonsense", "--check-config", cwd=tmp_path)
    assert result.returncode == 2 and "invalid --bind" in result.stderr


def test_log_files_are_checked_but_never_created_nor_truncated(tmp_path):
    access, error, kept = tmp_path / "access.log", tmp_path / "error.log", tmp_path / "kept.log"
    kept.write_text("yesterday's lines\n")
    result = run_cli(*APP, "--access-log-file", access, "--error-log-file", error, "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not access.exists() and not error.exists()
    result = run_cli(*APP, "--access-log-file", kept, "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert kept.read_text() == "yesterday's lines\n"
    # What opening the file would have said, as one line.
    for path, expected in ((tmp_path, "Is a directory"), (tmp_path / "no" / "a.log", "No such file or directory")):
        result = run_cli(*APP, "--error-log-file", path, "--check-config", cwd=tmp_path)
        line = assert_one_error_line(result)
        assert "--error-log-file" in line and expected in line, line
        assert not (tmp_path / "no").exists()


def test_a_log_config_is_parsed_but_its_handlers_create_no_file(tmp_path):
    log_file = tmp_path / "from-dictconfig.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({"version": 1, "handlers": {"file": {
        "class": "logging.FileHandler", "filename": str(log_file)}}, "loggers": {"plexicorn": {"handlers": ["file"]}}}))
    result = run_cli(*APP, "--log-config", config, "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not log_file.exists()
    config.write_text("{not json")
    assert "is not valid JSON" in assert_one_error_line(run_cli(*APP, "--log-config", config, "--check-config",
                                                                cwd=tmp_path))


BLOCKED = "import sys; sys.modules['prometheus_client'] = None; from plexicorn.cli import main; main()"


def test_metrics_bind_without_prometheus_client_fails_the_check_as_it_fails_start_up(tmp_path):
    for check in (["--check-config"], []):
        result = subprocess.run([sys.executable, "-c", BLOCKED, *APP, "--bind", f"127.0.0.1:{free_port()}",
                                 "--metrics-bind", f"127.0.0.1:{free_port()}", *check],
                                cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
        line = assert_one_error_line(result)
        assert line == "plexicorn: error: --metrics-bind needs prometheus_client: pip install 'plexicorn[metrics]'"
        assert result.stdout == ""


@pytest.mark.parametrize(("fmt", "expected"), [
    ("{status:s}", "Unknown format code 's' for object of type 'int'"),  # status is a number
    ("{duration_ms:d}", "Unknown format code 'd' for object of type 'float'"),
    ("{stream_id:d}", "Unknown format code 'd' for object of type 'str'"),  # `-` on HTTP/1.1
    ("{client!x}", "Unknown conversion specifier x"),
])
def test_an_access_log_format_no_line_could_take_is_refused_by_the_check_and_at_start_up(tmp_path, fmt, expected):
    for check in (["--check-config"], []):
        result = run_cli(*APP, "--bind", f"127.0.0.1:{free_port()}", "--access-log-format", fmt, *check,
                         cwd=tmp_path)
        line = assert_one_error_line(result)
        assert line.startswith(f"plexicorn: error: --access-log-format {fmt!r}: ") and expected in line, line


def test_format_specs_every_line_can_take_are_served(plexicorn):
    process = plexicorn(*APP, "--bind", "127.0.0.1:0", "--access-log-format",
                        "{method} {status:>4} size={size:05d} {duration_ms:.0f}ms sid={stream_id:>3}")
    port = process.wait_listening()
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "hello"
    line = process.stderr.wait_for("GET ")
    assert re.search(r"GET  200 size=00005 \d+ms sid=  -$", line.rstrip("\n")), line
    assert process.stop() == 0
    assert "Traceback" not in process.stderr.text
