"""The servers the benchmark compares, how each one is started, pinned, probed, measured (RSS), stopped.

Each server runs as one process (one worker) on 127.0.0.1, with uvloop when installed. A server
that is not installed, or cannot speak a scenario's protocol, is reported once with the reason
(`ServerSpec.unavailable`, `ServerSpec.cannot`) and shown as `–` in the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import importlib.metadata
import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.app import CHUNK, HELLO, STREAM_CHUNKS

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOP = "uvloop" if HAVE_UVLOOP else "asyncio"
# Idle-connection scenarios: connections must outlive the run, and 10,000 of them arrive at once.
IDLE_KEEP_ALIVE = 3600
BACKLOG = 4096
IDLE_BACKPRESSURE = 65536


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    name: str
    module: str  # importable module: installed or not ("" for a program)
    dist: str  # distribution name, for its version
    protocols: frozenset  # of "h1", "h2c", "h2" (h2 = over TLS with ALPN)
    install: str  # what to pip install when missing (for a program: how to install it)
    # A program rather than a Python server: it serves STATIC_FILES (not the ASGI app), so it
    # runs the GET scenarios of the hello app only: a reference for what this machine and the
    # load generator reach without Python (nghttpd: nghttp2's own server, C and OpenSSL).
    program: str | None = None
    # An earlier Plexicorn: the checkout of its source tree it runs from (run.py --baseline).
    source: Path | None = None

    @property
    def installed(self) -> bool:
        if self.source is not None:
            return checkout_problem(self.source) is None
        if self.program is not None:
            return shutil.which(self.program) is not None
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        if self.source is not None:
            parser = http1_parser() if _has_setting(self.source, "http1_parser") else "h11"
            return f"from {self.source}{_revision(self.source)} (HTTP/1.1 parser: {parser})"
        if self.program is not None:
            if not self.installed:
                return "not installed"
            try:
                done = subprocess.run([self.program, "--version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return "of unknown version (static files)"  # the run goes on: it is only named here
            return (done.stdout.split() or ["?"])[-1] + " (static files)"
        try:
            version = importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
        if self.name in ("Plexicorn", "uvicorn"):
            return f"{version} (HTTP/1.1 parser: {http1_parser()})"  # both get the same one
        return version

    def unavailable(self) -> str | None:
        if self.source is not None:
            return checkout_problem(self.source)
        if not self.installed:
            if self.program is not None:
                return f"not installed ({self.install})"
            return f"not installed (pip install '{self.install}', or `pip install -e .[bench]`)"
        return None

    def cannot(self, scenario) -> str | None:  # type: ignore[no-untyped-def]
        """Why this server cannot run `scenario` (a run.Scenario), or None."""
        if scenario.protocol not in self.protocols:
            return {"h2": "no HTTP/2", "h2c": "no HTTP/2", "h1": "no HTTP/1.1"}[scenario.protocol]
        if self.program is not None and (scenario.app != "hello" or scenario.post_body
                                         or scenario.tool == "idle" or scenario.path not in STATIC_FILES):
            return "static files only"
        return None


def http1_parser() -> str:
    """The HTTP/1.1 parser Plexicorn (--http1-parser) and uvicorn (--http) are given: httptools
    (llhttp) when installed, as the bench extra does, else h11."""
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


SERVERS = (
    ServerSpec("Plexicorn", "plexicorn", "plexicorn", frozenset({"h1", "h2c", "h2"}), "-e ."),
    ServerSpec("Hypercorn", "hypercorn", "hypercorn", frozenset({"h1", "h2c", "h2"}), "hypercorn>=0.18"),
    ServerSpec("uvicorn", "uvicorn", "uvicorn", frozenset({"h1"}), "uvicorn>=0.54 httptools>=0.9"),
    ServerSpec("Granian", "granian", "granian", frozenset({"h1", "h2c", "h2"}), "granian>=2.8"),
    ServerSpec("h2corn", "h2corn", "h2corn", frozenset({"h1", "h2c", "h2"}), "h2corn>=2.0"),
    ServerSpec("nghttpd", "", "", frozenset({"h2c", "h2"}),
               "Debian/Ubuntu: apt-get install nghttp2-server; macOS: brew install nghttp2", program="nghttpd"),
)
SPECS = {spec.name: spec for spec in SERVERS}
BASELINE = "baseline"


def checkout_problem(checkout: Path) -> str | None:
    """Why `checkout` cannot be run as a baseline (not a Plexicorn source tree), or None."""
    if (checkout / "server" / "__main__.py").is_file() and (checkout / "tls").is_dir():
        return None
    return f"{checkout} is not a Plexicorn checkout (no server/__main__.py and tls/)"


def add_baseline(checkout: Path) -> ServerSpec:
    """Compare with an earlier Plexicorn, run from a checkout of its source tree (e.g.
    `git worktree add /tmp/base <commit>`) like Plexicorn itself, in the same rounds: a ratio
    to an earlier run would carry the machine's drift between the two runs."""
    spec = ServerSpec(BASELINE, "", "", frozenset({"h1", "h2c", "h2"}), "", source=checkout.resolve())
    SPECS[BASELINE] = spec
    return spec


def baseline_import_path(checkout: Path, work_dir: Path) -> Path:
    """A directory where `import plexicorn` finds the checkout's code: the package is laid out
    as pyproject.toml maps it (server/ as plexicorn, tls/ as plexicorn.tls), by symlinks."""
    checkout = checkout.resolve()
    root = work_dir / "baseline-import"
    package = root / "plexicorn"
    if package.exists() and Path(os.readlink(package / "__main__.py")).parent != checkout / "server":
        shutil.rmtree(root)  # laid out for another checkout
    if not package.exists():
        package.mkdir(parents=True)
        for entry in (checkout / "server").iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        if not (package / "tls").exists():
            (package / "tls").symlink_to(checkout / "tls")
    return root


# Run first in a baseline's interpreter. PYTHONPATH puts the checkout's package ahead of an
# editable install of this tree, but the editable install's import hook (a sys.meta_path finder,
# after the path one) would still serve this tree's modules for any the checkout lacks: without
# it, a module missing from the baseline fails to import instead of coming from the new code.
BASELINE_PRELUDE = ("import sys; sys.meta_path[:] = [finder for finder in sys.meta_path "
                    "if not getattr(finder, '__module__', '').startswith('__editable__')]")
# How a baseline is started: the prelude, then `python -m plexicorn` as the package's __main__.
BASELINE_LAUNCH = BASELINE_PRELUDE + "; import runpy; runpy.run_module('plexicorn', run_name='__main__', alter_sys=True)"


def _revision(checkout: Path) -> str:
    """", commit abc1234 2026-12-02" (and "+ changes" if server/ or tls/ differ from it), if the
    checkout is the top of a git work tree; "" otherwise."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != checkout:
        return ""
    revision = git("log", "-1", "--format=%h %cs") or "?"
    changed = git("status", "--porcelain", "--", "server", "tls")
    return f", commit {revision}" + (" + changes" if changed else "")


# What a static-file server serves, by path: the hello app's GET answers, byte for byte.
STATIC_FILES = {"/": ("index.html", HELLO), "/stream": ("stream", CHUNK * STREAM_CHUNKS)}


def _has_setting(checkout: Path, setting: str) -> bool:
    """Whether the checkout's Config has this field (its CLI flags are made from the fields)."""
    with contextlib.suppress(OSError):
        text = (checkout / "server" / "config.py").read_text()
        return re.search(rf"^\s+{setting}\s*:", text, re.MULTILINE) is not None
    return False


def server_command(name: str, app: str, port: int, tls_files: tuple[Path, Path] | None,
                   work_dir: Path, idle: bool) -> list[str]:
    """The command line of one server; `idle`: settings for the idle-connection scenarios."""
    py = sys.executable
    if name in ("Plexicorn", BASELINE):
        start = ["-c", BASELINE_LAUNCH] if name == BASELINE else ["-m", "plexicorn"]
        cmd = [py, *start, app, "--bind", f"{HOST}:{port}", "--no-access-log",
               "--log-level", "warning", "--loop", LOOP, "--backlog", str(BACKLOG)]
        source = SPECS[name].source
        if source is None or _has_setting(source, "http1_parser"):  # a baseline may predate it (h11)
            cmd += ["--http1-parser", http1_parser()]
        if tls_files:
            cmd += ["--certfile", str(tls_files[0]), "--keyfile", str(tls_files[1])]
        if idle:
            cmd += ["--keep-alive-timeout", str(IDLE_KEEP_ALIVE)]
        return cmd
    if name == "Hypercorn":
        # Hypercorn closes a connection after 1000 requests by default
        # (keep_alive_max_requests, no CLI flag); h2load does not reconnect, so
        # its connections would die mid-run. Plexicorn has no such limit.
        config = work_dir / f"hypercorn-{port}.toml"
        lines = ["keep_alive_max_requests = 1000000000", f"backlog = {BACKLOG}"]
        if idle:
            lines.append(f"keep_alive_timeout = {IDLE_KEEP_ALIVE}")
        config.write_text("\n".join(lines) + "\n")
        cmd = [py, "-m", "hypercorn", app, "--config", str(config), "--bind", f"{HOST}:{port}",
               "--worker-class", LOOP, "--log-level", "warning"]
        if tls_files:
            cmd += ["--certfile", str(tls_files[0]), "--keyfile", str(tls_files[1])]
        return cmd
    if name == "uvicorn":
        cmd = [py, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--no-access-log",
               "--log-level", "warning", "--loop", LOOP, "--backlog", str(BACKLOG),
               "--http", http1_parser()]
        if idle:
            cmd += ["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)]
        return cmd
    if name == "Granian":
        # One worker process on a single-threaded runtime: the same shape as the others.
        cmd = [py, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
               "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1",
               "--loop", LOOP, "--http", "auto", "--no-access-log", "--log-level", "warning",
               "--backlog", str(BACKLOG)]
        if tls_files:
            cmd += ["--ssl-certificate", str(tls_files[0]), "--ssl-keyfile", str(tls_files[1])]
        if idle:
            # Granian serves at most --backpressure connections at once (default: the backlog);
            # the next ones wait in the kernel's queue with their handshake unanswered.
            cmd += ["--backpressure", str(IDLE_BACKPRESSURE)]
        return cmd + [app]
    if name == "nghttpd":
        root = work_dir / "static"
        root.mkdir(exist_ok=True)
        for file_name, content in STATIC_FILES.values():
            (root / file_name).write_bytes(content)
        cmd = ["nghttpd", "--address", HOST, "--htdocs", str(root)]
        if not tls_files:
            return cmd + ["--no-tls", str(port)]
        return cmd + [str(port), str(tls_files[1]), str(tls_files[0])]  # the key, then the certificate
    if name == "h2corn":
        cmd = [py, "-m", "h2corn", app, "--bind", f"{HOST}:{port}", "--no-access-log",
               "--loop", LOOP, "--backlog", str(BACKLOG), "--workers", "1"]
        if tls_files:
            cmd += ["--certfile", str(tls_files[0]), "--keyfile", str(tls_files[1])]
        if idle:
            cmd += ["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)]
        return cmd
    raise ValueError(f"unknown server {name!r}")


# --- placement -----------------------------------------------------------------------------------

def placement() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): one core each when there are at least two, else None."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:2])


def pinned(cpus: set[int] | None, raise_nofile: bool = False):
    """A preexec_fn for Popen: pin the child to `cpus`, raise its open-file limit to the hard one."""
    def setup():
        if cpus:
            os.sched_setaffinity(0, cpus)
        if raise_nofile:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return setup


def free_port() -> int:
    # The tiny race until the server binds it is acceptable on loopback; a failed bind shows up
    # as a start error.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses): the
    state is [0], the parent's pid [1], utime [11], stime [12]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Granian and h2corn serve from a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat_fields(entry.name)[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its descendants."""
    total = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of `pid` and its descendants so far."""
    ticks = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(current)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_sockets(pid: int) -> int:
    """Open sockets of `pid` and its descendants: did the server keep the idle connections?"""
    total = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{current}/fd").iterdir():
                with contextlib.suppress(OSError):
                    total += os.readlink(fd).startswith("socket:")
    return total


class ServerProcess:
    """One server process, started, probed until it answers, stopped with SIGTERM."""

    def __init__(self, name: str, app: str, tls_files, work_dir: Path, cpus: set[int] | None,
                 idle: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self.tls = tls_files is not None
        env = None
        source = SPECS[name].source
        if source is not None:  # ahead of the installed (editable) Plexicorn: see BASELINE_PRELUDE
            try:
                path = [str(baseline_import_path(source, work_dir)), os.environ.get("PYTHONPATH", "")]
            except OSError as exc:
                raise RuntimeError(f"{name}: cannot lay out {source} as a package: {exc}") from exc
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        self.log_path = work_dir / f"{name.lower()}-{self.port}.log"
        self.log = open(self.log_path, "wb")
        # Own session: a Ctrl-C in the terminal reaches only run.py, which then stops the server
        # itself (SIGTERM, the graceful path).
        self.process = subprocess.Popen(
            server_command(name, app, self.port, tls_files, work_dir, idle), cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=pinned(cpus, raise_nofile=True), env=env)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    def wait_ready(self, deadline_seconds: float = 30.0) -> None:
        """Poll with a real HTTP/1.1 request (TLS without verification when TLS): a listening
        socket is not enough, as Granian's worker may still be starting behind it."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.process.returncode}:\n"
                                   + self.log_tail())
            if "h1" not in SPECS[self.name].protocols:
                # No HTTP/1.1 to ask with (a program: it listens once it has started).
                with contextlib.suppress(OSError):
                    socket.create_connection((HOST, self.port), timeout=2).close()
                    return
                time.sleep(0.1)
                continue
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.tls:
                    context = ssl.create_default_context()
                    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                    conn = http.client.HTTPSConnection(HOST, self.port, timeout=2, context=context)
                else:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                try:
                    conn.request("GET", "/")
                    conn.getresponse().read()
                    return
                finally:
                    conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {deadline_seconds:.0f} s:\n"
                           + self.log_tail())

    def rss(self) -> int:
        return tree_rss(self.process.pid)

    def sockets(self) -> int:
        return tree_sockets(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])


@contextlib.contextmanager
def running_server(name: str, app: str, tls_files, work_dir: Path, cpus, idle: bool = False):
    proc = ServerProcess(name, app, tls_files, work_dir, cpus, idle)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
