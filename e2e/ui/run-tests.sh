#!/usr/bin/env bash
# Tests the gateway's web dashboard in a real headless Chromium against a real MOM cluster
# (ZooKeeper and every service as processes, started by clients/python/tests/mom_cluster.py).
# Installs Chromium and chromedriver from Debian's packages when missing
# (scripts/install-deps.sh), makes (or reuses) a venv in e2e/ui/.venv with pytest and selenium
# from PyPI, and runs pytest. The MOM binaries come from $MOM_BIN_DIR (default
# <repo>/target/debug: build them first, e.g. `cargo build -p mom-gateway`); extra arguments go
# to pytest. Works from any directory; exits with pytest's status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export MOM_BIN_DIR="${MOM_BIN_DIR:-$repo/target/debug}"
venv="$here/.venv"

bash "$repo/scripts/install-deps.sh"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install -r "$here/requirements.txt"

echo "== pytest: dashboard in headless Chromium (MOM_BIN_DIR=$MOM_BIN_DIR)"
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
