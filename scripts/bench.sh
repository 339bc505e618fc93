#!/usr/bin/env bash
# Peer benchmark (not a test): MOM (3 nodes, replication factor 3, min_insync_replicas 2) against
# RabbitMQ 3.10 (3-node cluster, one quorum queue) on this machine, driven by the same load
# generator in one run (e2e/src/bin/mom-bench.rs). Installs what is missing, builds in release,
# starts RabbitMQ (scripts/rabbitmq-cluster.sh), runs the bench and always stops RabbitMQ again.
#
#   bash scripts/bench.sh                 # 3 runs, medians
#   BENCH_RUNS=1 bash scripts/bench.sh    # quicker; see mom-bench.rs for the other settings
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

bash scripts/install-deps.sh
echo "== building (release)"
nice -n 19 cargo build --release -p mom-e2e --bin mom-bench
nice -n 19 cargo build --release --workspace --bins

trap 'bash scripts/rabbitmq-cluster.sh stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "== starting RabbitMQ"
rabbit_env=$(bash scripts/rabbitmq-cluster.sh start)
eval "$rabbit_env"

echo "== benchmarking"
status=0
target/release/mom-bench || status=$?
echo "== whole bench (install, build, clusters, runs): $((SECONDS - started)) s"
exit $status
