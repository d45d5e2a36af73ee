#!/usr/bin/env bash
# Install Autobahn|Testsuite's wstest (Python 2 code) into a virtualenv, for the interop suite
# `autobahn` (`make autobahn`; .ci/run calls it). Prints the wstest path on its last line.
#
# Needs a Python 2.7 interpreter (PATH, $PYTHON2, or pyenv's versions/2.7.*); without one it says
# "skipped: ..." and exits 0, so the interop suite reports autobahn as skipped with its hint.
# Idempotent: an existing venv installed from the same constraints is kept as is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AUTOBAHN_VENV:-.ci-cache/autobahn}
CONSTRAINTS=ci/autobahn-constraints.txt
# The newest virtualenv that still runs on Python 2.7 (20.16 requires Python 3.6+).
VIRTUALENV=virtualenv==20.15.1

find_python2() {
    local candidate
    for candidate in ${PYTHON2:-} $(command -v python2.7 python2 2>/dev/null) \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7.*/bin/python2.7 \
              /root/.pyenv/versions/2.7.*/bin/python2.7 2>/dev/null | sort -Vr); do
        # Run each: pyenv shims exist for versions that are not activated.
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

stamp=$(sha256sum "$CONSTRAINTS" | cut -c1-16)
if [ -x "$VENV/bin/wstest" ] && [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$stamp" ]; then
    echo "autobahn: $VENV already installed"
    echo "$PWD/$VENV/bin/wstest"
    exit 0
fi
if ! python2=$(find_python2); then
    echo "autobahn: skipped: Python 2.7 not found (PATH, \$PYTHON2, ${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.*)"
    exit 0
fi
echo "autobahn: installing Autobahn|Testsuite with $python2 into $VENV"
rm -rf "$VENV"
mkdir -p "$VENV"
# virtualenv goes into a directory of its own, not into the interpreter's site-packages.
"$python2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$VENV/.virtualenv" "$VIRTUALENV" 2> >(grep -v -e DEPRECATION -e "is ignored" >&2)
PYTHONPATH=$VENV/.virtualenv "$python2" -m virtualenv --quiet --no-download "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    -c "$CONSTRAINTS" autobahntestsuite==25.10.1 2> >(grep -v -e DEPRECATION -e "is ignored" >&2)
"$VENV/bin/wstest" --autobahnversion >/dev/null
echo "$stamp" >"$VENV/.installed"
echo "$PWD/$VENV/bin/wstest"
