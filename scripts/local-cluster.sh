#!/usr/bin/env bash
# Starts a working local MOM cluster: ZooKeeper, auth, partitioning, gateway and 3 broker nodes,
# with the config files in config/files and all state under .local-cluster/. Ctrl-C (or SIGTERM)
# stops it.
#
# Only one local cluster runs at a time: the script holds a lock on .local-cluster/lock for its
# whole life, and a second start is refused (before it touches anything), as is a start while
# another program holds one of the cluster's ports.
#
# Each service runs under a small supervisor that restarts it the way systemd's
# Restart=on-failure would: when it exits with a non-zero status or is killed by a signal, after a
# back-off of 1 s doubling up to 30 s (back to 1 s once it has run for 60 s). A clean exit
# (status 0) is not restarted. Restarts are reported on stderr and in the service's log;
# logs are appended to, with a marker line at each (re)start.
#
# Environment: MOM_PROFILE=release builds and runs the release binaries (default: debug);
# MOM_SKIP_BUILD=1 skips scripts/install-deps.sh and `cargo build` and uses the binaries already
# in target/<profile> (a missing binary is retried like a crashed one).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${MOM_PROFILE:-debug}"
bin="target/$profile"
state=".local-cluster"
gateway="http://127.0.0.1:8080"

running() { # pid: is that process alive (and not a zombie)?
  local stat=""
  [ -d /proc/self ] || { kill -0 "$1" 2>/dev/null; return; }
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# --- One cluster at a time --------------------------------------------------------------------
# The lock is taken before anything else under $state is touched. fd 9 stays open (and locked)
# for the life of the script and its supervisors; the services themselves don't inherit it.
mkdir -p "$state"
exec 9>>"$state/lock"
if ! flock -n 9; then
  holder=""
  read -r holder <"$state/lock" 2>/dev/null || true
  if [ -z "$holder" ]; then
    echo "a local cluster is already starting or running (gateway $gateway); stop it with Ctrl-C in its terminal" >&2
  elif running "$holder"; then
    echo "a local cluster is already running (pid $holder, gateway $gateway); stop it with Ctrl-C in its terminal or \`kill $holder\`" >&2
  else
    echo "a local cluster's script (pid $holder) is gone but its processes still hold $state/lock; they stop on their own within seconds, or find them with \`pgrep -af $state/\`" >&2
  fi
  exit 1
fi
echo "$$" >"$state/lock"

# The ports the cluster listens on; another program holding one would make a service fail over
# and over, so refuse up front and say which.
port_user() { # port: succeeds if something listens on it, printing who when it is known
  local out
  if command -v ss >/dev/null 2>&1 && out=$(ss -Hltnp "sport = :$1" 2>/dev/null); then
    [ -n "$out" ] || return 1
    if [[ $out =~ \(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
      echo "${BASH_REMATCH[1]} (pid ${BASH_REMATCH[2]})"
    else
      echo "another program"
    fi
    return 0
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then echo "another program"; return 0; fi
  return 1
}
ports=("2181 zookeeper")
for name in auth partitioning gateway node1 node2 node3; do
  port=$(sed -n 's/^listen *= *"[^"]*:\([0-9][0-9]*\)".*/\1/p' "config/files/$name.toml" | head -n1)
  [ -z "$port" ] || ports+=("$port $name")
done
for entry in "${ports[@]}"; do
  read -r port name <<<"$entry"
  if user=$(port_user "$port"); then
    echo "port $port (needed by $name) is already in use by $user; stop it or free the port, then start the local cluster again" >&2
    exit 1
  fi
done

if [ "${MOM_SKIP_BUILD:-}" = 1 ]; then
  echo "MOM_SKIP_BUILD=1: not installing dependencies nor building; using the binaries in $bin"
  for b in mom-auth mom-partitioning mom-gateway mom-server; do
    [ -x "$bin/$b" ] || echo "warning: $bin/$b is missing for now; its service is retried until it appears" >&2
  done
else
  bash scripts/install-deps.sh 9>&-
  if [ "$profile" = release ]; then cargo build --release --workspace --bins 9>&-; else cargo build --workspace --bins 9>&-; fi
fi
# The `mom` CLI on PATH: a link to the binary just built, in /usr/local/bin when that is
# writable (root), else in ~/.local/bin.
cli_dir=/usr/local/bin
[ -w "$cli_dir" ] || { cli_dir="$HOME/.local/bin"; mkdir -p "$cli_dir"; }
if [ -x "$bin/mom" ]; then
  ln -sf "$PWD/$bin/mom" "$cli_dir/mom"
  echo "the mom CLI is linked at $cli_dir/mom"
  case ":$PATH:" in *":$cli_dir:"*) ;; *) echo "note: $cli_dir is not on your PATH" >&2 ;; esac
fi
mkdir -p "$state/zookeeper" "$state/logs"

# --- Supervision ------------------------------------------------------------------------------
log_note() { # log message...
  local log=$1; shift
  printf '==== %s %s ====\n' "$(date '+%F %T')" "$*" >>"$log"
}

# Runs "$@" as the service <name> in the background and restarts it when it fails. Meant to be
# run as `supervise name cmd... &`: it is the subshell's whole life. On SIGTERM (or SIGHUP) it
# stops the service (SIGTERM, then SIGKILL after 10 s) and exits; it does the same on its own
# when the script that started it is gone (e.g. killed with SIGKILL), so nothing is left behind.
supervise() { # name command [args...]
  set +e
  local name=$1; shift
  local log="$state/logs/$name.log" main=$$ delay=1 attempt=0 stopping=""
  local child sleeper status started desc sig msg
  trap 'stopping=1' TERM HUP
  # Ctrl-C is the script's to handle (it stops the services first, ZooKeeper last); the
  # supervisor and its service ignore the terminal's SIGINT.
  trap '' INT
  while :; do
    attempt=$((attempt + 1))
    log_note "$log" "local-cluster.sh (pid $main) starting $name (start $attempt): $*"
    started=$SECONDS
    "$@" >>"$log" 2>&1 </dev/null 9>&- &
    child=$!
    # Poll rather than block in `wait`, so that the script's disappearance is noticed too.
    while [ -z "$stopping" ] && running "$child"; do
      running "$main" || { stopping=1; break; }
      sleep 1 & sleeper=$!
      wait "$sleeper" 2>/dev/null
      kill "$sleeper" 2>/dev/null
    done
    if [ -n "$stopping" ]; then
      if running "$child"; then
        kill -TERM "$child" 2>/dev/null
        for _ in $(seq 1 100); do running "$child" || break; sleep 0.1; done
        kill -KILL "$child" 2>/dev/null
      fi
      wait "$child" 2>/dev/null
      log_note "$log" "$name stopped by local-cluster.sh"
      exit 0
    fi
    wait "$child"; status=$?
    if [ "$status" -eq 0 ]; then
      msg="$name exited cleanly (status 0); not restarting it (see $log)"
      echo "$msg" >&2; log_note "$log" "$msg"
      exit 0
    fi
    [ $((SECONDS - started)) -lt 60 ] || delay=1
    desc=$status
    if [ "$status" -gt 128 ] && sig=$(kill -l $((status - 128)) 2>/dev/null); then desc="$status (SIG$sig)"; fi
    msg="$name exited with status $desc; restarting in ${delay}s (see $log)"
    echo "$msg" >&2; log_note "$log" "$msg"
    sleep "$delay" & sleeper=$!
    wait "$sleeper" 2>/dev/null
    kill "$sleeper" 2>/dev/null
    if [ -n "$stopping" ] || ! running "$main"; then
      log_note "$log" "$name stopped by local-cluster.sh"
      exit 0
    fi
    delay=$((delay * 2)); [ "$delay" -le 30 ] || delay=30
  done
}

services=() # supervisor pids of the MOM services
zk=""       # supervisor pid of ZooKeeper, stopped last
stopped=""
# shellcheck disable=SC2317 # called from the traps below
stop() {
  [ -z "$stopped" ] || return 0
  stopped=1
  trap '' INT TERM HUP # stopping is not interrupted; the supervisors escalate to SIGKILL
  if [ ${#services[@]} -gt 0 ] || [ -n "$zk" ]; then
    echo "stopping the cluster"
    if [ ${#services[@]} -gt 0 ]; then
      kill -TERM "${services[@]}" 2>/dev/null || true
      wait "${services[@]}" 2>/dev/null || true
    fi
    if [ -n "$zk" ]; then
      kill -TERM "$zk" 2>/dev/null || true
      wait "$zk" 2>/dev/null || true
    fi
  fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop; exit 129' HUP
trap stop EXIT

cat > "$state/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$PWD/$state/zookeeper/data
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
CFG
supervise zookeeper java -Xmx256m -cp /usr/share/java/zookeeper.jar \
  org.apache.zookeeper.server.ZooKeeperServerMain "$state/zookeeper/zoo.cfg" &
zk=$!
deadline=$((SECONDS + 60))
until (exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && grep -q Mode: <&3) 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "zookeeper did not come up in 60 s; see $state/logs/zookeeper.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "zookeeper serving on 127.0.0.1:2181"

# Secrets are made once per local cluster and kept in $state/secrets.env: the user-token
# secret, the services' own cluster secret, ZooKeeper's digest password and the first admin's
# password. The config files in config/files hold placeholders; the ones used are rendered
# into $state/config with the real values.
secrets="$state/secrets.env"
if [ ! -f "$secrets" ]; then
  umask 077
  secret() { head -c 32 /dev/urandom | base64 | tr -d '/+=' ; }
  cat > "$secrets" <<SECRETS
MOM_JWT_SECRET=$(secret)
MOM_CLUSTER_SECRET=$(secret)
MOM_ZOOKEEPER_PASSWORD=$(secret)
MOM_ADMIN_PASSWORD=$(secret)
SECRETS
  umask 022
fi
# shellcheck disable=SC1090
. "$secrets"
mkdir -p "$state/config"
for file in config/files/*.toml; do
  sed -e "s|change-me-user-token-secret|$MOM_JWT_SECRET|" \
      -e "s|change-me-cluster-secret|$MOM_CLUSTER_SECRET|" \
      -e "s|change-me-zookeeper-password|$MOM_ZOOKEEPER_PASSWORD|" \
      -e "s|change-me-admin-password|$MOM_ADMIN_PASSWORD|" \
      "$file" > "$state/config/$(basename "$file")"
done
chmod 600 "$state"/config/*.toml

start() { # name binary config
  supervise "$1" "$bin/$2" --config "$state/config/$3" &
  services+=($!)
}
start auth mom-auth auth.toml
start partitioning mom-partitioning partitioning.toml
start gateway mom-gateway gateway.toml
for n in 1 2 3; do start "node$n" mom-server "node$n.toml"; done

deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  health=$(curl -fs --max-time 2 "$gateway/health" 2>/dev/null) || health=""
  if [[ $health == *'"nodes":3'* ]]; then
    echo "MOM is up: gateway at $gateway (logs in $state/logs; Ctrl-C stops everything)"
    echo "admin user: admin, password in $secrets (MOM_ADMIN_PASSWORD)"
    # A crashed service is restarted by its supervisor; the script lives until it is stopped
    # (or until every service has exited cleanly).
    wait || true
    echo "every service exited cleanly; nothing left to run" >&2
    exit 0
  fi
  sleep 0.2
done
echo "the cluster did not come up; see $state/logs" >&2
exit 1
