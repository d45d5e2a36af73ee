"""Plexicorn as a real process on ephemeral ports, and the throw-away CA its TLS server uses."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "interop.app:app"
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

# The server flags that make a cleartext listener HTTP/2 only (prior knowledge; no HTTP/1.1, so an
# invalid preface is an HTTP/2 connection error, not an HTTP/1.1 request). The h2spec suite's
# cleartext run and the conformance suite's "h2c-only" cases use this server; change the option
# here and nowhere else.
HTTP2_ONLY_SERVER_FLAGS: tuple[str, ...] = ("--http", "2")

_LISTENING = re.compile(r"Listening on (https?)://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class TLSMaterial:
    ca_file: Path  # the CA's certificate: what clients trust
    cert_file: Path  # leaf for localhost / 127.0.0.1 / ::1, chain included
    key_file: Path


def make_tls_material(directory: Path) -> TLSMaterial:
    """A throw-away CA (trustme) and a leaf it signs, written to `directory`."""
    import trustme  # in the test extra; imported here so `--help` works without it

    ca = trustme.CA(organization_name="Plexicorn interop throw-away CA")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    material = TLSMaterial(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(material.ca_file))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(material.cert_file))
    leaf.private_key_pem.write_to_path(str(material.key_file))
    return material


class ServerError(RuntimeError):
    """The server could not be started (the message carries its log)."""


class PlexicornProcess:
    """`python -m plexicorn interop.app:app --bind 127.0.0.1:0 ...` with its log captured.

    The port is read from the server's own "Listening on" line (port 0: no race for a free
    port), then confirmed by connecting to it.
    """

    def __init__(self, name: str, log_dir: Path, tls: TLSMaterial | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.tls = tls
        self.extra_args = extra_args
        self.log_path = log_dir / f"server-{name}.log"
        self.port = 0
        self.returncode: int | None = None
        self._lines: list[str] = []
        self._listening = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "plexicorn", APP, "--bind", f"{HOST}:0", "--no-access-log",
               "--log-level", "info", "--lifespan", "on"]
        if self.tls:
            cmd += ["--certfile", str(self.tls.cert_file), "--keyfile", str(self.tls.key_file)]
        return cmd + list(self.extra_args)

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Own process group: a Ctrl-C reaches the runner only, which then stops the server itself.
        self._process = subprocess.Popen(self.command(), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._reader = threading.Thread(target=self._read_log, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        # Set by the reader on the "Listening on" line, or when the process exits early.
        if not self._listening.wait(START_TIMEOUT) or not self.port:
            self.stop()
            raise ServerError(f"Plexicorn ({self.name}) did not start: {' '.join(self.command())}\n"
                              + self.log_tail())
        # The log line is written once the socket listens; connecting proves it.
        try:
            with socket.create_connection((HOST, self.port), timeout=5):
                pass
        except OSError as exc:
            self.stop()
            raise ServerError(f"Plexicorn ({self.name}) logged port {self.port} but refused a connection: {exc}")

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            for raw in self._process.stdout:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                log.flush()
                self._lines.append(line.rstrip("\n"))
                if not self._listening.is_set():
                    match = _LISTENING.search(line)
                    if match:
                        self.port = int(match.group(2))
                        self._listening.set()
        self._listening.set()  # the process ended (a start failure leaves port at 0)

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL if it does not stop; returns the exit status."""
        process = self._process
        if process is None:
            return self.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(5)
        self.returncode = process.returncode
        self._process = None
        return self.returncode

    @property
    def log_lines(self) -> list[str]:
        return list(self._lines)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join("    " + line for line in self._lines[-lines:])

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def client_context(tls: TLSMaterial, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    """A client TLS context trusting the throw-away CA, offering `alpn`."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.set_alpn_protocols(list(alpn))
    return context
