"""`--check-config`: settings parsed, certificates loaded, app imported, exit 0 (or one error line
and exit 2), and no socket bound: a port in use does not matter and nothing listens."""

from __future__ import annotations

import socket

from test_cli import APPS, run_cli

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
