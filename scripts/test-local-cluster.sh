#!/usr/bin/env bash
# End-to-end check of scripts/local-cluster.sh, with the binaries already in target/debug
# (MOM_SKIP_BUILD=1 unless set otherwise):
#   1. it refuses to start while another program holds one of its ports, naming the port;
#   2. it comes up ("MOM is up", /health reports 3 nodes);
#   3. a second start is refused (exit 1, "already running (pid N, ...)") and leaves the running
#      cluster's logs alone;
#   4. a node killed with SIGKILL is restarted by its supervisor (reported on stderr and in its
#      log) and /health reports 3 nodes again;
#   5. SIGTERM stops the whole cluster and leaves no process behind;
#   6. if the script itself is killed with SIGKILL, its supervisors stop every service anyway.
# Bounded: every wait has a limit and the whole run gives up after 75 s (plus cleanup); it exits
# non-zero on failure and stops everything it started when it exits. It needs the cluster's
# ports (2181, 7100, 7200, 7301-7303, 8080) and uses the real .local-cluster/ state directory,
# so it refuses to run while a local cluster is up.
set -euo pipefail
cd "$(dirname "$0")/.."

export MOM_SKIP_BUILD="${MOM_SKIP_BUILD:-1}"
state=".local-cluster"
gateway="http://127.0.0.1:8080"
bin="target/${MOM_PROFILE:-debug}"
t0=$SECONDS
budget=75
tmp=$(mktemp -d)
out="$tmp/cluster.out"
cluster=""  # pid of the local-cluster.sh under test
extra=""    # pid of a local-cluster.sh expected to refuse (checks 1 and 3)
listener="" # pid of the program holding a port in check 1
started=""  # set once this test has started a cluster (so cleanup may kill its leftovers)

# The processes a local cluster runs: its supervisors (`bash scripts/local-cluster.sh`, as
# started here), ZooKeeper and the services (their command lines name .local-cluster/ files).
ours='bash scripts/local-cluster\.sh|\.local-cluster/(config|zookeeper)/'
leftovers() { pgrep -f -- "$ours" || true; }

say() { printf '[%3ss] %s\n' "$((SECONDS - t0))" "$*"; }
fail() {
  say "FAIL: $*" >&2
  if [ -s "$out" ]; then { echo "--- output of local-cluster.sh:"; cat "$out"; echo "---"; } >&2; fi
  exit 1
}

cleanup() {
  local rc=$? pids p
  trap '' INT TERM
  [ -z "$listener" ] || kill "$listener" 2>/dev/null || true
  for p in $extra $cluster; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 1 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    fi
  done
  if [ -n "$started" ]; then
    pids=$(leftovers)
    if [ -n "$pids" ]; then
      echo "cleanup: killing what the cluster left behind: $(echo "$pids" | tr '\n' ' ')" >&2
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      rc=1
    fi
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() { # seconds description command...: polls the command until it succeeds
  local limit=$((SECONDS + $1)) desc=$2
  shift 2
  [ "$limit" -le $((t0 + budget)) ] || limit=$((t0 + budget))
  until "$@"; do
    [ "$SECONDS" -lt "$limit" ] || fail "timed out waiting for $desc"
    sleep 0.3
  done
}
gone() { ! kill -0 "$1" 2>/dev/null; }
health() { curl -fs --max-time 2 "$gateway/health" 2>/dev/null || true; }
three_nodes() { [[ $(health) == *'"nodes":3'* ]]; }
# (No logs yet, as in a fresh checkout, is an empty list, not a failure.)
log_sizes() { for f in "$state"/logs/*.log; do if [ -e "$f" ]; then echo "$f $(stat -c %s "$f")"; fi; done; }
up() {
  grep -q "MOM is up" "$out" && return 0
  kill -0 "$cluster" 2>/dev/null || fail "local-cluster.sh exited before the cluster was up"
  return 1
}
run_bounded() { # seconds output-file: runs local-cluster.sh, expecting it to return by itself
  local rc=0
  bash scripts/local-cluster.sh >"$2" 2>&1 &
  extra=$!
  wait_for "$1" "local-cluster.sh (pid $extra) to refuse and exit" gone "$extra"
  wait "$extra" || rc=$?
  return "$rc"
}

# --- Preconditions ------------------------------------------------------------------------------
for b in mom-auth mom-partitioning mom-gateway mom-server; do
  [ -x "$bin/$b" ] || fail "$bin/$b is missing; build first (cargo build --workspace --bins)"
done
for tool in curl flock pgrep java; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (bash scripts/install-deps.sh installs what MOM needs)"
done
if [ -e "$state/lock" ] && ! flock -n "$state/lock" true; then
  fail "a local cluster is running (pid $(cat "$state/lock" 2>/dev/null)); stop it before running this test"
fi
[ -z "$(leftovers)" ] || fail "processes of a local cluster are running: $(leftovers | tr '\n' ' ')"

# --- 1. A port held by another program ------------------------------------------------------
hold_port() { # port: a program that listens on it (and never accepts)
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)' "$1" &
  elif command -v perl >/dev/null 2>&1; then
    perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die; sleep 60' "$1" &
  else
    return 1
  fi
  listener=$!
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if hold_port 7302; then
  wait_for 10 "the test's listener on port 7302" listening 7302
  before=$(log_sizes)
  started=1
  rc=0; run_bounded 15 "$tmp/port.out" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$tmp/port.out" >&2; fail "with port 7302 taken, local-cluster.sh exited with $rc, not 1"; }
  grep -q "port 7302 (needed by node2) is already in use" "$tmp/port.out" ||
    { cat "$tmp/port.out" >&2; fail "the refusal does not name port 7302"; }
  [ "$(log_sizes)" = "$before" ] || fail "the refused start touched the logs"
  say "ok: refused while port 7302 is taken: $(grep 'port 7302' "$tmp/port.out")"
  kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  listener=""
else
  say "skipped: no python3 or perl to hold a port with"
fi

# --- 2. Start -----------------------------------------------------------------------------------
started=1
bash scripts/local-cluster.sh >"$out" 2>&1 &
cluster=$!
wait_for 45 '"MOM is up"' up
grep -q "^admin user: admin, password in $state/secrets.env (MOM_ADMIN_PASSWORD)" "$out" ||
  fail "no admin password line after \"MOM is up\""
three_nodes || fail "/health does not report 3 nodes: $(health)"
[ "$(cat "$state/lock")" = "$cluster" ] || fail "$state/lock does not hold the script's pid $cluster"
say "ok: up (pid $cluster): $(health)"

# --- 3. A second cluster --------------------------------------------------------------------
before=$(log_sizes)
rc=0; run_bounded 10 "$tmp/second.out" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/second.out" >&2; fail "the second start exited with $rc, not 1"; }
expected="a local cluster is already running (pid $cluster, gateway $gateway); stop it with Ctrl-C in its terminal or \`kill $cluster\`"
grep -qF "$expected" "$tmp/second.out" || { cat "$tmp/second.out" >&2; fail "unexpected refusal message"; }
while read -r f size; do
  now=$(stat -c %s "$f")
  [ "$now" -ge "$size" ] || fail "$f shrank from $size to $now bytes: the second start truncated it"
done <<<"$before"
! grep -qF "local-cluster.sh (pid $extra)" "$state"/logs/*.log || fail "the refused start wrote to the logs"
kill -0 "$cluster" 2>/dev/null || fail "the running cluster died during the second start"
three_nodes || fail "/health no longer reports 3 nodes after the second start: $(health)"
say "ok: second start refused (exit 1): $(cat "$tmp/second.out")"

# --- 4. A crashed node ----------------------------------------------------------------------
node_pid() { pgrep -f -- "--config \\.local-cluster/config/node2\\.toml\$" || true; }
old=$(node_pid)
[ -n "$old" ] || fail "node2 is not running"
kill -KILL "$old"
restart_msg="node2 exited with status 137 (SIGKILL); restarting in 1s (see $state/logs/node2.log)"
wait_for 10 "the restart message on stderr" grep -qF "$restart_msg" "$out"
new_node() { local p; p=$(node_pid); [ -n "$p" ] && [ "$p" != "$old" ] && listening 7302; }
wait_for 15 "node2 to run again and listen on 7302" new_node
grep -qF "==== " "$state/logs/node2.log" || fail "no marker lines in node2.log"
grep -F "$restart_msg" "$state/logs/node2.log" >/dev/null || fail "the restart is not noted in node2.log"
tail -n +"$(grep -nF "$restart_msg" "$state/logs/node2.log" | tail -n1 | cut -d: -f1)" "$state/logs/node2.log" |
  grep -q "starting node2 (start " || fail "no start marker after the restart in node2.log"
wait_for 20 "/health to report 3 nodes again" three_nodes
# Not required, but shows the node really rejoined: its replicas catch up (soft, bounded).
healthy() { [[ $(health) == *'"status":"ok"'* ]]; }
for _ in $(seq 1 50); do healthy && break; [ $((SECONDS - t0)) -lt $((budget - 20)) ] || break; sleep 0.3; done
say "ok: node2 (pid $old) killed with SIGKILL, restarted as pid $(node_pid): $(health)"
say "    stderr: $(grep -F "$restart_msg" "$out" | tail -n1)"

# --- 5. SIGTERM stops everything ------------------------------------------------------------
kill -TERM "$cluster"
wait_for 20 "local-cluster.sh to stop on SIGTERM" gone "$cluster"
rc=0; wait "$cluster" || rc=$?
cluster=""
[ "$rc" -eq 143 ] || fail "local-cluster.sh exited with $rc on SIGTERM, not 143"
grep -q "stopping the cluster" "$out" || fail "no \"stopping the cluster\" line"
left=$(leftovers)
[ -z "$left" ] || fail "processes left after SIGTERM: $(ps -o pid=,args= -p "$(echo "$left" | paste -sd,)")"
flock -n "$state/lock" true || fail "$state/lock is still held after the cluster stopped"
say "ok: SIGTERM stopped the cluster (exit 143), no process left (pgrep -f '$ours' finds nothing)"

# --- 6. The script itself killed ------------------------------------------------------------
: >"$out"
bash scripts/local-cluster.sh >"$out" 2>&1 &
cluster=$!
wait_for 45 '"MOM is up" (second run)' up
disown "$cluster" # no "Killed" job report
kill -KILL "$cluster"
wait_for 5 "the killed script to be gone" gone "$cluster"
cluster=""
none_left() { [ -z "$(leftovers)" ]; }
wait_for 15 "the supervisors to stop everything after the script was killed" none_left
say "ok: after SIGKILL of the script its supervisors stopped every service, no process left"

say "PASS: local-cluster.sh checks passed in $((SECONDS - t0)) s"
