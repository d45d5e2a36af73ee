"""Suite registry, results, the shared servers, and the JUnit XML report."""

from __future__ import annotations

import os
import shutil
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .servers import (
    HTTP2_ONLY_SERVER_FLAGS,
    PlexicornProcess,
    TLSMaterial,
    make_tls_material,
)

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


class CaseFailed(AssertionError):
    """A check did not hold: what was expected and what happened instead."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; got {actual}")
        self.expected = expected
        self.actual = actual


class SuiteSkipped(Exception):
    """The suite cannot run here (its tool is missing); the message says how to install it."""


@dataclass
class Options:
    select: list[str] = field(default_factory=list)  # only cases whose name contains one of these
    verbose: bool = False

    def selects(self, name: str) -> bool:
        return not self.select or any(text in name for text in self.select)


@dataclass
class CaseResult:
    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    details: str = ""


@dataclass
class SuiteResult:
    name: str
    cases: list[CaseResult] = field(default_factory=list)
    skipped: str | None = None  # the install hint when the whole suite could not run
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for case in self.cases if case.status == status)

    @property
    def failed(self) -> bool:
        return self.count(FAILED) > 0

    def summary(self) -> str:
        line = f"{self.name}: {self.count(PASSED)} passed, {self.count(FAILED)} failed"
        if self.skipped is not None:
            line += f", skipped: {self.skipped}"
        elif self.count(SKIPPED):
            line += f" ({self.count(SKIPPED)} cases skipped)"
        return line + f" [{self.seconds:.1f} s]"


def run_case(name: str, function: Callable[[], object], *, details: str = "") -> CaseResult:
    """Run one check; an AssertionError is a failure, any other exception too (with its traceback).
    A string the check returns is kept as the passing case's note."""
    start = time.monotonic()
    try:
        note = function()
    except SuiteSkipped as exc:
        return CaseResult(name, SKIPPED, time.monotonic() - start, str(exc))
    except AssertionError as exc:
        return CaseResult(name, FAILED, time.monotonic() - start, str(exc) or "assertion failed", details)
    except Exception as exc:  # noqa: BLE001  # an error is a failure too, with where it came from
        return CaseResult(name, FAILED, time.monotonic() - start, f"{type(exc).__name__}: {exc}",
                          details + traceback.format_exc())
    # A passing check may return a note worth keeping (a measured rate, a tool's version).
    return CaseResult(name, PASSED, time.monotonic() - start, note if isinstance(note, str) else "")


def find_tool(name: str, env_var: str | None = None) -> str | None:
    """The tool's path: `$ENV_VAR` when set (and executable), else a PATH lookup."""
    if env_var and os.environ.get(env_var):
        candidate = os.environ[env_var]
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(name)


class Environment:
    """What suites share: a work directory, the throw-away CA and the servers (started on first use)."""

    def __init__(self, work_dir: Path, verbose: bool = False) -> None:
        self.work_dir = work_dir
        self.verbose = verbose
        self._tls: TLSMaterial | None = None
        self._servers: dict[str, PlexicornProcess] = {}

    @property
    def tls_material(self) -> TLSMaterial:
        if self._tls is None:
            self._tls = make_tls_material(self.work_dir)
        return self._tls

    def server(self, name: str, *, tls: bool, extra_args: tuple[str, ...] = ()) -> PlexicornProcess:
        """The server called `name`, started on first use and kept for the other suites."""
        server = self._servers.get(name)
        if server is None:
            server = PlexicornProcess(name, self.work_dir, self.tls_material if tls else None, extra_args)
            server.start()
            self._servers[name] = server
        return server

    @property
    def tls_server(self) -> PlexicornProcess:
        return self.server("tls", tls=True)

    @property
    def h2c_server(self) -> PlexicornProcess:
        return self.server("h2c", tls=False)

    @property
    def h2c_only_server(self) -> PlexicornProcess:
        """Cleartext, HTTP/2 only (HTTP2_ONLY_SERVER_FLAGS): where an invalid preface can be judged."""
        return self.server("h2c-http2-only", tls=False, extra_args=HTTP2_ONLY_SERVER_FLAGS)

    def servers(self) -> Iterator[PlexicornProcess]:
        return iter(list(self._servers.values()))

    def stop_servers(self) -> list[CaseResult]:
        """Stop every server; one case each: it exits 0 on SIGTERM and logged no traceback."""
        results = []
        for server in self._servers.values():
            def check(server: PlexicornProcess = server) -> None:
                crashed_before = not server.alive()
                status = server.stop()
                # A flood budget tripped by a real client (curl, nghttp, h2load, Chromium) or a
                # conformance case is a budget too tight for legitimate use.
                problems = [line for line in server.log_lines
                            if "Traceback" in line or " ERROR " in line or "CRITICAL" in line
                            or "ENHANCE_YOUR_CALM" in line]
                if crashed_before:
                    raise CaseFailed("the server running until the end", f"it had exited (status {status})")
                if status != 0:
                    raise CaseFailed("exit status 0 after SIGTERM", f"status {status}")
                if problems:
                    raise CaseFailed("no error or traceback in the server log",
                                     f"{len(problems)} line(s), first: {problems[0].strip()}")
            result = run_case(f"{server.name} server ({' '.join(server.extra_args) or 'defaults'}): "
                              "clean log, exit 0 on SIGTERM", check)
            if result.status == FAILED:
                result.details += f"\nlog: {server.log_path}\n" + server.log_tail(60)
            results.append(result)
        self._servers.clear()
        return results


def write_junit(results: list[SuiteResult], path: Path) -> None:
    root = ET.Element("testsuites", name="plexicorn-interop")
    total = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in results:
        cases = suite.cases or []
        element = ET.SubElement(root, "testsuite", name=suite.name, time=f"{suite.seconds:.3f}")
        tests = len(cases) + (1 if suite.skipped is not None else 0)
        failures = suite.count(FAILED)
        skipped = suite.count(SKIPPED) + (1 if suite.skipped is not None else 0)
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("skipped", str(skipped))
        if suite.skipped is not None:
            case = ET.SubElement(element, "testcase", classname=f"interop.{suite.name}", name=suite.name, time="0")
            ET.SubElement(case, "skipped", message=suite.skipped)
        for result in cases:
            case = ET.SubElement(element, "testcase", classname=f"interop.{suite.name}", name=result.name,
                                 time=f"{result.seconds:.3f}")
            if result.status == FAILED:
                failure = ET.SubElement(case, "failure", message=result.message)
                failure.text = (result.message + "\n" + result.details).strip()
            elif result.status == SKIPPED:
                ET.SubElement(case, "skipped", message=result.message)
        total["tests"] += tests
        total["failures"] += failures
        total["skipped"] += skipped
    for key, value in total.items():
        root.set(key, str(value))
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
