"""The layout keeps its promises (docs/design.md): layers import downwards only, no module imports
another that imports it back (not even under TYPE_CHECKING), and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# Where each import package lives on disk (pyproject.toml's package-dir).
PACKAGES = {"plexicorn": REPO / "server", "plexicorn.tls": REPO / "tls"}
MAX_LINES = 400
# What a longer module must say at its top, with the reason.
LONG_MODULE_MARKER = "longer than 400 lines"


def modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every plexicorn module `name` imports, at any depth of its code (TYPE_CHECKING blocks and
    function bodies included)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # The deepest known module the import names (a package or one of its modules).
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


def test_no_module_imports_one_that_imports_it_back():
    found = modules()
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    # Packages' __init__ re-exports are allowed to point down into their own modules only.
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_modules_stay_under_400_lines_or_say_why():
    long = [f"{path.relative_to(REPO)} ({length} lines)" for path in modules().values()
            if (length := len(path.read_text().splitlines())) > MAX_LINES
            and LONG_MODULE_MARKER not in (ast.get_docstring(ast.parse(path.read_text())) or "")]
    assert long == []


def test_each_protocol_has_its_own_subpackage():
    server = REPO / "server"
    for package in ("runtime", "http1", "http2", "asgi", "process", "edge", "observe"):
        assert (server / package / "__init__.py").is_file()
    # Nothing protocol-specific is left at the top: only process-level modules.
    top = {path.stem for path in server.glob("*.py")}
    assert top <= {"__init__", "__main__", "cli", "config", "envfile", "errors", "importer", "logs", "peerflags",
                   "server"}
