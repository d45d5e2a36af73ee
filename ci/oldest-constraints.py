#!/usr/bin/env python3
"""Print pip constraints pinning every runtime dependency to its floor in pyproject.toml.

`"h2>=4.4.1,<5"` becomes `h2==4.4.1`, so CI's oldest-pins run tests exactly the versions the
floors promise work. The floors live only in pyproject.toml; this never duplicates them.
Covers [project].dependencies and the `uvloop` and `metrics` extras (they run in production); test tools are
left at their newest. A runtime dependency without a `>=` floor is an error: it would make the
oldest run meaningless.

    python3 ci/oldest-constraints.py [pyproject.toml] > oldest.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

RUNTIME_EXTRAS = ("uvloop", "metrics")
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    lines = []
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"oldest-constraints: cannot parse {requirement!r}")
        name, _extras, specifiers, marker = match.groups()
        floor = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(floor) != 1:
            raise SystemExit(f"oldest-constraints: {requirement!r} has no single '>=' floor")
        lines.append(f"{name}=={floor[0]}{' ' + marker if marker else ''}")
    return lines


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(floors(path)))
