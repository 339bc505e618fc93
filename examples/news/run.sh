#!/usr/bin/env bash
# Runs the news example against a running MOM cluster: web.py (the page, port $NEWS_PORT,
# default 8000) and, once it consumes, publisher.py (an item every $NEWS_INTERVAL s, default 3).
# Prints the page's URL; Ctrl-C stops both.
#
#   bash scripts/local-cluster.sh            # in another terminal: the cluster, gateway on :8080
#   bash examples/news/run.sh
#
# Environment: MOM_URL (gateway, default http://127.0.0.1:8080), NEWS_USER / NEWS_PASSWORD
# (default news / news-example-password), NEWS_PORT, NEWS_INTERVAL, PYTHON (default: the
# example's .venv if there is one, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
export MOM_URL="${MOM_URL:-http://127.0.0.1:8080}"
port="${NEWS_PORT:-8000}"
interval="${NEWS_INTERVAL:-3}"

# Is there a gateway? (Any HTTP answer counts: /health says 503 while a partition is leaderless.)
if ! "$python" - "$MOM_URL" <<'PY'
import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1] + "/health", timeout=3).close()
except urllib.error.HTTPError:
    pass
except OSError as e:
    sys.exit(f"no MOM gateway answers at {sys.argv[1]}: {e}")
PY
then
  echo "start a local cluster first, in another terminal: bash scripts/local-cluster.sh" >&2
  echo "(or point MOM_URL at a running gateway)" >&2
  exit 1
fi

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "news example stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

"$python" -u "$here/web.py" --port "$port" &
web=$!
pids+=("$web")

# The publisher starts once web.py's queues are bound, so that it sees every item.
if ! "$python" - "$port" "$web" <<'PY'
import os
import sys
import time
import urllib.request

port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("web.py exited")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.3)
sys.exit("web.py did not start consuming within 90 s")
PY
then
  exit 1
fi

"$python" -u "$here/publisher.py" --interval "$interval" &
pids+=("$!")

echo
echo "==> news page: http://127.0.0.1:$port/   (Ctrl-C stops the publisher and the web app)"
echo

# Runs until Ctrl-C, or until one of them exits (then the other is stopped too).
status=0
wait -n "${pids[@]}" || status=$?
exit "$status"
