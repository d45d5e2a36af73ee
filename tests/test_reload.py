"""--reload: a changed source file restarts the workers; a broken edit leaves none and the
supervisor waits for the next change."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import free_port
from supervised import APPS, COMMAND, TIMEOUT, http_get, plexicorn  # noqa: F401
from test_cli import assert_one_error_line

pytest.importorskip("watchfiles", reason="--reload needs watchfiles: pip install 'plexicorn[reload]'")

SOURCE = (APPS / "workers_app.py").read_text()


def write_version(path, version: str) -> None:  # type: ignore[no-untyped-def]
    path.write_text(SOURCE.replace('VERSION = "old"', f'VERSION = "{version}"'))


@pytest.fixture
def reloading(plexicorn, tmp_path):  # type: ignore[no-untyped-def]
    """A --reload server of tmp_path/project/workers_app.py; yields (process, port, app file)."""
    project = tmp_path / "project"
    project.mkdir()
    app_file = project / "workers_app.py"
    write_version(app_file, "v1")
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", project, "--bind", f"127.0.0.1:{port}", "--reload",
                        "--reload-exclude", "scratch_*.py", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    process.stderr.wait_for(f"Reloading on changes to *.py in {project}")
    process.wait_workers(1)
    return process, port, app_file


def test_reload_restarts_the_worker_on_a_change(reloading):
    process, port, app_file = reloading
    assert http_get(port).startswith(b"v1 ")
    (app_file.parent / "scratch_notes.py").write_text("x = 1\n")  # excluded
    (app_file.parent / "README.txt").write_text("not *.py\n")  # not included
    write_version(app_file, "v2-edited")
    line = process.stderr.wait_for("Changed: ")
    assert "workers_app.py; restarting the workers" in line and "scratch" not in line and "README" not in line
    process.wait_workers(1)
    assert http_get(port).startswith(b"v2-edited ")
    assert process.stop() == 0


def test_a_broken_edit_logs_one_line_and_the_next_good_edit_serves_again(reloading):
    process, port, app_file = reloading
    app_file.write_text(SOURCE + "\ndef broken(:\n")
    line = process.stderr.wait_for("waiting for the next change (--reload)")
    assert "importing 'workers_app' failed: SyntaxError" in line
    assert process.process.poll() is None  # still watching
    write_version(app_file, "v3-fixed")
    process.wait_workers(1)
    assert http_get(port).startswith(b"v3-fixed ")
    assert "Traceback" not in process.stderr.text
    assert process.stop() == 0


def test_reload_without_watchfiles_is_one_error_line(tmp_path):
    (tmp_path / "watchfiles.py").write_text("raise ImportError('no watchfiles here')\n")
    result = subprocess.run([*COMMAND, "good:app", "--app-dir", APPS, "--reload"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert "--reload needs watchfiles: pip install 'plexicorn[reload]'" in assert_one_error_line(result)
