"""Throughput benchmark: Plexicorn against Hypercorn on the same minimal app.

Run from anywhere (``make bench`` installs what it needs)::

    python benchmarks/run.py            # ~1.5 minutes on a 2-core machine
    python benchmarks/run.py --quick    # a few seconds: checks that everything works

Each server runs as one process, on 127.0.0.1 only, with the same event loop
(uvloop when installed). The load generators are h2load (HTTP/2 over TLS and
h2c) and wrk (HTTP/1.1 keep-alive); a missing tool or a missing Hypercorn only
skips the scenarios that need it. The exit status is 1 when Plexicorn had an
error in any scenario (or could not run one), so the script can guard CI.

See benchmarks/README.md for what each scenario measures and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "benchmarks.app:app"
HOST = "127.0.0.1"
ECHO_BODY_SIZE = 16 * 1024

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
HAVE_HYPERCORN = importlib.util.find_spec("hypercorn") is not None


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    tool: str  # "h2load" or "wrk"
    tls: bool
    path: str
    args: tuple[str, ...]
    post_body: bool = False


SCENARIOS = (
    Scenario("h2 TLS   GET /          -c16 -m16", "h2load", True, "/", ("-c", "16", "-m", "16")),
    Scenario("h2 TLS   GET /          -c1 -m100", "h2load", True, "/", ("-c", "1", "-m", "100")),
    Scenario("h2c      GET /          -c16 -m16", "h2load", False, "/", ("-c", "16", "-m", "16")),
    Scenario("h2c      GET /          -c1 -m100", "h2load", False, "/", ("-c", "1", "-m", "100")),
    Scenario("h2 TLS   POST /echo 16K -c16 -m16", "h2load", True, "/echo", ("-c", "16", "-m", "16"),
             post_body=True),
    # Fewer streams: each response is 1 MiB, so this measures bulk transfer
    # (flow control, backpressure), not per-request overhead.
    Scenario("h2 TLS   GET /stream 1M -c4 -m4", "h2load", True, "/stream", ("-c", "4", "-m", "4")),
    Scenario("http/1.1 GET /          wrk -t2 -c64", "wrk", False, "/", ("-t", "2", "-c", "64")),
)

INSTALL_HINTS = {
    "h2load": "install nghttp2's h2load (Debian/Ubuntu: apt-get install nghttp2-client; macOS: brew install nghttp2)",
    "wrk": "install wrk (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)",
}


@dataclasses.dataclass
class Result:
    rps: float | None = None
    mean_latency: float | None = None  # seconds
    p99_latency: float | None = None  # seconds (wrk only: h2load prints no percentiles)
    errors: int = 0
    note: str = ""  # why there is no number, or what went wrong

    @property
    def ok(self) -> bool:
        return self.rps is not None and self.errors == 0 and not self.note


# --- servers -----------------------------------------------------------------------------------

def free_port() -> int:
    # Ask the kernel for an unused port; the tiny race until the server binds
    # it is acceptable on loopback, and a failed bind shows up as a start error.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a throw-away self-signed certificate for 127.0.0.1 / localhost.

    cryptography is a Plexicorn dependency, so this needs nothing extra; the
    load generators do not verify certificates, only the handshake cost matters.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certfile, keyfile


def server_command(server: str, port: int, tls_files: tuple[Path, Path] | None,
                   work_dir: Path) -> list[str]:
    bind = f"{HOST}:{port}"
    if server == "Plexicorn":
        cmd = [sys.executable, "-m", "plexicorn", APP, "--bind", bind, "--no-access-log",
               "--log-level", "warning", "--loop", "uvloop" if HAVE_UVLOOP else "asyncio"]
        if tls_files:
            cmd += ["--certfile", str(tls_files[0]), "--keyfile", str(tls_files[1])]
    else:
        # Hypercorn's defaults are already one worker and no access log, but it
        # closes a connection after 1000 requests (keep_alive_max_requests, no
        # CLI flag). h2load does not reconnect, so with that limit Hypercorn's
        # connections die mid-run (0 req/s at -c1). Plexicorn has no such limit.
        config = work_dir / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")
        cmd = [sys.executable, "-m", "hypercorn", APP, "--config", str(config), "--bind", bind,
               "--worker-class", "uvloop" if HAVE_UVLOOP else "asyncio"]
        if tls_files:
            cmd += ["--certfile", str(tls_files[0]), "--keyfile", str(tls_files[1])]
    return cmd


class ServerProcess:
    """One server process, started ready to serve, stopped with SIGTERM."""

    def __init__(self, server: str, tls_files: tuple[Path, Path] | None, work_dir: Path) -> None:
        self.server = server
        self.port = free_port()
        self.scheme = "https" if tls_files else "http"
        self.log_path = work_dir / f"{server.lower()}-{self.scheme}.log"
        self.log = open(self.log_path, "wb")
        # Own session: a Ctrl-C in the terminal reaches only this script, which
        # then stops the server itself (SIGTERM, the graceful path).
        self.process = subprocess.Popen(
            server_command(server, self.port, tls_files, work_dir), cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def wait_ready(self, deadline_seconds: float = 15.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.server} exited with status {self.process.returncode}:\n"
                                   + self.log_tail())
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.server} did not accept connections within {deadline_seconds:.0f} s:\n"
                           + self.log_tail())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])


@contextlib.contextmanager
def running_server(server: str, tls_files, work_dir: Path):
    proc = ServerProcess(server, tls_files, work_dir)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


# --- load generators ---------------------------------------------------------------------------

_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unrecognised duration {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def run_tool(cmd: list[str], timeout: float) -> tuple[str, str | None]:
    """Run a load generator; return its output and a failure note, if any."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "", f"{cmd[0]} did not finish within {timeout:.0f} s"
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return output, f"{cmd[0]} exited with {done.returncode}: {output.strip().splitlines()[-1:]}"
    return output, None


def run_h2load(scenario: Scenario, url: str, duration: float, warm_up: float, body_file: Path) -> Result:
    cmd = ["h2load", *scenario.args, "-D", f"{int(duration * 1000)}ms"]
    if warm_up > 0:
        cmd += ["--warm-up-time", f"{int(warm_up * 1000)}ms"]
    if scenario.post_body:
        cmd += ["-d", str(body_file)]
    cmd.append(url + scenario.path)
    output, failure = run_tool(cmd, timeout=duration + warm_up + 60)
    if failure:
        return Result(note=failure)
    return parse_h2load(output, expect_protocol="h2" if scenario.tls else "h2c")


def parse_h2load(output: str, expect_protocol: str) -> Result:
    result = Result()
    protocol = re.search(r"Application protocol: (\S+)", output)
    if not protocol or protocol.group(1) != expect_protocol:
        # A silent fallback to HTTP/1.1 (or no connection at all) would make
        # the number meaningless, so it counts as a failure.
        result.note = f"negotiated {protocol.group(1) if protocol else 'nothing'}, not {expect_protocol}"
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    requests = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", output)
    if not finished or not requests:
        result.note = result.note or "could not parse h2load output"
        return result
    result.rps = float(finished.group(1))
    # h2load's "failed" already includes "errored", "timeout" and non-2xx/3xx
    # statuses. In timing mode, requests still in flight when the clock stops
    # are "started" but not "done"; they are not errors.
    result.errors = int(requests.group(4))
    if int(requests.group(3)) == 0:
        result.note = result.note or "no request succeeded"
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if latency:
        result.mean_latency = parse_duration(latency.group(3))
    return result


def run_wrk(scenario: Scenario, url: str, duration: float) -> Result:
    # wrk takes whole seconds; --latency adds the percentile table (p99).
    seconds = max(1, round(duration))
    cmd = ["wrk", *scenario.args, "-d", f"{seconds}s", "--latency", url + scenario.path]
    output, failure = run_tool(cmd, timeout=seconds + 60)
    if failure:
        return Result(note=failure)
    return parse_wrk(output)


def parse_wrk(output: str) -> Result:
    result = Result()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        result.note = "could not parse wrk output"
        return result
    result.rps = float(rps.group(1))
    mean = re.search(r"Latency\s+(\S+)", output)
    if mean:
        result.mean_latency = parse_duration(mean.group(1))
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE)
    if p99:
        result.p99_latency = parse_duration(p99.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        result.errors += sum(int(n) for n in socket_errors.groups())
    bad_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if bad_status:
        result.errors += int(bad_status.group(1))
    return result


# --- report ------------------------------------------------------------------------------------

def machine_description() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if cpu == "unknown CPU":
        cpu = platform.processor() or cpu
    # Like nproc: the CPUs this process may run on, which can be fewer than installed.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    loop = f"uvloop {version('uvloop')}" if HAVE_UVLOOP else "asyncio (uvloop not installed)"
    tools = []
    for tool, flag in (("h2load", "--version"), ("wrk", "-v")):
        if shutil.which(tool):
            done = subprocess.run([tool, flag], capture_output=True, text=True)
            out = (done.stdout + done.stderr).strip()
            tools.append(out.splitlines()[0] if out else tool)
        else:
            tools.append(f"{tool}: not installed")
    return [
        f"Machine: {cpus} CPU(s), {cpu}; {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, event loop: {loop}",
        f"Plexicorn {version('plexicorn')}, Hypercorn {version('hypercorn')}; " + "; ".join(tools),
    ]


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def format_rps(result: Result | None) -> str:
    if result is None or result.rps is None:
        return "-"
    return f"{result.rps:,.0f}"


def print_table(rows: list[tuple[Scenario, Result | None, Result | None]]) -> None:
    header = ("scenario", "Plexicorn req/s", "Hypercorn req/s", "ratio P/H",
              "Plexicorn mean lat.", "Plexicorn p99", "errors P/H")
    table = [header]
    for scenario, plexi, hyper in rows:
        ratio = "-"
        if plexi and hyper and plexi.rps and hyper.rps:
            ratio = f"{plexi.rps / hyper.rps:.2f}x"
        errors = f"{plexi.errors if plexi else '-'} / {hyper.errors if hyper else '-'}"
        table.append((scenario.name, format_rps(plexi), format_rps(hyper), ratio,
                      format_latency(plexi.mean_latency if plexi else None),
                      format_latency(plexi.p99_latency if plexi else None), errors))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row):
        # Scenario names left-aligned, numbers right-aligned.
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        return "| " + " | ".join(cells) + " |"

    print(line(table[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table[1:]:
        print(line(row))


# --- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="0.5 s per measurement (1 s for wrk) and no warm-up: checks the setup quickly")
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS",
                        help="measured seconds per scenario and server (default 5)")
    parser.add_argument("--warm-up", type=float, default=1.0, metavar="SECONDS",
                        help="h2load warm-up before measuring (default 1; wrk has none)")
    parser.add_argument("--no-hypercorn", action="store_true", help="measure Plexicorn only")
    parser.add_argument("--scenario", action="append", default=[], metavar="TEXT",
                        help="run only scenarios whose name contains TEXT (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warm_up = 0.5, 0.0
    if args.duration <= 0 or args.warm_up < 0:
        parser.error("--duration must be positive and --warm-up not negative")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("plexicorn") is None:
        print("Plexicorn is not importable: run `pip install -e .` (or `make bench`) first.", file=sys.stderr)
        return 2

    # SIGTERM to this script (e.g. from a CI timeout) takes the same path as
    # Ctrl-C, so the `finally` blocks stop the servers.
    signal.signal(signal.SIGTERM, _interrupt)

    scenarios = [s for s in SCENARIOS if not args.scenario or any(t in s.name for t in args.scenario)]
    servers = ["Plexicorn"]
    if HAVE_HYPERCORN and not args.no_hypercorn:
        servers.append("Hypercorn")
    elif not HAVE_HYPERCORN:
        print("Hypercorn is not installed: measuring Plexicorn only "
              "(pip install 'hypercorn>=0.17', or `pip install -e .[bench]`).")

    runnable = []
    for tool in sorted({s.tool for s in scenarios}):
        if shutil.which(tool):
            runnable.append(tool)
        else:
            print(f"{tool} not found: skipping its scenarios; {INSTALL_HINTS[tool]}.")

    results: dict[tuple[str, str], Result] = {}
    with tempfile.TemporaryDirectory(prefix="plexicorn-bench-") as tmp:
        tmp_path = Path(tmp)
        tls_files = make_certificate(tmp_path)
        body_file = tmp_path / "body.bin"
        body_file.write_bytes(os.urandom(ECHO_BODY_SIZE))
        # One server process at a time, so the measured one has the machine
        # (client and server still share it: see README).
        try:
            for server in servers:
                for tls in (True, False):
                    group = [s for s in scenarios if s.tls == tls and s.tool in runnable]
                    if not group:
                        continue
                    try:
                        with running_server(server, tls_files if tls else None, tmp_path) as proc:
                            for scenario in group:
                                print(f"  {server:<9}  {scenario.name} ...", end="", flush=True)
                                if scenario.tool == "h2load":
                                    result = run_h2load(scenario, proc.base_url, args.duration,
                                                        args.warm_up, body_file)
                                else:
                                    result = run_wrk(scenario, proc.base_url, args.duration)
                                results[server, scenario.name] = result
                                status = f" {format_rps(result)} req/s"
                                if result.errors:
                                    status += f", {result.errors} errors"
                                print(status + (f" ({result.note})" if result.note else ""))
                    except RuntimeError as exc:
                        print(f"\n{exc}", file=sys.stderr)
                        for scenario in group:
                            results.setdefault((server, scenario.name), Result(note=f"{server} did not start"))
        except KeyboardInterrupt:
            print("\ninterrupted: servers stopped", file=sys.stderr)
            return 130

    print()
    print("\n".join(machine_description()))
    print(f"{args.duration:g} s per measurement"
          + (f" after {args.warm_up:g} s warm-up (h2load)" if args.warm_up else "")
          + "; one server process at a time on 127.0.0.1.")
    print()
    rows = [(s, results.get(("Plexicorn", s.name)), results.get(("Hypercorn", s.name)))
            for s in scenarios if s.tool in runnable]
    if not rows:
        print("No scenario could run (see the hints above).")
        return 0
    print_table(rows)
    notes = [f"{server}, {name}: {r.note}" for (server, name), r in results.items() if r.note]
    for note in notes:
        print(f"note: {note}")

    failed = [name for (server, name), r in results.items() if server == "Plexicorn" and not r.ok]
    if failed:
        print(f"\nPlexicorn had errors in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
