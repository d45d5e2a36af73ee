"""Frame-level conformance in Python (always runs): interop/conformance/ against both servers."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..conformance import CASES, Target
from ..runner import CaseResult, Environment, Options, run_case
from ..servers import client_context

NAME = "conformance"


def run(env: Environment, options: Options) -> list[CaseResult]:
    # Servers are started when a selected case first needs them (h2c-only serves one case).
    targets: dict[str, Callable[[], Target]] = {
        "h2c": lambda: Target("h2c", env.h2c_server.port, None),
        "tls": lambda: Target("tls", env.tls_server.port, client_context(env.tls_material)),
        "h2c-only": lambda: Target("h2c-only", env.h2c_only_server.port, None),
    }
    results = []
    for label, make_target in targets.items():
        chosen = [case for case in CASES
                  if label in case.transports and options.selects(f"[{label}] {case.name}")]
        if not chosen:
            continue
        target = make_target()
        results += [run_case(f"[{label}] {case.name}", functools.partial(case.run, target)) for case in chosen]
    return results
