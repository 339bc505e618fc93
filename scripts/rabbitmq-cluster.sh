#!/usr/bin/env bash
# A throw-away 3-node RabbitMQ 3.10 cluster on this host, for the peer benchmark (scripts/bench.sh).
#
#   bash scripts/rabbitmq-cluster.sh start   # install if missing, start n1..n3, join them, print env
#   bash scripts/rabbitmq-cluster.sh env     # `export BENCH_RABBITMQ_URL=... BENCH_RABBITMQ_PIDS=...`
#   bash scripts/rabbitmq-cluster.sh stop    # stop every node this script started (and its epmd)
#
# State and logs live in .bench/rabbitmq/ (gitignored; wiped by the next start). The nodes run as
# the calling user with the CLI called directly (/usr/lib/rabbitmq/bin), a private HOME holding
# the Erlang cookie, and per-node settings passed only through the environment. AMQP ports are
# 5672-5674 (distribution 25672-25674) when all are free, else the next free block of three.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=3
STATE="$PWD/.bench/rabbitmq"
SBIN=/usr/lib/rabbitmq/bin
CTL="$SBIN/rabbitmqctl"
HOST="$(hostname -s)"
STARTUP_SECS=${RABBITMQ_STARTUP_SECS:-240}
# Every node and every CLI call share this HOME, so they share the cookie.
export HOME="$STATE/home"

log() { echo "== rabbitmq: $*" >&2; }

node_name() { echo "n$1@$HOST"; }

ctl() { # ctl <node index> <command...>: rabbitmqctl against one node, bounded in time
  local n=$1
  shift
  timeout 120 "$CTL" -n "$(node_name "$n")" "$@"
}

port_free() { # nothing listens on 127.0.0.1/0.0.0.0:$1
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

install() {
  if [ ! -x "$SBIN/rabbitmq-server" ]; then
    log "installing Debian's rabbitmq-server"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  # The package may start a system node (user rabbitmq); it would hold the default ports.
  if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
    log "stopping the system node the package started"
    systemctl stop rabbitmq-server 2>/dev/null || service rabbitmq-server stop 2>/dev/null || true
    systemctl disable rabbitmq-server >/dev/null 2>&1 || true
  fi
}

pick_ports() { # sets AMQP_BASE and DIST_BASE to the first block of 3 free ports
  local amqp dist i ok
  for amqp in 5672 5772 5872 5972 6072 6172; do
    dist=$((amqp + 20000))
    ok=1
    for ((i = 0; i < NODES; i++)); do
      if ! port_free $((amqp + i)) || ! port_free $((dist + i)); then ok=0; fi
    done
    if [ $ok -eq 1 ]; then
      AMQP_BASE=$amqp
      DIST_BASE=$dist
      return
    fi
  done
  echo "no free block of AMQP/distribution ports found" >&2
  exit 1
}

start_node() { # start_node <index>: runs rabbitmq-server in the background, in its own session
  local n=$1 dir="$STATE/n$1"
  mkdir -p "$dir/mnesia" "$dir/log"
  printf 'listeners.tcp.default = %s\nloopback_users.guest = false\n' \
    $((AMQP_BASE + n - 1)) >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  env RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT=$((AMQP_BASE + n - 1)) \
    RABBITMQ_DIST_PORT=$((DIST_BASE + n - 1)) \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_PID_FILE="$dir/pid" \
    setsid "$SBIN/rabbitmq-server" </dev/null >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/script.pid"
}

await_node() { # await_node <index>: retries await_startup (it fails at once before epmd knows the node)
  local n=$1 deadline=$((SECONDS + STARTUP_SECS))
  until ctl "$n" await_startup --timeout 30 >/dev/null 2>&1; do
    if ! alive "$(cat "$STATE/n$n/script.pid" 2>/dev/null)"; then
      echo "node $(node_name "$n") exited during startup; its output:" >&2
      tail -n 40 "$STATE/n$n/stdout.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "node $(node_name "$n") not up after ${STARTUP_SECS}s" >&2
      tail -n 40 "$STATE/n$n/stdout.log" >&2 || true
      exit 1
    fi
    sleep 2
  done
}

print_env() {
  [ -f "$STATE/ports" ] || { echo "no cluster state in $STATE: run start first" >&2; exit 1; }
  # shellcheck disable=SC1091
  . "$STATE/ports"
  local pids=() n
  for ((n = 1; n <= NODES; n++)); do
    pids+=("$(cat "$STATE/n$n/pid")")
  done
  echo "export BENCH_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$AMQP_BASE/%2f"
  echo "export BENCH_RABBITMQ_PIDS=$(IFS=,; echo "${pids[*]}")"
}

start() {
  install
  stop_nodes 2>/dev/null || true
  rm -rf "$STATE"
  mkdir -p "$HOME"
  # A random cookie, readable by the owner only (Erlang refuses any other mode).
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' >"$HOME/.erlang.cookie"
  chmod 400 "$HOME/.erlang.cookie"
  if ! pgrep -x epmd >/dev/null 2>&1; then
    epmd -daemon
    sleep 0.5
    pgrep -x epmd >"$STATE/epmd.ours" || true
  fi
  pick_ports
  printf 'AMQP_BASE=%s\nDIST_BASE=%s\n' "$AMQP_BASE" "$DIST_BASE" >"$STATE/ports"
  log "starting $NODES nodes on AMQP ports $AMQP_BASE-$((AMQP_BASE + NODES - 1)) (state in $STATE)"
  local n started=$SECONDS
  for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
  for ((n = 1; n <= NODES; n++)); do await_node "$n"; done
  log "nodes up after $((SECONDS - started))s; clustering"
  for ((n = 2; n <= NODES; n++)); do
    for step in stop_app "join_cluster $(node_name 1)" start_app; do
      # The CLI's chatter (e.g. 3.10's harmless "Failed to create a tracked connection table"
      # while a node rejoins) goes to a log, shown only if the step fails.
      # shellcheck disable=SC2086
      if ! ctl "$n" $step >>"$STATE/n$n/cli.log" 2>&1; then
        echo "rabbitmqctl -n $(node_name "$n") $step failed:" >&2
        tail -n 20 "$STATE/n$n/cli.log" >&2
        exit 1
      fi
    done
  done
  ctl 1 await_online_nodes "$NODES" --timeout 60 >/dev/null 2>&1 || true
  local running
  running=$(ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null || echo '?')
  log "cluster of $running running nodes ready after $((SECONDS - started))s"
  [ "$running" = "$NODES" ] || { echo "expected $NODES running nodes, got $running" >&2; exit 1; }
  print_env
}

stop_nodes() {
  [ -d "$STATE" ] || return 0
  local n pid
  for ((n = 1; n <= NODES; n++)); do
    pid=$(cat "$STATE/n$n/pid" 2>/dev/null || true)
    alive "$pid" && ctl "$n" stop >/dev/null 2>&1 &
  done
  wait
  for ((n = 1; n <= NODES; n++)); do
    for pid in $(cat "$STATE/n$n/pid" "$STATE/n$n/script.pid" 2>/dev/null || true); do
      if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.2; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  done
  if [ -f "$STATE/epmd.ours" ]; then
    # epmd refuses to die while names are still registered: nodes just stopped may linger.
    for _ in $(seq 20); do
      pgrep -x epmd >/dev/null 2>&1 || break
      epmd -kill >/dev/null 2>&1 || true
      sleep 0.5
    done
    for pid in $(cat "$STATE/epmd.ours"); do
      alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    rm -f "$STATE/epmd.ours"
  fi
}

case "${1:-}" in
  start) start ;;
  stop)
    stop_nodes
    log "stopped"
    ;;
  env) print_env ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
