"""Autobahn|Testsuite's fuzzing client (`wstest -m fuzzingclient`) against the /ws echo route:
cases 1-10 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close handling,
limits) and 12.1 / 13.1 (permessage-deflate). Every case must be OK or NON-STRICT
(INFORMATIONAL is not a verdict and passes too)."""

from __future__ import annotations

import json

from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    find_tool,
    run_case,
)
from ._tools import run_tool

NAME = "autobahn"
HINT = ("install Autobahn|Testsuite's wstest (pip install autobahntestsuite under Python 2, or "
        "docker run crossbario/autobahn-testsuite) and put wstest on PATH or in WSTEST")
CASES = [f"{n}.*" for n in range(1, 11)] + ["12.1.*", "13.1.*"]
AGENT = "Plexicorn"
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}


def run(env: Environment, options: Options) -> list[CaseResult]:
    wstest = find_tool("wstest", "WSTEST")
    if wstest is None:
        raise SuiteSkipped(HINT)
    server = env.h2c_server
    outdir = env.work_dir / "autobahn"
    spec = env.work_dir / "fuzzingclient.json"
    spec.write_text(json.dumps({
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": f"ws://127.0.0.1:{server.port}/ws"}],
        "cases": CASES, "exclude-cases": [], "exclude-agent-cases": {},
    }, indent=2))
    ran = run_case(f"wstest -m fuzzingclient -s {spec.name} ({', '.join(CASES)})",
                   lambda: run_tool([wstest, "-m", "fuzzingclient", "-s", str(spec)], timeout=900) and None)
    results = [ran]
    index = outdir / "index.json"
    if not index.exists():
        if ran.status == "passed":
            results.append(CaseResult("Autobahn report", "failed", message=f"no {index} written"))
        return results
    verdicts = json.loads(index.read_text()).get(AGENT, {})
    for case_id in sorted(verdicts, key=lambda c: [int(p) for p in c.split(".")]):
        verdict = verdicts[case_id]
        name = f"case {case_id}"
        if not options.selects(name):
            continue

        def check(verdict: dict = verdict) -> str:  # type: ignore[type-arg]
            behavior, close = verdict.get("behavior"), verdict.get("behaviorClose")
            if behavior not in PASSING or close not in PASSING_CLOSE:
                raise CaseFailed("OK or NON-STRICT (and a clean close)", f"{behavior} (close: {close})")
            return f"{behavior}, close {close}"
        results.append(run_case(name, check))
    if not verdicts:
        results.append(CaseResult("Autobahn verdicts", "failed", message=f"no results for agent {AGENT}"))
    return results
