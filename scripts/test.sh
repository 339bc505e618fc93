#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests against real
# ZooKeeper and real service processes. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== building service binaries (the end-to-end tests start them as processes)"
cargo build --workspace --bins --locked
echo "== cargo test"
log=$(mktemp)
# The nemesis tests (e2e/tests/nemesis.rs) append one line of figures per fault here.
export MOM_NEMESIS_REPORT=$(mktemp)
trap 'rm -f "$log" "$MOM_NEMESIS_REPORT"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "== availability and latency per nemesis (README's failure model quotes these)"
cat "$MOM_NEMESIS_REPORT"
echo "== Python client tests (pytest against a real cluster of the binaries just built)"
bash clients/python/run-tests.sh 2>&1 | tee -a "$log"
echo "== example application (examples/news against a real cluster)"
bash examples/news/run-tests.sh 2>&1 | tee -a "$log"
echo "== dashboard in headless Chromium (e2e/ui against a real cluster)"
bash e2e/ui/run-tests.sh 2>&1 | tee -a "$log"
echo "== local-cluster.sh (one cluster at a time, restarts of crashed services)"
if [ -e .local-cluster/lock ] && ! flock -n .local-cluster/lock true; then
  echo "skipped: a local cluster is running from this checkout (it uses the same ports)"
else
  MOM_SKIP_BUILD=1 bash scripts/test-local-cluster.sh
fi
# One closing line for the whole run (the last per-crate line is often an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 }
     /^=+ .*[0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) passed += $i; if ($(i+1) ~ /^failed/) failed += $i } }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
