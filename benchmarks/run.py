"""Throughput, latency and memory benchmark: Plexicorn next to Hypercorn, uvicorn, Granian, h2corn.

Run from anywhere (``make bench`` installs what it needs)::

    python benchmarks/run.py                       # every scenario, every installed server
    python benchmarks/run.py --quick               # short runs: checks that everything works
    python benchmarks/run.py --server plexicorn --scenario h2c --markdown table.md --json run.json
    python benchmarks/run.py --scenario h1 --server plexicorn --server uvicorn --rounds 5
    python benchmarks/run.py --rounds 3 --baseline /tmp/base   # and the code of a checkout, as a peer

One server process at a time on 127.0.0.1, pinned to one core, the load generator (h2load, wrk,
idle_clients.py) pinned to another when the machine has two or more. A missing tool or server, or
a server that cannot speak a scenario's protocol, only leaves that cell empty (`–`) with the reason
printed once. The exit status is 1 when Plexicorn had an error in any scenario it ran.

On shared or noisy machines one measurement says little: `--rounds N` runs the load scenarios N
times, every server in turn in each round, shows each figure's median round in the tables, and
the Plexicorn ÷ peer ratio of every round (both servers measured minutes apart, not hours).
`--baseline DIR` adds an earlier Plexicorn (a checkout of its source tree) as one more peer, so
that "now ÷ before" comes from the same rounds too.

See benchmarks/README.md for what each scenario measures and how to read the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: import the sibling modules as `benchmarks.*`
    sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.loadgen import (Result, h2load_command, latency_percentiles, parse_h2load,  # noqa: E402
                                parse_wrk, run_tool, wrk_command)
from benchmarks.servers import (SERVERS, add_baseline, checkout_problem, placement, pinned,  # noqa: E402
                               running_server)

ECHO_BODY_SIZE = 16 * 1024
APPS = {"hello": "benchmarks.app:app", "fastapi": "benchmarks.fastapi_app:app"}


@dataclasses.dataclass(frozen=True)
class Scenario:
    key: str  # what --scenario matches
    title: str
    tool: str  # "h2load", "wrk", or "idle" (idle_clients.py, memory)
    protocol: str  # "h2" (TLS), "h2c", "h1"
    path: str = "/"
    connections: int = 16
    streams: int = 16
    app: str = "hello"
    post_body: bool = False
    unit: str = "req/s"

    @property
    def tls(self) -> bool:
        return self.protocol == "h2"


SCENARIOS = (
    Scenario("h2-tls", "HTTP/2 TLS GET / 16 conns × 16 streams", "h2load", "h2"),
    Scenario("h2-tls-c1", "HTTP/2 TLS GET / 1 conn × 100 streams", "h2load", "h2",
             connections=1, streams=100),
    Scenario("h2c", "h2c GET / 16 conns × 16 streams", "h2load", "h2c"),
    Scenario("h2c-c1", "h2c GET / 1 conn × 100 streams", "h2load", "h2c", connections=1, streams=100),
    Scenario("h1", "HTTP/1.1 GET / keep-alive 64 conns (wrk)", "wrk", "h1", connections=64),
    Scenario("h2-tls-echo", "HTTP/2 TLS POST /echo 16 KiB 16×16", "h2load", "h2", path="/echo",
             post_body=True),
    # Fewer streams: each response is 1 MiB, so this measures bulk transfer (flow control,
    # backpressure), not per-request overhead. 1 MiB per request: MiB/s = req/s.
    Scenario("h2-tls-stream", "HTTP/2 TLS GET /stream 1 MiB 4×4", "h2load", "h2", path="/stream",
             connections=4, streams=4, unit="MiB/s"),
    Scenario("fastapi-h2-tls", "FastAPI JSON HTTP/2 TLS 16×16", "h2load", "h2", path="/items/42",
             app="fastapi"),
    Scenario("fastapi-h1", "FastAPI JSON HTTP/1.1 64 conns (wrk)", "wrk", "h1", path="/items/42",
             connections=64, app="fastapi"),
    Scenario("mem-idle", "RSS: {n:,} idle HTTP/2 TLS connections", "idle", "h2",
             connections=10000, streams=0, unit="MiB"),
    Scenario("mem-streams", "RSS: 1 HTTP/2 TLS connection, 100 open streams", "idle", "h2",
             path="/wait", connections=1, streams=100, unit="MiB"),
)

TOOL_OF = {"h2load": "h2load", "wrk": "wrk", "idle": None}
INSTALL_HINTS = {
    "h2load": "install nghttp2's h2load (Debian/Ubuntu: apt-get install nghttp2-client; macOS: brew install nghttp2)",
    "wrk": "install wrk (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)",
}


def measure_load(scenario: Scenario, url: str, args, work: Path, load_cpus) -> Result:
    if scenario.tool == "wrk":
        threads = len(load_cpus) if load_cpus else 2
        output, failure = run_tool(wrk_command(url + scenario.path, scenario.connections, threads,
                                               args.duration),
                                   timeout=args.duration + 60, preexec_fn=pinned(load_cpus))
        return Result(note=failure) if failure else parse_wrk(output)
    log_file = work / "h2load.log"
    log_file.unlink(missing_ok=True)
    cmd = h2load_command(url + scenario.path, scenario.connections, scenario.streams, args.duration,
                         args.warm_up, log_file, work / "body.bin" if scenario.post_body else None)
    output, failure = run_tool(cmd, timeout=args.duration + args.warm_up + 60,
                               preexec_fn=pinned(load_cpus))
    if failure:
        return Result(note=failure)
    result = parse_h2load(output, expect_protocol=scenario.protocol)
    if log_file.exists():
        result.p50, result.p99 = latency_percentiles(log_file.read_text(errors="replace"))
    return result


def measure_memory(scenario: Scenario, proc, args, load_cpus) -> Result:
    """The server's RSS (with its children) before and with the idle connections or open streams."""
    before, sockets_before = proc.rss(), proc.sockets()
    cmd = [sys.executable, str(REPO / "benchmarks" / "idle_clients.py"), "--port", str(proc.port)]
    cmd += ["--tls"] if scenario.tls else []
    if scenario.streams:
        cmd += ["--streams", str(scenario.streams), "--path", scenario.path]
    else:
        cmd += ["--connections", str(args.idle_connections)]
    client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=pinned(load_cpus))
    ready = False
    try:
        # idle_clients.py gives up on its own after its --deadline (300 s).
        readable, _, _ = select.select([client.stdout], [], [], 330)
        line = client.stdout.readline().split() if readable else []
        if len(line) != 3 or line[0] != "ready":
            client.kill()
            err = client.stderr.read().strip().splitlines()[-1:] if readable else ["timed out"]
            return Result(note=f"idle_clients.py failed: {err[0] if err else 'no output'}")
        ready = True
        opened, failed = int(line[1]), int(line[2])
        reasons = []
        if failed and select.select([client.stderr], [], [], 1)[0]:
            reasons = [client.stderr.readline().strip()]  # what it printed about the failures
        time.sleep(args.settle)  # let the server finish whatever the last arrivals started
        after, sockets = proc.rss(), proc.sockets() - sockets_before
        alive = proc.process.poll() is None
    finally:
        if client.poll() is None and not ready:
            client.kill()  # interrupted while it was still opening: no goodbye needed
            client.wait()
        elif client.poll() is None:
            client.stdin.close()
            try:
                client.wait(timeout=60)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
    result = Result(errors=failed, extra={"rss_before": before, "rss_after": after,
                                          "opened": opened, "failed": failed})
    result.rate = after / 2**20
    if not alive:
        result.note = "the server exited while the connections were open"
    elif reasons:
        result.note = f"idle_clients.py {reasons[0]}"
    elif not scenario.streams and sockets < opened:
        # The server closed some (an idle timeout it has no flag for): the RSS is of fewer.
        result.note = f"the server kept {max(0, sockets)} of the {opened} connections"
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="0.5 s per measurement (1 s for wrk), no warm-up, 500 idle connections: "
                             "checks the setup quickly")
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS",
                        help="measured seconds per scenario and server (default 5)")
    parser.add_argument("--warm-up", type=float, default=1.0, metavar="SECONDS",
                        help="h2load warm-up before measuring (default 1; wrk has none)")
    parser.add_argument("--idle-connections", type=int, default=10000, metavar="N",
                        help="connections of the mem-idle scenario (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the load scenarios N times, each server in turn in every round; the "
                             "tables show the median round, and every round's ratios are printed (default 1)")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                        help="wait after the idle connections are open before reading RSS (default 1)")
    parser.add_argument("--scenario", action="append", default=[], metavar="KEY",
                        help="run only scenarios whose key contains KEY (repeatable): "
                             + ", ".join(s.key for s in SCENARIOS))
    parser.add_argument("--server", action="append", default=[], metavar="NAME",
                        help="run only these servers (repeatable, case-insensitive): "
                             + ", ".join(s.name for s in SERVERS))
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run an earlier Plexicorn from this checkout of its source tree "
                             "(git worktree add DIR COMMIT) in every round, as the peer 'baseline'")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the tables as Markdown")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--compare", type=Path, metavar="PATH",
                        help="a --json file of an earlier run: print Plexicorn's figures then and now")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warm_up = 0.5, 0.0
        args.idle_connections = min(args.idle_connections, 500)
    if args.duration <= 0 or args.warm_up < 0 or args.idle_connections < 1 or args.settle < 0 or args.rounds < 1:
        parser.error("--duration, --idle-connections and --rounds must be positive; --warm-up and --settle not negative")
    if args.compare:
        try:
            args.compare = json.loads(args.compare.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--compare: cannot read {args.compare}: {exc}")
    if args.baseline is not None:
        if (problem := checkout_problem(args.baseline)) is not None:
            parser.error(f"--baseline: {problem}")
        if args.server and "plexicorn" not in {name.lower() for name in args.server}:
            parser.error("--baseline compares with Plexicorn: add --server plexicorn")
    known = {s.name.lower() for s in SERVERS}
    for name in args.server:
        if name.lower() not in known:
            parser.error(f"unknown server {name!r}; choose from {', '.join(s.name for s in SERVERS)}")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM to this script (e.g. from a CI timeout) takes the same path as Ctrl-C, so the
    # `finally` blocks stop the servers.
    signal.signal(signal.SIGTERM, _interrupt)

    scenarios = [dataclasses.replace(s, title=s.title.format(n=args.idle_connections))
                 for s in SCENARIOS if not args.scenario or any(t in s.key for t in args.scenario)]
    chosen = [s for s in SERVERS if not args.server or s.name.lower() in {n.lower() for n in args.server}]
    if args.baseline is not None:
        chosen.insert(1 if chosen and chosen[0].name == "Plexicorn" else 0, add_baseline(args.baseline))
    skipped = {s.name: s.unavailable() for s in chosen if s.unavailable()}
    servers = [s for s in chosen if s.name not in skipped]
    if "Plexicorn" in skipped:
        print("Plexicorn is not importable: run `pip install -e .` (or `make bench`) first.",
              file=sys.stderr)
        return 2
    for tool in sorted({TOOL_OF[s.tool] for s in scenarios} - {None}):
        if not shutil.which(tool):
            print(f"{tool} not found: skipping its scenarios; {INSTALL_HINTS[tool]}.")
            scenarios = [s for s in scenarios if TOOL_OF[s.tool] != tool]
    if any(s.app == "fastapi" for s in scenarios) and not _have("fastapi"):
        print("FastAPI is not installed: skipping its scenarios (pip install -e .[bench]).")
        scenarios = [s for s in scenarios if s.app != "fastapi"]
    for name, reason in skipped.items():
        print(f"{name}: {reason}")

    if all(s.tool == "idle" for s in scenarios):
        args.rounds = 1  # memory is measured once: further rounds would have nothing to run
    runnable: dict[str, list[Scenario]] = {}  # by server: the scenarios it can take part in
    for spec in servers:
        cannot = {s.key: spec.cannot(s) for s in scenarios if spec.cannot(s)}
        if cannot:
            print(f"{spec.name}: {report.DASH} in {', '.join(cannot)}: "
                  f"{'; '.join(sorted(set(cannot.values())))}")
            skipped.setdefault(f"{spec.name} ({', '.join(cannot)})", "; ".join(sorted(set(cannot.values()))))
        runnable[spec.name] = [s for s in scenarios if s.key not in cannot]
    server_cpus, load_cpus = placement()
    rounds: list[dict[tuple[str, str], Result]] = []
    with tempfile.TemporaryDirectory(prefix="plexicorn-bench-") as tmp:
        work = Path(tmp)
        tls_files = make_certificate(work)
        (work / "body.bin").write_bytes(os.urandom(ECHO_BODY_SIZE))
        try:
            for number in range(args.rounds):
                if args.rounds > 1:
                    print(f"round {number + 1} of {args.rounds}")
                results: dict[tuple[str, str], Result] = {}
                rounds.append(results)
                for spec in servers:
                    # The memory figures do not move with the machine's load: measured once.
                    todo = [s for s in runnable[spec.name] if not (number and s.tool == "idle")]
                    # One server process per (app, TLS) for the load scenarios; a fresh one per
                    # memory scenario, so each starts from the same baseline.
                    groups: dict[tuple, list[Scenario]] = {}
                    for s in todo:
                        groups.setdefault((s.app, s.tls, s.key if s.tool == "idle" else ""), []).append(s)
                    for (app, tls, idle), group in groups.items():
                        run_group(spec.name, APPS[app], tls_files if tls else None, bool(idle), group,
                                  args, work, server_cpus, load_cpus, results)
        except KeyboardInterrupt:
            print("\ninterrupted: servers stopped", file=sys.stderr)
            return 130
    return finish(args, scenarios, [s.name for s in servers], rounds, skipped)


def run_group(name, app, tls_files, idle, group, args, work, server_cpus, load_cpus, results) -> None:
    try:
        with running_server(name, app, tls_files, work, server_cpus, idle=idle) as proc:
            for scenario in group:
                print(f"  {name:<9}  {scenario.title} ...", end="", flush=True)
                if scenario.tool == "idle":
                    result = measure_memory(scenario, proc, args, load_cpus)
                else:
                    result = measure_load(scenario, proc.base_url, args, work, load_cpus)
                results[scenario.key, name] = result
                status = f" {report.format_rate(result)} {scenario.unit}"
                if result.errors:
                    status += f", {result.errors} errors"
                print(status + (f" ({result.note})" if result.note else ""))
    except RuntimeError as exc:
        print(f"\n{exc}", file=sys.stderr)
        for scenario in group:
            results.setdefault((scenario.key, name), Result(note=f"{name} did not start"))


def finish(args, scenarios, servers, rounds, skipped) -> int:
    info = report.machine()
    results = report.median_round(rounds)
    settings = {"duration_s": args.duration, "warm_up_s": args.warm_up,
                "idle_connections": args.idle_connections, "quick": args.quick, "rounds": args.rounds}
    load = [s for s in scenarios if s.tool != "idle"]
    memory = [s for s in scenarios if s.tool == "idle"]
    head = report.machine_lines(info) + [
        f"{args.duration:g} s per measurement" + (f" after {args.warm_up:g} s warm-up (h2load)"
                                                   if args.warm_up else "")
        + f"; mem-idle holds {args.idle_connections:,} connections."
        + (f" {args.rounds} rounds: rates, p50 and p99 are each one's median round (P÷peer divides"
           " those medians, which may come from different rounds: the per-round table has each"
           " round's own ratio), errors the sum of all rounds; memory is measured in the first round."
           if args.rounds > 1 else "")]
    sections = []
    if load:
        sections.append(("Throughput (P÷peer: Plexicorn's figure divided by the peer's)",
                         report.throughput_table(load, servers, results)))
        sections.append(("Latency (p50 / p99 per request) and errors",
                         report.latency_table(load, servers, results)))
        if args.rounds > 1 and len(servers) > 1:
            sections.append(("Plexicorn ÷ peer in each round, and their median",
                             report.rounds_table(load, servers, rounds)))
    if memory:
        sections.append(("Memory (RSS of the server process and its children)",
                         report.memory_table(memory, servers, results)))
    print()
    print("\n".join(head))
    for title, rows in sections:
        print(f"\n{title}\n{report.render(rows, markdown=False)}")
    notes = report.notes(results, skipped)
    for note in notes:
        print(f"note: {note}")
    if args.markdown:
        text = "\n".join(f"{line}  " for line in head) + "\n"
        for title, rows in sections:
            text += f"\n{title}:\n\n{report.render(rows, markdown=True)}\n"
        if notes:
            text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
        args.markdown.write_text(text)
    document = report.to_json(info, settings, scenarios, servers, results, skipped)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.compare:
        print(f"\nPlexicorn against the earlier run (--compare)\n"
              f"{report.render(report.comparison_table(args.compare, document), markdown=False)}")
    failed = [key for (key, server), r in results.items()
              if server == "Plexicorn" and (r.errors or r.note or r.rate is None)]
    if failed:
        print(f"\nPlexicorn had errors in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 / localhost (PKCS#8 key: Granian wants
    it). cryptography is a Plexicorn dependency; the clients do not verify it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certfile, keyfile


if __name__ == "__main__":
    sys.exit(main())
