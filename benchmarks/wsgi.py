"""WSGI throughput: a Flask hello world on Plexicorn, Hypercorn, uvicorn and Granian.

    python benchmarks/wsgi.py               # ~1 minute with every server installed
    python benchmarks/wsgi.py --duration 3

Each server runs the same app (`benchmarks/wsgi_app.py`) as one process on 127.0.0.1 with its
WSGI thread pool at 10 threads where it has a setting for it: Plexicorn (`--wsgi-threads 10`,
its default), Hypercorn (it detects WSGI; its pool is asyncio's default executor), uvicorn
(`--interface wsgi`, through a2wsgi) and Granian (`--interface wsgi --blocking-threads 10`).
A server that is not installed is skipped; uvicorn has no HTTP/2, so its h2c rows are empty.
Load generators: wrk (HTTP/1.1) and h2load (h2c, prior knowledge), as for benchmarks/run.py.

A last row is Plexicorn's alone: 100 concurrent streams on one HTTP/2 connection to /sleep
(each call blocks 100 ms) against the 10-thread pool; ideal is 100 × 0.1 s / 10 = 1 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (HOST, REPO, Scenario, free_port, machine_description, run_h2load,  # noqa: E402
                            run_tool, run_wrk)

APP = "benchmarks.wsgi_app:app"
THREADS = 10
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"

SCENARIOS = (
    Scenario("http/1.1 GET / wrk -t2 -c64", "wrk", False, "/", ("-t", "2", "-c", "64")),
    Scenario("h2c GET / -c16 -m16", "h2load", False, "/", ("-c", "16", "-m", "16")),
    Scenario("h2c GET / -c1 -m100", "h2load", False, "/", ("-c", "1", "-m", "100")),
)


def command(server: str, port: int, work_dir: Path) -> list[str] | None:
    if server == "Plexicorn":
        return [sys.executable, "-m", "plexicorn", APP, "--bind", f"{HOST}:{port}", "--no-access-log",
                "--log-level", "warning", "--loop", LOOP, "--wsgi-threads", str(THREADS)]
    if server == "Hypercorn" and importlib.util.find_spec("hypercorn"):
        config = work_dir / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")  # see benchmarks/README.md
        return [sys.executable, "-m", "hypercorn", APP, "--config", str(config), "--bind", f"{HOST}:{port}",
                "--worker-class", LOOP]
    if server == "uvicorn" and importlib.util.find_spec("uvicorn"):
        return [sys.executable, "-m", "uvicorn", APP, "--interface", "wsgi", "--host", HOST, "--port", str(port),
                "--no-access-log", "--log-level", "warning", "--loop", LOOP]
    if server == "Granian" and shutil.which("granian", path=str(Path(sys.executable).parent)):
        return [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--host", HOST,
                "--port", str(port), "--no-ws", "--blocking-threads", str(THREADS), "--log-level", "warning",
                "--no-access-log", APP]
    return None


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    import socket
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{cmd} did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sleep_burst(url: str) -> str:
    """100 streams at once on one connection to /sleep: wall time of the whole burst."""
    output, failure = run_tool(["h2load", "-n", "100", "-c", "1", "-m", "100", url + "/sleep"], timeout=60)
    if failure:
        return failure
    finished = re.search(r"finished in ([\d.]+\w+)", output)
    done = re.search(r"(\d+) succeeded, (\d+) failed", output)
    return f"{finished.group(1) if finished else '?'}, {done.group(1) if done else '?'} succeeded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    args = parser.parse_args(argv)
    servers = ("Plexicorn", "Hypercorn", "uvicorn", "Granian")
    table: dict[str, dict[str, str]] = {}
    extra = ""
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        for server in servers:
            port = free_port()
            cmd = command(server, port, work_dir)
            if cmd is None:
                print(f"{server}: not installed, skipped")
                continue
            process = start(cmd, port, work_dir / f"{server}.log")
            try:
                url = f"http://{HOST}:{port}"
                for scenario in SCENARIOS:
                    if server == "uvicorn" and scenario.tool == "h2load":
                        continue  # no HTTP/2 in uvicorn
                    if not shutil.which(scenario.tool):
                        continue
                    if scenario.tool == "wrk":
                        result = run_wrk(scenario, url, args.duration)
                    else:
                        result = run_h2load(scenario, url, args.duration, 1.0, work_dir / "unused")
                    cell = (f"{result.rps:,.0f}" if result.rps is not None else "-") + \
                        (f" ({result.errors} errors)" if result.errors else "") + \
                        (f" [{result.note}]" if result.note else "")
                    table.setdefault(scenario.name, {})[server] = cell
                if server == "Plexicorn" and shutil.which("h2load"):
                    extra = sleep_burst(url)
            finally:
                stop(process)
    print("\n".join(machine_description()))
    print(f"req/s, one process each, {THREADS} WSGI threads, {LOOP}")
    print("| scenario | " + " | ".join(servers) + " |")
    print("|---" * (len(servers) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells.get(server, "n/a") for server in servers) + " |")
    if extra:
        print(f"Plexicorn, 100 × /sleep (100 ms) on one h2c connection, {THREADS} threads: {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
