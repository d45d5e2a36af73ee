#!/usr/bin/env python3
"""CI's closing lines: one line per JUnit report, then the total as "N passed, N failed".

    python3 ci/summary.py [--failed STEP ...] [--exit STEP=STATUS ...] REPORT.xml ...

A report that is missing counts as one failure (its run crashed before writing it), unless
REPORT.skipped exists: then the run was skipped on purpose and that file says why. Each
--failed STEP is a step that failed with no report of its own (an install), one failure each.
An --exit STEP=STATUS that is not 0 counts as one failure only when no report shows any (a
command that failed for a reason its reports do not tell). Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(path: Path) -> tuple[int, int, int]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {key: sum(int(suite.get(key, 0)) for suite in suites)
             for key in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return total["tests"] - failed - total["skipped"], failed, total["skipped"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--failed", action="append", default=[], metavar="STEP")
    parser.add_argument("--exit", action="append", default=[], metavar="STEP=STATUS")
    parser.add_argument("reports", nargs="*", type=Path)
    args = parser.parse_args()
    passed = failed = 0
    for step in args.failed:
        print(f"{step}: failed")
        failed += 1
    for report in args.reports:
        name = report.stem
        skipped = report.with_suffix(".skipped")
        if not report.exists():
            if skipped.exists():
                print(f"{name}: {skipped.read_text().strip()}")
            else:
                print(f"{name}: failed: no report {report}")
                failed += 1
            continue
        try:
            p, f, s = counts(report)
        except (ET.ParseError, ValueError) as exc:
            print(f"{name}: failed: unreadable report {report} ({exc})")
            failed += 1
            continue
        print(f"{name}: {p} passed, {f} failed, {s} skipped")
        passed += p
        failed += f
    if failed == 0:
        for step, status in (entry.rsplit("=", 1) for entry in args.exit):
            if status != "0":
                print(f"{step}: failed: exit status {status} (no report shows a failure)")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
