#!/usr/bin/env bash
# The operator console with N game nodes online (default 10,000): a release login-node, the
# load tool holding N game nodes on 100 cross nodes, then scripts/console-10k.py times the
# console in headless chromium, and curl times GET /api/nodes. Needs Debian's chromium and
# chromium-driver (.ci/run installs them).
#
#   scripts/console-10k.sh [N]        (from the project root)
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/.."
PORT=17800; ADMIN=17801; TOKEN=console-token; ADMIN_TOKEN=console-admin
. scripts/release-node.sh
start_release_node console-10k memory 200

target/release/login-node-bench hold --addr 127.0.0.1:$PORT --token $TOKEN --nodes "$N" \
  --cross 100 --duration 600 --quiet >"$OUT/bench.log" 2>&1 &
for _ in $(seq 600); do
  curl -sf http://127.0.0.1:$ADMIN/metrics | grep -q "^login_node_nodes_online{type=\"game\"} $N$" && break
  sleep 0.1
done
# What one request costs the node (its loop is busy meanwhile): the whole list, one page of
# the console's table, the cross platforms, the whitelist.
for path in /api/nodes "/api/nodes?type=game&limit=50&offset=5000" "/api/nodes?type=game&q=1234" /api/cross /api/whitelist; do
  curl -s -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" \
    -w "{\"path\": \"$path\", \"bytes\": %{size_download}, \"seconds\": %{time_total}}\n" \
    "http://127.0.0.1:$ADMIN$path"
done
python3 scripts/console-10k.py 127.0.0.1:$ADMIN $ADMIN_TOKEN "$N"
