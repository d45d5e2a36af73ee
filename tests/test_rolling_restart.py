"""SIGHUP replaces the workers one at a time under load, and not one request fails."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from conftest import free_port
from loadclient import Load
from supervised import APPS, TIMEOUT, http_get, plexicorn, ready_pids, serving_pids, wait_gone  # noqa: F401

WORKERS = 4


def release(directory, version: str) -> None:  # type: ignore[no-untyped-def]
    """Put the app's `version` in place, as a deployment switching the code under one path."""
    source = (APPS / "workers_app.py").read_text().replace('VERSION = "old"', f'VERSION = "{version}"')
    assert version in source
    (directory / "workers_app.py").write_text(source)
    shutil.rmtree(directory / "__pycache__", ignore_errors=True)


@pytest.mark.timeout(90)
def test_rolling_restart_under_http1_and_http2_load_fails_no_request(plexicorn, tmp_path):
    app_dir = tmp_path / "current"
    app_dir.mkdir()
    release(app_dir, "old")
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", app_dir, "--bind", f"127.0.0.1:{port}",
                        "--workers", WORKERS, "--no-access-log", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    old_pids = process.wait_workers(WORKERS)
    with Load(port, http1=3, http2=2, streams=8) as load:
        load.wait_for_requests(500)
        release(app_dir, "new-release")
        process.signal(signal.SIGHUP)
        process.stderr.wait_for("Rolling restart: replacing 4 worker(s) one at a time")
        line = process.stderr.wait_for("Rolling restart", timeout=60)
        assert "complete: 4 worker(s) replaced" in line, process.stderr.text
        during = process.stderr.text.split("Rolling restart: replacing", 1)[1]
        new_pids = ready_pids(during)
        assert len(new_pids) == WORKERS, during
        for pid in old_pids:
            wait_gone(pid)  # drained and gone while the load went on
        load.wait_for_requests(500)
        tally = load.stop()
    report = (f"rolling restart of {WORKERS} workers under load: {tally.sent} requests sent, {tally.ok} answered, "
              f"{tally.failed} failed; sent again as RFC 9112 §9.3.1 / RFC 9113 §6.8 allow: {dict(tally.retries)}")
    print(report)
    assert tally.failed == 0, f"{report}: {tally.errors[:10]}"
    versions = {body.split()[0] for body in tally.bodies}
    assert versions == {"old", "new-release"}, tally.bodies  # every answer whole, from one code or the other
    # Which replacement the load's few keep-alive connections land on is the kernel's choice, so
    # the load only shows that the new code answered from replacements; serving_pids shows that all
    # four take connections and that nothing else answers.
    answered_new = {int(body.split()[1]) for body in tally.bodies if body.startswith("new-release ")}
    assert answered_new and answered_new <= set(new_pids), (answered_new, new_pids)
    assert serving_pids(port, set(new_pids)) == set(new_pids)
    assert http_get(port).startswith(b"new-release ")
    assert process.stop() == 0


def test_rolling_restart_with_broken_new_code_leaves_the_old_workers_serving(plexicorn, tmp_path):
    app_dir = tmp_path / "current"
    app_dir.mkdir()
    release(app_dir, "old")
    port = free_port()
    process = plexicorn("workers_app:app", "--app-dir", app_dir, "--bind", f"127.0.0.1:{port}", "--workers", 2,
                        "--no-access-log", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    old_pids = process.wait_workers(2)
    (app_dir / "workers_app.py").write_text("import no_such_dependency\n")
    with Load(port, http1=1, http2=1) as load:
        load.wait_for_requests(50)
        process.signal(signal.SIGHUP)
        line = process.stderr.wait_for("its replacement failed to start")
        assert "cannot import" in line or "No module named 'no_such_dependency'" in line, line
        process.stderr.wait_for("Rolling restart stopped after 0 of 2 worker(s)")
        load.wait_for_requests(50)
        tally = load.stop()
    assert tally.failed == 0, tally.errors[:10]
    assert {int(body.split()[1]) for body in tally.bodies} <= set(old_pids)
    assert all(os.path.exists(f"/proc/{pid}") for pid in old_pids)
    assert process.stop() == 0
