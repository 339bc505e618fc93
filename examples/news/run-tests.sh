#!/usr/bin/env bash
# Runs the news example's end-to-end test (test_news.py) against a real MOM cluster started
# from $MOM_BIN_DIR (default <repo>/target/debug): makes (or reuses) a venv in
# examples/news/.venv with pytest and the Python client (editable, from clients/python),
# then runs pytest. Extra arguments go to pytest; exits with its status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export MOM_BIN_DIR="${MOM_BIN_DIR:-$repo/target/debug}"
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the client's source tree
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install \
    -e "$repo/clients/python" "pytest>=7" "pytest-timeout>=2.1"

echo "== pytest examples/news (MOM_BIN_DIR=$MOM_BIN_DIR)"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra "$@" test_news.py
