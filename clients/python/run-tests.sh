#!/usr/bin/env bash
# Tests the Python client against a real MOM cluster: makes (or reuses) a venv in
# clients/python/.venv, pip-installs the package with its test extras from PyPI, runs pytest.
# The MOM binaries come from $MOM_BIN_DIR (default <repo>/target/debug); extra arguments go
# to pytest. Works from any directory; exits with pytest's status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export MOM_BIN_DIR="${MOM_BIN_DIR:-$repo/target/debug}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
# pip rebuilds and reinstalls a local directory every time, so the tests run the current source.
"${pip[@]}" install "$here[test]"

echo "== pytest (MOM_BIN_DIR=$MOM_BIN_DIR)"
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
