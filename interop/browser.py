"""Headless Chromium for tests: find the executable, build the flags, open one URL, clean up.

Driven by its command line only: the page under test does the work in JavaScript and reports
back to the server it was loaded from (e.g. with a fetch() POST), so no DevTools client is needed.
Used by tests/test_browser.py and by the interop browser suite (interop/suites/browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

INSTALL_HINT = "Chromium is not installed (Debian/Ubuntu: apt-get install chromium)"

# Debian's package first (what CI installs), then the usual names elsewhere.
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome-stable", "google-chrome")

# Flags every run needs on a headless CI machine. Without the background-networking group
# Chromium phones home at start-up; on a closed network those connections are refused and
# have been seen to disturb the run. --disable-quic keeps it from trying HTTP/3 (Alt-Svc).
# --disable-dev-shm-usage: containers often have a tiny /dev/shm, which crashes renderers.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--password-store=basic",  # no keyring lookups over D-Bus
    "--enable-logging=stderr",  # console messages and net errors land in the log for failure reports
)

KILL_TIMEOUT = 5.0
LOG_TAIL = 4000  # characters of Chromium's log quoted in error messages


class BrowserError(AssertionError):
    """The browser did not get where the test needed it; the message carries Chromium's log."""


def find_chromium() -> str | None:
    """The Chromium executable: $PLEXICORN_CHROMIUM if set, else the first of the usual names found."""
    override = os.environ.get("PLEXICORN_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def spki_sha256(cert_pem: bytes | str) -> str:
    """Base64 SHA-256 of the first certificate's SubjectPublicKeyInfo, the form
    --ignore-certificate-errors-spki-list takes (the same pin format as HPKP)."""
    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode("ascii")
    cert = x509.load_pem_x509_certificate(cert_pem)  # the first certificate of a chain file
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def chromium_flags(user_data_dir: str | os.PathLike[str], *, trusted_spki: Iterable[str] = (),
                   ignore_certificate_errors: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """Command-line flags for one headless run with its own fresh profile.

    `trusted_spki`: SPKI hashes (see `spki_sha256`) whose certificates are accepted as if valid
    (Chromium honours this only together with --user-data-dir, which is always given here).
    Prefer it to `ignore_certificate_errors`, which accepts any certificate at all, so a test
    could not tell it reached the server it meant. Both keep Chromium's connection pooling:
    with either (Chromium 156), a wss:// WebSocket runs over the page's HTTP/2 connection.
    """
    flags = [*BASE_FLAGS, f"--user-data-dir={os.fspath(user_data_dir)}"]
    pins = ",".join(trusted_spki)
    if pins:
        flags.append(f"--ignore-certificate-errors-spki-list={pins}")
    if ignore_certificate_errors:
        flags.append("--ignore-certificate-errors")
    flags.extend(extra)
    return flags


class Chromium:
    """One headless Chromium showing `url`, in a fresh profile, until `close()`.

    Use as a context manager: leaving it kills Chromium's whole process group and deletes the
    profile, whatever happened. Chromium's stderr goes to a log file quoted by `log_tail()`.
    """

    def __init__(self, url: str, *, executable: str | None = None, trusted_spki: Iterable[str] = (),
                 ignore_certificate_errors: bool = False, extra_flags: Sequence[str] = ()) -> None:
        self.url = url
        found = executable or find_chromium()
        if found is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.executable: str = found
        self._trusted_spki = tuple(trusted_spki)
        self._ignore_certificate_errors = ignore_certificate_errors
        self._extra_flags = tuple(extra_flags)
        self.process: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self._tmp: str | None = None
        self._log_path: Path | None = None
        self._exited = threading.Event()
        self._waiters: list[threading.Event] = []
        self._lock = threading.Lock()

    def start(self) -> Chromium:
        self._tmp = tempfile.mkdtemp(prefix="plexicorn-chromium-")
        try:
            profile = Path(self._tmp, "profile")
            profile.mkdir()
            self._log_path = Path(self._tmp, "chromium.log")
            self.command = [self.executable, *chromium_flags(
                profile, trusted_spki=self._trusted_spki,
                ignore_certificate_errors=self._ignore_certificate_errors, extra=self._extra_flags), self.url]
            with open(self._log_path, "wb") as log:
                # A session of its own, so close() can kill the renderer, GPU and zygote
                # processes too, by the process group id of the one process we started.
                self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            self.close()
            raise
        threading.Thread(target=self._watch, name="chromium-exit-watcher", daemon=True).start()
        return self

    def _watch(self) -> None:
        assert self.process is not None
        self.process.wait()
        with self._lock:
            self._exited.set()
            for event in self._waiters:
                event.set()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def wait(self, event: threading.Event, timeout: float, what: str = "the page's report") -> None:
        """Wait until `event` is set; raise BrowserError (with the log) on timeout or if Chromium exits first."""
        with self._lock:
            # Chromium exiting also wakes us, so a crash fails at once instead of after `timeout`.
            self._waiters.append(event)
            if self._exited.is_set():
                event.set()
        try:
            set_in_time = event.wait(timeout)
        finally:
            with self._lock:
                self._waiters.remove(event)
        if self._exited.is_set():
            assert self.process is not None
            raise BrowserError(f"Chromium exited (status {self.process.returncode}) before {what}\n"
                               f"{self.describe()}")
        if not set_in_time:
            raise BrowserError(f"no {what} within {timeout} s\n{self.describe()}")

    def log_tail(self, limit: int = LOG_TAIL) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_bytes().decode("utf-8", "replace")
        return text[-limit:]

    def describe(self) -> str:
        return f"command: {' '.join(self.command)}\n--- Chromium log (tail) ---\n{self.log_tail()}"

    def close(self) -> None:
        """Kill Chromium and everything it started, then delete its profile and log."""
        process, self.process = self.process, None
        if process is not None:
            # SIGTERM to the browser process alone: it shuts its children down and reaps them
            # (signalling the whole group at once leaves them as zombies for init to collect).
            process.terminate()
            try:
                process.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the group (a hung browser, an orphaned helper) dies now.
            self._kill_group(process, signal.SIGKILL)
            process.wait(KILL_TIMEOUT)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)  # the group Popen(start_new_session=True) created
        except ProcessLookupError:
            pass

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
