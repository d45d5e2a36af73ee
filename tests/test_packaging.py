"""The source distribution: LICENSE matching pyproject's license, no tests (they need the whole
repository), every module of the package."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib

from conftest import REPO


def test_sdist_has_the_license_and_package_but_no_tests(tmp_path):
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    [archive] = tmp_path.glob("plexicorn-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        license_text = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/LICENSE"))).read().decode()
    assert not any(name.startswith("tests/") for name in names), sorted(names)
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "server/cli.py", "server/peerflags.py",
            "server/runtime/accesslog.py", "tls/devcert.py"} <= names
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert license_text.startswith("MIT License") and license_text == (REPO / "LICENSE").read_text()
