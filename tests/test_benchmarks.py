"""The benchmark harness (benchmarks/run.py and its modules) works: its parsers read recorded
h2load/wrk outputs right, its tables compute the ratios, its idle-connection client really holds
HTTP/2 connections and streams open at a real Plexicorn, and a one-scenario run completes.

No figure is asserted: timing stays out of the test suite (issue 16)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import sys

import pytest

from benchmarks import report
from benchmarks import run as bench_run
from benchmarks.loadgen import Result, latency_percentiles, parse_h2load, parse_wrk, percentile
from benchmarks.run import SCENARIOS, make_certificate
from benchmarks.servers import REPO, running_server


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """benchmarks/run.py with these arguments, as a user runs it: its output as text."""
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


H2LOAD_OUTPUT = """\
starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 1.00s, 2876.00 req/s, 98.57KB/s
requests: 2876 total, 2884 started, 2876 done, 2876 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2876 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 98.57KB (100932) total, 11.35KB (11618) headers (space savings 95.01%), 36.51KB (37388) data
                     min         max         mean         sd        +/- sd
time for request:     1.56ms      8.85ms      2.76ms       502us    85.81%
"""

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:18777/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.25ms  373.36us   9.67ms   96.52%
    Req/Sec     3.57k   217.00     3.88k    63.64%
  Latency Distribution
     50%    2.21ms
     75%    2.34ms
     90%    2.47ms
     99%    2.96ms
  3913 requests in 1.10s, 439.45KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3553.70
Transfer/sec:    399.10KB
"""


def test_h2load_output_is_read():
    result = parse_h2load(H2LOAD_OUTPUT, expect_protocol="h2c")
    assert (result.rate, result.errors, result.note) == (2876.0, 0, "")
    assert result.ok


def test_h2load_failures_and_a_wrong_protocol_count():
    failing = H2LOAD_OUTPUT.replace("2876 succeeded, 0 failed, 0 errored",
                                    "2870 succeeded, 6 failed, 2 errored")
    assert parse_h2load(failing, expect_protocol="h2c").errors == 6
    fallback = parse_h2load(H2LOAD_OUTPUT.replace("protocol: h2c", "protocol: http/1.1"), "h2c")
    assert fallback.note == "negotiated http/1.1, not h2c" and not fallback.ok
    assert parse_h2load("nothing useful", "h2").rate is None


def test_percentiles_from_h2load_log_skip_requests_without_a_response():
    # 100 answered requests taking 1..100 ms, and two that never got a status (-1).
    lines = [f"1796242449{n:06d}\t200\t{n * 1000}" for n in range(1, 101)]
    lines += ["1796242449999999\t-1\t-1", "1796242449999999\t-1\t5000000", "garbage"]
    p50, p99 = latency_percentiles("\n".join(lines) + "\n")
    assert (p50, p99) == (0.05, 0.099)
    assert percentile([7], 99) == 7e-6
    assert latency_percentiles("") == (None, None)


def test_wrk_output_is_read():
    result = parse_wrk(WRK_OUTPUT)
    assert result.rate == 3553.70
    assert result.p50 == pytest.approx(2.21e-3) and result.p99 == pytest.approx(2.96e-3)
    assert result.errors == 3 + 4  # socket errors (read, timeout) + non-2xx/3xx
    assert parse_wrk("").note == "could not parse wrk output"


def test_tables_divide_plexicorn_by_each_peer_and_leave_gaps():
    scenario = next(s for s in SCENARIOS if s.key == "h1")
    results = {("h1", "Plexicorn"): Result(rate=8000.0, p50=0.002, p99=0.0095),
               ("h1", "uvicorn"): Result(rate=10000.0, p50=0.001, p99=0.004, errors=2)}
    rows = report.throughput_table([scenario], ["Plexicorn", "uvicorn", "Granian"], results)
    assert rows[0][-2:] == ("P÷uvicorn", "P÷Granian")
    assert rows[1][2:] == ("8,000", "10,000", report.DASH, "0.80×", report.DASH)
    latency = report.latency_table([scenario], ["Plexicorn", "uvicorn"], results)
    assert latency[1][1:] == ("2.0 ms / 9.5 ms, 0", "1.0 ms / 4.0 ms, 2")
    markdown = report.render(rows, markdown=True).splitlines()
    assert markdown[1].startswith("|:-") and markdown[1].endswith(":|")


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_idle_client_holds_connections_and_streams_open(tmp_path, tls):
    tls_files = make_certificate(tmp_path) if tls else None
    with running_server("Plexicorn", "benchmarks.app:app", tls_files, tmp_path, None, idle=True) as proc:
        for extra, opened in ((["--connections", "20"], 20), (["--streams", "10"], 10)):
            client = subprocess.Popen(
                [sys.executable, str(REPO / "benchmarks" / "idle_clients.py"), "--port",
                 str(proc.port), *(["--tls"] if tls else []), *extra],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert client.stdout.readline().split() == ["ready", str(opened), "0"]
                if extra[0] == "--connections":
                    # The server holds every one of them while the client waits.
                    # (read from /proc: wait for the server to have accepted them all; the sockets it
                    # had before, its listener and probes, may have closed meanwhile)
                    deadline = time.monotonic() + 10
                    while proc.sockets() <= opened and time.monotonic() < deadline:
                        time.sleep(0.05)
                    assert proc.sockets() >= opened + 1  # and the listener
            finally:
                client.stdin.close()
                assert client.wait(timeout=30) == 0, client.stderr.read()


def test_rounds_give_the_median_round_and_each_rounds_ratio():
    scenario = next(s for s in SCENARIOS if s.key == "h1")
    rounds = [{("h1", "Plexicorn"): Result(rate=rate, p99=p99), ("h1", "uvicorn"): Result(rate=peer, errors=errors)}
              for rate, p99, peer, errors in ((900.0, 0.3, 1000.0, 0), (1200.0, 0.1, 1000.0, 1),
                                              (700.0, 0.2, 1000.0, 0), (1000.0, 0.4, 500.0, 0))]
    rounds[3][("h1", "uvicorn")] = Result(note="uvicorn did not start")
    results = report.median_round(rounds)
    plexi = results["h1", "Plexicorn"]
    # The lower of the two middle rounds, whole (its p99 too), with every round's rate kept.
    assert (plexi.rate, plexi.p99, plexi.extra["round_rates"]) == (900.0, 0.3, [900.0, 1200.0, 700.0, 1000.0])
    peer = results["h1", "uvicorn"]
    assert (peer.rate, peer.errors, peer.note) == (1000.0, 1, "round 4: uvicorn did not start")
    rows = report.rounds_table([scenario], ["Plexicorn", "uvicorn"], rounds)
    assert rows[0] == ("scenario", "P÷uvicorn by round", "median")
    assert rows[1][1:] == ("0.90 1.20 0.70 –", "0.90×")  # the round uvicorn failed has no ratio
    assert report.median_round(rounds[:1]) is rounds[0]


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
def test_quick_run_of_one_scenario_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "run.json", tmp_path / "table.md"
    done = run_bench("--quick", "--server", "plexicorn", "--scenario", "h2c-c1", "--json", str(out_json),
                     "--markdown", str(out_md), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out_json.read_text())
    result = figures["scenarios"]["h2c-c1"]["results"]["Plexicorn"]
    assert result["rate"] > 0 and result["errors"] == 0 and result["p99_s"] >= result["p50_s"] > 0
    assert figures["machine"]["servers"]["Plexicorn"]
    assert "h2c GET / 1 conn × 100 streams" in out_md.read_text()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
@pytest.mark.timeout(120)  # above run_bench's own 90 s
def test_a_run_of_two_rounds_measures_each_scenario_twice(tmp_path):
    out_json = tmp_path / "run.json"
    done = run_bench("--quick", "--server", "plexicorn", "--scenario", "h2c-c1", "--rounds", "2",
                     "--json", str(out_json), timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round 2 of 2" in done.stdout and "2 rounds: rates, p50 and p99 are each one's median round" in done.stdout
    result = json.loads(out_json.read_text())["scenarios"]["h2c-c1"]["results"]["Plexicorn"]
    assert len(result["round_rates"]) == 2 and all(rate > 0 for rate in result["round_rates"])
    assert result["rate"] == min(result["round_rates"])  # of two, the lower is the median round


def test_unknown_server_is_one_error_line():
    done = run_bench("--server", "nginx", timeout=30)
    assert done.returncode == 2 and "unknown server 'nginx'" in done.stderr


def test_comparison_with_an_earlier_run():
    def document(rate, p99):
        return {"scenarios": {"h2c": {"title": "h2c", "unit": "req/s", "results": {
            "Plexicorn": {"rate": rate, "p99_s": p99}}}}}

    rows = report.comparison_table(document(1000.0, 0.020), document(2500.0, 0.010))
    assert rows[1] == ("h2c", "req/s", "1,000.0", "2,500.0", "+150 %", "20.0 ms", "10.0 ms")
    assert len(report.comparison_table({"scenarios": {}}, document(1.0, None))) == 1


@pytest.mark.skipif(shutil.which("h2load") is None or shutil.which("nghttpd") is None,
                    reason="h2load (nghttp2-client) or nghttpd (nghttp2-server) not installed")
def test_nghttpd_serves_the_static_scenarios_as_a_reference(tmp_path):
    out_json = tmp_path / "run.json"
    done = run_bench("--quick", "--server", "nghttpd", "--scenario", "h2-tls-stream", "--scenario", "h2-tls-echo",
                     "--json", str(out_json), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out_json.read_text())
    streamed = figures["scenarios"]["h2-tls-stream"]["results"]["nghttpd"]
    # Every response counted whole (1 MiB), none failed: the same bytes as the app's /stream.
    assert streamed["rate"] > 0 and streamed["errors"] == 0
    assert "nghttpd" not in figures["scenarios"]["h2-tls-echo"]["results"]
    assert "static files only" in done.stdout


def test_rounds_below_one_are_refused_in_one_line():
    done = run_bench("--rounds", "0", timeout=30)
    assert done.returncode == 2 and "--rounds must be positive" in done.stderr


def test_an_error_in_a_round_that_is_not_the_median_still_fails_the_run(tmp_path, capsys):
    scenario = next(s for s in SCENARIOS if s.key == "h1")
    rounds = [{("h1", "Plexicorn"): Result(rate=rate, p50=0.001, p99=0.002, errors=errors)}
              for rate, errors in ((100.0, 0), (120.0, 3), (110.0, 0))]
    args = bench_run.parse_args(["--rounds", "3", "--json", str(tmp_path / "run.json")])
    assert bench_run.finish(args, [scenario], ["Plexicorn"], rounds, {}) == 1
    result = json.loads((tmp_path / "run.json").read_text())["scenarios"]["h1"]["results"]["Plexicorn"]
    assert (result["rate"], result["errors"], result["round_rates"]) == (110.0, 3, [100.0, 120.0, 110.0])
    assert "Plexicorn had errors in: h1" in capsys.readouterr().err


def _checkout_copy(destination, main_prefix: str = ""):
    """A copy of this tree's server/ and tls/ as a baseline checkout; `main_prefix` goes first in
    its __main__.py."""
    shutil.copytree(REPO / "server", destination / "server", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tls", destination / "tls", ignore=shutil.ignore_patterns("__pycache__"))
    main = destination / "server" / "__main__.py"
    main.write_text(main_prefix + main.read_text())
    return destination


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
@pytest.mark.timeout(150)  # above run_bench's own 120 s, so that a slow run fails with its output
def test_a_baseline_checkout_runs_beside_plexicorn_in_every_round(tmp_path):
    out_json = tmp_path / "run.json"
    done = run_bench("--quick", "--server", "plexicorn", "--scenario", "h2c-c1", "--rounds", "2",
                     "--baseline", str(REPO), "--json", str(out_json), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("  baseline ") == 2  # measured in both rounds
    assert "P÷baseline" in done.stdout and f"baseline from {REPO}" in done.stdout
    figures = json.loads(out_json.read_text())
    result = figures["scenarios"]["h2c-c1"]["results"]["baseline"]
    assert len(result["round_rates"]) == 2 and result["rate"] > 0 and result["errors"] == 0


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
@pytest.mark.timeout(120)  # above run_bench's own 90 s
def test_the_baseline_runs_the_checkouts_code_not_the_installed_plexicorn(tmp_path):
    checkout = _checkout_copy(tmp_path / "checkout", "raise SystemExit(3)\n")
    done = run_bench("--quick", "--server", "plexicorn", "--scenario", "h2c-c1",
                     "--baseline", str(checkout), timeout=90)
    # Plexicorn itself is measured; the checkout's own __main__ is what the baseline ran.
    assert done.returncode == 0, done.stdout + done.stderr
    assert "baseline exited with status 3" in done.stderr
    assert "baseline did not start" in done.stdout


def test_a_baseline_older_than_a_flag_is_not_given_it(tmp_path, monkeypatch):
    from benchmarks import servers
    checkout = _checkout_copy(tmp_path / "checkout")
    config = checkout / "server" / "config.py"
    config.write_text(config.read_text().replace("    http1_parser:", "    renamed_parser:"))
    monkeypatch.setattr(servers, "SPECS", dict(servers.SPECS))  # add_baseline registers in it
    servers.add_baseline(checkout)
    command = servers.server_command(servers.BASELINE, "benchmarks.app:app", 1, None, tmp_path, False)
    assert "--http1-parser" not in command and "--backlog" in command
    servers.add_baseline(REPO)
    command = servers.server_command(servers.BASELINE, "benchmarks.app:app", 1, None, tmp_path, False)
    assert "--http1-parser" in command


def test_a_baseline_that_is_not_a_checkout_is_one_error_line(tmp_path):
    done = run_bench("--baseline", str(tmp_path), timeout=30)
    assert done.returncode == 2 and "is not a Plexicorn checkout" in done.stderr
    done = run_bench("--baseline", str(REPO), "--server", "hypercorn", timeout=30)
    assert done.returncode == 2 and "--baseline compares with Plexicorn" in done.stderr


def test_the_baseline_imports_every_module_from_its_checkout_or_fails(tmp_path):
    from benchmarks import servers
    checkout = _checkout_copy(tmp_path / "checkout")
    (checkout / "server" / "envfile.py").unlink()  # a module this tree has and the checkout not
    farm = servers.baseline_import_path(checkout, tmp_path / "work")
    probe = servers.BASELINE_PRELUDE + """
import pathlib, plexicorn.tls, plexicorn.config
print(pathlib.Path(plexicorn.tls.__file__).resolve(), pathlib.Path(plexicorn.config.__file__).resolve())
try:
    import plexicorn.envfile
except ModuleNotFoundError:
    print("no envfile")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(farm)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tls_file, config_file, missing = done.stdout.split()[:2] + [done.stdout.splitlines()[-1]]
    assert tls_file == str(checkout.resolve() / "tls" / "__init__.py")
    assert config_file == str(checkout.resolve() / "server" / "config.py")
    assert missing == "no envfile"  # not this tree's envfile.py through the installed package
    # Laid out again for another checkout in the same directory: the new one is used.
    assert os.readlink(servers.baseline_import_path(REPO, tmp_path / "work") / "plexicorn" / "config.py") \
        == str(REPO.resolve() / "server" / "config.py")


def test_a_process_tree_cpu_time_matches_the_kernels_own_count():
    # In a child of its own: this process may have children (servers) whose time the tree adds.
    probe = """
import os, time
from benchmarks.servers import tree_cpu_seconds
deadline = time.process_time() + 0.3
while time.process_time() < deadline:
    pass
times = os.times()
print(tree_cpu_seconds(os.getpid()), times.user + times.system, 1 / os.sysconf("SC_CLK_TCK"))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 0, done.stderr
    tree, own, tick = map(float, done.stdout.split())
    assert own >= 0.3 and abs(tree - own) <= 3 * tick
