#!/usr/bin/env bash
# Benchmarks (not tests): publish/consume throughput and latency on a real local cluster,
# replicated against unreplicated in the same run. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --workspace --bins
target/release/mom-bench
