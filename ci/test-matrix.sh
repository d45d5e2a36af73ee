#!/usr/bin/env bash
# The pytest suite on several Pythons and on the oldest allowed dependencies (`make test-matrix`).
#
#   ci/test-matrix.sh [RUN ...]     RUN: py3.11 py3.12 py3.13 py3.X-oldest py3.11-httptools py3.11-python
#                                   (default: the first four)
#
# Each run gets its own venv under .ci-cache/ with the project installed from one wheel built from
# the working tree (not editable: a module missing from pyproject's package list fails here) plus
# the test and uvloop extras. `py3.X-oldest` (e.g. py3.12-oldest) pins every runtime dependency to its floor in
# pyproject.toml (ci/oldest-constraints.py). `py3.11-httptools` adds the httptools extra and runs
# only the HTTP/1.1 test files (ci/http1-tests.txt) with PLEXICORN_TEST_HTTP=httptools, so their
# servers parse with llhttp instead of h11 (--http1-parser); `py3.11-python` runs the same files on an install
# without the extra, with PLEXICORN_TEST_HTTP=python (our pure-Python parser, what `auto` picks there).
# Each run spreads its test files over MATRIX_WORKERS pytest-xdist workers (default 2: about 1.8
# times faster on a 2-vCPU machine, as the tests mostly wait on servers and clients; 0: one
# process, as `make test` runs them). A file's tests stay in one worker (--dist loadfile), so a
# module's shared server starts once and its tests keep their order. A Python that is not installed is reported as skipped;
# nothing is downloaded. Interop is not run here: `make test` runs it once.
# Exit status: non-zero if any run failed. The last line is "matrix: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${CI_CACHE:-.ci-cache}
REPORTS=$CACHE/reports
mkdir -p "$REPORTS"
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(py3.11 py3.12 py3.13 py3.12-oldest)

# The newest installed interpreter of version $1 (e.g. 3.12): PATH first, then pyenv's versions.
# Each candidate is run, because a pyenv shim exists for versions that are not activated.
find_python() {
    local want=$1 candidate
    for candidate in $(command -v "python$want" python3 2>/dev/null) \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/python"$want" \
              /root/.pyenv/versions/"$want".*/bin/python"$want" 2>/dev/null | sort -Vr); do
        if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" \
            2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# One wheel for every run, built from a copy of what the package needs, so that a stale build/
# in the working tree cannot add modules that no longer exist.
build_wheel() {
    local python src
    python=$(find_python 3.11) || python=$(command -v python3)
    src=$(mktemp -d)
    cp -r pyproject.toml README.md server tls "$src"/
    rm -rf "$CACHE/dist" "$CACHE/wheel-venv"
    "$python" -m venv "$CACHE/wheel-venv" &&
        "$CACHE/wheel-venv/bin/python" -m pip wheel --quiet --no-deps -w "$CACHE/dist" "$src"
    local status=$?
    rm -rf "$src"
    return $status
}

summary=()
total_passed=0
total_failed=0
status=0

# run NAME PYTHON [CONSTRAINTS]
run() {
    local name=$1 python=$2 constraints=${3:-} venv=$CACHE/venv-$1 start=$SECONDS wheel
    local extras=test,uvloop parser=h11 tests=()
    if [ "$name" = py3.11-httptools ] || [ "$name" = py3.11-python ]; then
        parser=${name#py3.11-}
        [ "$parser" = httptools ] && extras=test,uvloop,httptools
        mapfile -t tests < <(grep -v '^#' ci/http1-tests.txt)
    fi
    wheel=$(ls "$CACHE"/dist/plexicorn-*.whl)
    echo "=== $name: $("$python" -V 2>&1) ($python)${constraints:+, constraints $constraints}"
    rm -rf "$venv"
    if ! { "$python" -m venv "$venv" &&
           "$venv/bin/python" -m pip install --quiet --upgrade pip &&
           "$venv/bin/python" -m pip install --quiet ${constraints:+-c "$constraints"} "$wheel[$extras]"; }; then
        echo "$name: install failed"
        summary+=("$name: install failed [$((SECONDS - start)) s]")
        total_failed=$((total_failed + 1))
        status=1
        return
    fi
    local versions
    versions=$("$venv/bin/python" -c "
from importlib.metadata import version
print(', '.join(f'{n} {version(n)}' for n in ('h2', 'h11', 'wsproto', 'hpack', 'cryptography', 'uvloop')))")
    echo "$name: $versions"
    # -p no:cacheprovider: the runs share the working tree; none should steer another's order.
    PLEXICORN_TEST_HTTP=$parser "$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$REPORTS/$name.xml" \
        -n "${MATRIX_WORKERS:-2}" --dist loadfile ${PYTEST_ARGS:-} "${tests[@]}"
    local rc=$?
    local counts
    # "passed failed skipped" from the JUnit report; a run that wrote none counts as one failure.
    counts=$("$venv/bin/python" - "$REPORTS/$name.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 1, 0)
    raise SystemExit
suites = [root] if root.tag == "testsuite" else list(root)
n = lambda key: sum(int(s.get(key, 0)) for s in suites)
failed = n("failures") + n("errors")
print(n("tests") - failed - n("skipped"), failed, n("skipped"))
EOF
)
    read -r passed failed skipped <<<"$counts"
    # pytest failing with nothing reported failed (collection error, crash) still fails the run.
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    [ "$rc" -eq 0 ] || status=1
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summary+=("$name ($versions): $passed passed, $failed failed, $skipped skipped [$((SECONDS - start)) s]")
}

if ! build_wheel; then
    echo "matrix: building the wheel failed"
    echo "matrix: 0 passed, 1 failed"
    exit 1
fi
for name in "${runs[@]}"; do
    case $name in
        py3.*-oldest) version=${name#py} version=${version%-oldest} constraints=$CACHE/oldest-constraints.txt ;;
        py3.11-httptools|py3.11-python) version=3.11 constraints= ;;
        py3.*) version=${name#py} constraints= ;;
        *) echo "matrix: unknown run $name (py3.11 py3.12 py3.13 py3.X-oldest py3.11-httptools py3.11-python)"; exit 2 ;;
    esac
    rm -f "$REPORTS/$name.xml" "$REPORTS/$name.skipped"
    if ! python=$(find_python "$version"); then
        summary+=("$name: skipped: Python $version not found (PATH, ${PYENV_ROOT:-$HOME/.pyenv}/versions)")
        echo "${summary[-1]}"
        # For ci/summary.py: this run is absent on purpose, not crashed.
        echo "${summary[-1]#*: }" >"$REPORTS/$name.skipped"
        continue
    fi
    if [ -n "$constraints" ]; then
        "$python" ci/oldest-constraints.py pyproject.toml >"$constraints" || { status=1; continue; }
    fi
    run "$name" "$python" "$constraints"
done

echo
printf '%s\n' "${summary[@]}"
echo "matrix: $total_passed passed, $total_failed failed"
exit $status
