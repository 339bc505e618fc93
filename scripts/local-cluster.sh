#!/usr/bin/env bash
# Starts a working local MOM cluster: ZooKeeper, auth, partitioning, gateway and 3 broker nodes,
# with the config files in config/files and all state under .local-cluster/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

profile="${MOM_PROFILE:-debug}"
if [ "$profile" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
bin="target/$profile"
state=".local-cluster"
mkdir -p "$state/zookeeper" "$state/logs"

pids=()
stop() {
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

cat > "$state/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$PWD/$state/zookeeper/data
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
CFG
java -Xmx256m -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.ZooKeeperServerMain \
  "$state/zookeeper/zoo.cfg" >"$state/logs/zookeeper.log" 2>&1 &
pids+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && grep -q Mode: <&3) 2>/dev/null; do sleep 0.2; done
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
  "$bin/$2" --config "$state/config/$3" >"$state/logs/$1.log" 2>&1 &
  pids+=($!)
}
start auth mom-auth auth.toml
start partitioning mom-partitioning partitioning.toml
start gateway mom-gateway gateway.toml
for n in 1 2 3; do start "node$n" mom-server "node$n.toml"; done

gateway="http://127.0.0.1:8080"
for _ in $(seq 1 150); do
  if curl -fs "$gateway/health" 2>/dev/null | grep -q '"nodes":3'; then
    echo "MOM is up: gateway at $gateway (logs in $state/logs; Ctrl-C stops everything)"
    echo "admin user: admin, password in $secrets (MOM_ADMIN_PASSWORD)"
    # A crashed node is part of what a cluster survives: report it and keep the rest running.
    while wait -n; [ $? -ne 127 ]; do
      echo "a service exited; the others keep running (see $state/logs)" >&2
    done
    exit 0
  fi
  sleep 0.2
done
echo "the cluster did not come up; see $state/logs" >&2
exit 1
