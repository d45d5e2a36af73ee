"""Autobahn|Testsuite's fuzzing client (`wstest -m fuzzingclient`) against the /ws echo route:
cases 1-10 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close handling,
limits) and 12 / 13 (permessage-deflate). Every case must be OK or NON-STRICT
(INFORMATIONAL is not a verdict and passes too), except the deviations in ALLOWED.

12 and 13 in full are 216 cases of 1,000 compressed messages each and take about 11 minutes;
by default every one of their groups runs (each payload kind in 12, each negotiated parameter set
in 13) with messages of 16 B to 32 KiB and 8 KiB in 256-byte frames: 108 cases, about 80 s. The
larger sizes (64 and 128 KiB) add no deflate feature a 32 KiB message does not already use (the
largest window is 32 KiB). AUTOBAHN_CASES=full runs all of 12 and 13."""

from __future__ import annotations

import json
import os

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
HINT = ("install Autobahn|Testsuite's wstest: `make autobahn` (ci/install-autobahn.sh, needs Python 2.7), "
        "or docker run crossbario/autobahn-testsuite; then wstest on PATH or in WSTEST")
# 12.1-12.5: payload kinds; 13.1-13.7: permessage-deflate parameters. Sub-cases 1-10 are sizes
# 16 B .. 128 KiB in one frame, 11-18 sizes 8 KiB .. 128 KiB fragmented.
DEFLATE_GROUPS = [f"12.{g}" for g in range(1, 6)] + [f"13.{g}" for g in range(1, 8)]
DEFLATE_SUBSET = [*range(1, 9), 11]
CASES_FULL = [f"{n}.*" for n in range(1, 11)] + ["12.*", "13.*"]
CASES = [f"{n}.*" for n in range(1, 11)] + [f"{g}.{n}" for g in DEFLATE_GROUPS for n in DEFLATE_SUBSET]
AGENT = "Plexicorn"
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}


def pongs_for_latest_pings(received: object) -> bool:
    """Pongs for some of the 10 pings `payload-0`..`payload-9`, in order, the last one answered.

    RFC 6455 §5.5.3: an endpoint that has not yet answered several pings may answer only the most
    recent; Plexicorn answers the latest of the pings waiting when it writes (README, --ws-max-pings),
    so how many pongs go out depends on how the pings were read."""
    if not isinstance(received, list) or not received:
        return False
    numbers = []
    for event in received:
        if not (isinstance(event, list) and len(event) == 2 and event[0] == "pong"
                and isinstance(event[1], str) and event[1].startswith("payload-")):
            return False
        numbers.append(int(event[1].removeprefix("payload-")))
    return numbers == sorted(set(numbers)) and numbers[-1] == 9


# Verdicts Autobahn gives that RFC 6455 allows, each with the exact behaviour accepted; anything
# else in that case still fails.
ALLOWED = {
    # 10 pings at once, then octet by octet: Autobahn wants one pong per ping.
    "2.10": ("pongs for the latest pings, the last one answered (RFC 6455 §5.5.3)", pongs_for_latest_pings),
    "2.11": ("pongs for the latest pings, the last one answered (RFC 6455 §5.5.3)", pongs_for_latest_pings),
}


def run(env: Environment, options: Options) -> list[CaseResult]:
    wstest = find_tool("wstest", "WSTEST")
    if wstest is None:
        raise SuiteSkipped(HINT)
    server = env.h2c_server
    outdir = env.work_dir / "autobahn"
    spec = env.work_dir / "fuzzingclient.json"
    full = os.environ.get("AUTOBAHN_CASES") == "full"
    cases = CASES_FULL if full else CASES
    spec.write_text(json.dumps({
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": f"ws://127.0.0.1:{server.port}/ws"}],
        "cases": cases, "exclude-cases": [], "exclude-agent-cases": {},
    }, indent=2))
    described = "1-10, 12, 13" if full else "1-10; 12.1-12.5, 13.1-13.7 sub-cases 1-8, 11"
    ran = run_case(f"wstest -m fuzzingclient -s {spec.name} (cases {described})",
                   lambda: run_tool([wstest, "-m", "fuzzingclient", "-s", str(spec)],
                                    timeout=1800 if full else 600) and None)
    results = [ran]
    index = outdir / "index.json"
    if not index.exists():
        if ran.status == "passed":
            results.append(CaseResult("Autobahn report", "failed", message=f"no {index} written"))
        return results
    verdicts = json.loads(index.read_text()).get(AGENT, {})
    # Autobahn's own tally, kept as the run's note (`-v` shows it).
    tally: dict[str, int] = {}
    for verdict in verdicts.values():
        tally[verdict.get("behavior")] = tally.get(verdict.get("behavior"), 0) + 1
    if ran.status == "passed":
        ran.message = ", ".join(f"{count} {behavior}" for behavior, count in sorted(tally.items()))
    for case_id in sorted(verdicts, key=lambda c: [int(p) for p in c.split(".")]):
        verdict = verdicts[case_id]
        name = f"case {case_id}"
        if not options.selects(name):
            continue

        def check(verdict: dict = verdict, case_id: str = case_id) -> str:  # type: ignore[type-arg]
            behavior, close = verdict.get("behavior"), verdict.get("behaviorClose")
            if behavior not in PASSING and case_id in ALLOWED and close in PASSING_CLOSE:
                what, allowed = ALLOWED[case_id]
                report = json.loads((outdir / verdict["reportfile"]).read_text())
                if not allowed(report.get("received")):
                    raise CaseFailed(what, f"{behavior}, received {report.get('received')}")
                return f"{behavior} by Autobahn, allowed: {what}"
            if behavior not in PASSING or close not in PASSING_CLOSE:
                raise CaseFailed("OK or NON-STRICT (and a clean close)", f"{behavior} (close: {close})")
            return f"{behavior}, close {close}"
        results.append(run_case(name, check))
    if not verdicts:
        results.append(CaseResult("Autobahn verdicts", "failed", message=f"no results for agent {AGENT}"))
    return results
