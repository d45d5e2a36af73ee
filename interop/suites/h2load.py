"""h2load (nghttp2's load generator): 20 000 requests, 100 concurrent streams on each of 10
connections, over TLS and h2c; every request must succeed and no stream may fail."""

from __future__ import annotations

import functools
import re

from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    find_tool,
    run_case,
)
from ..servers import PlexicornProcess
from ._tools import run_tool

NAME = "h2load"
HINT = "install nghttp2's h2load (Debian/Ubuntu: apt-get install nghttp2-client; macOS: brew install nghttp2)"
REQUESTS, CLIENTS, STREAMS = 20_000, 10, 100

_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_PROTOCOL = re.compile(r"Application protocol: (\S+)")
_RATE = re.compile(r"finished in ([\d.]+\w+), ([\d.]+) req/s")


def run(env: Environment, options: Options) -> list[CaseResult]:
    h2load = find_tool("h2load", "H2LOAD")
    if h2load is None:
        raise SuiteSkipped(HINT)
    results = []
    for label, server, protocol in (("TLS", env.tls_server, "h2"), ("h2c", env.h2c_server, "h2c")):
        name = (f"{label}: h2load -n {REQUESTS} -c {CLIENTS} -m {STREAMS}: all succeed, "
                f"0 failed/errored/timeout, all 2xx, protocol {protocol}")
        if options.selects(name):
            results.append(run_case(name, functools.partial(_load, h2load, server, protocol)))
    return results


def _load(h2load: str, server: PlexicornProcess, protocol: str) -> str:
    done = run_tool([h2load, "-n", str(REQUESTS), "-c", str(CLIENTS), "-m", str(STREAMS), server.url + "/hello"],
                    timeout=120)
    text = done.stdout.decode("utf-8", "replace")
    negotiated = _PROTOCOL.search(text)
    counts = _REQUESTS.search(text)
    statuses = _STATUS.search(text)
    if not negotiated or not counts or not statuses:
        raise CaseFailed("h2load's summary", " | ".join(text.strip().splitlines()[-3:]))
    _total, _started, done_, succeeded, failed, errored, timeout = map(int, counts.groups())
    two_xx = int(statuses.group(1))
    problems = []
    if negotiated.group(1) != protocol:
        problems.append(f"protocol {negotiated.group(1)}")
    if succeeded != REQUESTS or done_ != REQUESTS:
        problems.append(f"{succeeded} succeeded, {done_} done of {REQUESTS}")
    if failed or errored or timeout:
        problems.append(f"{failed} failed, {errored} errored, {timeout} timeout")
    if two_xx != REQUESTS:
        problems.append(f"{two_xx} 2xx")
    if problems:
        raise CaseFailed(f"{REQUESTS} succeeded over {protocol}, none failed", "; ".join(problems))
    rate = _RATE.search(text)
    return f"{rate.group(2)} req/s, finished in {rate.group(1)}" if rate else ""
