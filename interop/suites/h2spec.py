"""h2spec (https://github.com/summerwind/h2spec): every section (generic, http2, hpack) over TLS
(`-t -k`) and over cleartext h2c, each test case reported as a case here.

The cleartext run goes to a server started with servers.HTTP2_ONLY_SERVER_FLAGS: on a port that also
serves HTTP/1.1, h2spec's "invalid connection preface" case is answered as an HTTP/1.1 request
(a 400, which is right there), so that case can only be judged on an HTTP/2-only port.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    find_tool,
    run_case,
)
from ..servers import HTTP2_ONLY_SERVER_FLAGS, PlexicornProcess, ServerError
from ._tools import run_tool

NAME = "h2spec"
HINT = "download from https://github.com/summerwind/h2spec/releases and put it on PATH or in H2SPEC"
SPECS = ("generic", "http2", "hpack")
CASE_TIMEOUT = 2  # h2spec's -o: seconds a case may wait for the server


def run(env: Environment, options: Options) -> list[CaseResult]:
    h2spec = find_tool("h2spec", "H2SPEC")
    if h2spec is None:
        raise SuiteSkipped(HINT)
    results: list[CaseResult] = []
    runs: list[tuple[str, PlexicornProcess | None, list[str]]] = [("TLS", env.tls_server, ["-t", "-k"])]
    try:
        runs.append(("h2c", env.h2c_only_server, []))
    except ServerError as exc:  # e.g. the option is unknown: say so as a failure, still run TLS
        results.append(CaseResult(f"h2c: start a server with {' '.join(HTTP2_ONLY_SERVER_FLAGS)}", "failed",
                                  message=str(exc).splitlines()[0], details=str(exc)))
    for label, server, flags in runs:
        assert server is not None
        report = env.work_dir / f"h2spec-{label}.xml"
        cmd = [h2spec, *SPECS, "-h", "127.0.0.1", "-p", str(server.port), "-o", str(CASE_TIMEOUT),
               "-j", str(report), *flags]
        ran = run_case(f"{label}: h2spec {' '.join(SPECS)} {' '.join(flags)}".rstrip() + " runs",
                       functools.partial(_run_h2spec, cmd, report))
        results.append(ran)
        if report.exists():
            results += [case for case in _parse_report(report, label) if options.selects(case.name)]
    return results


def _run_h2spec(cmd: list[str], report: Path) -> str:
    try:
        done = run_tool(cmd, timeout=300)
        summary = done.stdout
    except CaseFailed as exc:
        # h2spec exits 1 when a case failed; that is reported per case from its JUnit file.
        if not report.exists():
            raise
        summary = str(exc).encode()
    if not report.exists():
        raise CaseFailed("h2spec's JUnit report", "no report written")
    lines = summary.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


def _parse_report(report: Path, label: str) -> list[CaseResult]:
    results = []
    for suite in ET.parse(report).getroot().iter("testsuite"):
        section = suite.get("package") or suite.get("name") or ""
        for case in suite.iter("testcase"):
            name = f"{label}: {section} {case.get('classname', '')}"
            seconds = float(case.get("time") or 0)
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            if failure is not None:
                text = " ".join((failure.text or "").split())
                results.append(CaseResult(name, "failed", seconds, text or "failed", failure.text or ""))
            elif case.find("skipped") is not None:
                results.append(CaseResult(name, "skipped", seconds, "skipped by h2spec"))
            else:
                results.append(CaseResult(name, "passed", seconds))
    return results
