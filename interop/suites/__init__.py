"""The suites, in the order they run. Each module has NAME and run(env, options) -> list[CaseResult];
a suite whose tool is missing raises SuiteSkipped with the install hint."""

from __future__ import annotations

from types import ModuleType

from . import autobahn, browser, conformance, curl, h2load, h2spec, nghttp

SUITES: dict[str, ModuleType] = {module.NAME: module for module in
                                 (conformance, curl, nghttp, h2load, browser, h2spec, autobahn)}
