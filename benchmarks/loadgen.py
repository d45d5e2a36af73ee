"""The load generators (h2load, wrk): their command lines and the parsing of what they print.

The parsers take text and return a `Result`, so tests/test_benchmarks.py checks them on recorded
outputs without starting anything. Latency percentiles: wrk prints them (`--latency`); h2load does
not, so it writes one line per request to `--log-file` (start time, status, microseconds until the
end of the response) and `latency_percentiles` computes p50/p99 from those lines.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path


@dataclasses.dataclass
class Result:
    rate: float | None = None  # req/s, or MiB/s for a scenario measured in MiB/s
    p50: float | None = None  # seconds
    p99: float | None = None  # seconds
    errors: int = 0
    note: str = ""  # why there is no number, or what went wrong
    extra: dict = dataclasses.field(default_factory=dict)  # memory figures and the like

    @property
    def ok(self) -> bool:
        return self.rate is not None and self.errors == 0 and not self.note


_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unrecognised duration {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def run_tool(cmd: list[str], timeout: float, preexec_fn=None) -> tuple[str, str | None]:
    """Run a load generator; return its output and a failure note, if any."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired:
        return "", f"{cmd[0]} did not finish within {timeout:.0f} s"
    output = done.stdout + done.stderr
    if done.returncode != 0:
        last = output.strip().splitlines()[-1:] or ["no output"]
        return output, f"{cmd[0]} exited with {done.returncode}: {last[0]}"
    return output, None


def h2load_command(url: str, connections: int, streams: int, duration: float, warm_up: float,
                   log_file: Path, body_file: Path | None = None) -> list[str]:
    cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-D", f"{int(duration * 1000)}ms",
           "--log-file", str(log_file)]
    if warm_up > 0:
        cmd += ["--warm-up-time", f"{int(warm_up * 1000)}ms"]
    if body_file is not None:
        cmd += ["-d", str(body_file)]
    cmd.append(url)
    return cmd


def wrk_command(url: str, connections: int, threads: int, duration: float) -> list[str]:
    # wrk takes whole seconds; --latency adds the percentile table (p50, p99).
    seconds = max(1, round(duration))
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]


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
    result.rate = float(finished.group(1))
    # h2load's "failed" already includes "errored", "timeout" and non-2xx/3xx
    # statuses. In timing mode, requests still in flight when the clock stops
    # are "started" but not "done"; they are not errors.
    result.errors = int(requests.group(4))
    if int(requests.group(3)) == 0:
        result.note = result.note or "no request succeeded"
    return result


def latency_percentiles(log_text: str) -> tuple[float | None, float | None]:
    """p50 and p99 (seconds, nearest rank) from h2load's --log-file lines.

    Each line is `start_us<TAB>status<TAB>duration_us`; requests that got no response carry a
    negative or missing status and are left out (they are counted as errors already)."""
    durations = []
    for line in log_text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        try:
            status, micros = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if status > 0 and micros >= 0:
            durations.append(micros)
    return percentile(durations, 50), percentile(durations, 99)


def percentile(micros: list[int], pct: float) -> float | None:
    if not micros:
        return None
    ordered = sorted(micros)
    # Nearest rank: the smallest sample with at least pct % of the samples at or below it.
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1] / 1e6


def parse_wrk(output: str) -> Result:
    result = Result()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        result.note = "could not parse wrk output"
        return result
    result.rate = float(rps.group(1))
    for pct, attr in (("50", "p50"), ("99", "p99")):
        match = re.search(rf"^\s*{pct}%\s+(\S+)", output, re.MULTILINE)
        if match:
            setattr(result, attr, parse_duration(match.group(1)))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        result.errors += sum(int(n) for n in socket_errors.groups())
    bad_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if bad_status:
        result.errors += int(bad_status.group(1))
    return result
