"""`python -m interop`: run the interoperability suites against a real Plexicorn process.

Prints one line per suite (`name: N passed, M failed[, skipped: hint]`), writes a JUnit XML
report and exits 1 when any case failed (2 when the servers could not start).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from .runner import (
    FAILED,
    CaseResult,
    Environment,
    Options,
    SuiteResult,
    SuiteSkipped,
    write_junit,
)
from .servers import REPO, ServerError
from .suites import SUITES

DEFAULT_REPORT = REPO / "interop" / "report.xml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m interop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="append", choices=list(SUITES), metavar="NAME",
                        help=f"run only this suite (repeatable): {', '.join(SUITES)}")
    parser.add_argument("-k", dest="select", action="append", default=[], metavar="TEXT",
                        help="run only the cases whose name contains TEXT (repeatable)")
    parser.add_argument("--junit", type=Path, default=DEFAULT_REPORT, metavar="PATH",
                        help=f"where to write the JUnit XML report (default {DEFAULT_REPORT.relative_to(REPO)})")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs, tool output)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case, not only failures")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def print_failures(result: SuiteResult, verbose: bool) -> None:
    for case in result.cases:
        if case.status == FAILED:
            print(f"    FAIL {case.name}\n         {case.message}")
        elif verbose:
            note = f": {case.message}" if case.message else ""
            print(f"    {case.status:<7} {case.name} ({case.seconds * 1000:.0f} ms){note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(select=args.select, verbose=args.verbose)
    # SIGTERM (a CI timeout) takes the Ctrl-C path, so the servers are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    names = args.suite or list(SUITES)
    results: list[SuiteResult] = []
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="plexicorn-interop-"))
    env = Environment(work, verbose=args.verbose)
    status = 0
    try:
        for name in names:
            result = SuiteResult(name)
            start = time.monotonic()
            try:
                result.cases = SUITES[name].run(env, options)
            except SuiteSkipped as exc:
                result.skipped = str(exc)
            except ServerError as exc:
                print(f"{name}: could not start Plexicorn:\n{exc}", file=sys.stderr)
                status = 2
                break
            except Exception:  # noqa: BLE001  # a bug in a suite fails that suite, not the run
                result.cases.append(CaseResult(f"{name} suite", FAILED, message="the suite itself raised",
                                               details=traceback.format_exc()))
            result.seconds = time.monotonic() - start
            results.append(result)
            print(result.summary(), flush=True)
            print_failures(result, args.verbose)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers", file=sys.stderr)
        status = 130
    finally:
        server = SuiteResult("server")
        start = time.monotonic()
        server.cases = env.stop_servers()
        server.seconds = time.monotonic() - start
        if server.cases:
            results.append(server)
            print(server.summary())
            print_failures(server, args.verbose)
            for case in server.cases:
                if case.status == FAILED and case.details:
                    print(case.details)
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    write_junit(results, args.junit)
    failed = sum(r.count(FAILED) for r in results)
    print(f"{len(results)} suites in {time.monotonic() - started:.1f} s, {failed} failed case(s); "
          f"JUnit report: {args.junit}")
    if status:
        return status
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
