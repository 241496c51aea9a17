#!/bin/bash
# Issue 11 scenarios at full size, with the release binary and the neutral load generator:
#   bench-growth.sh whitelist [NODES]   NODES (2000) reading game nodes online, one POST of
#                                       100,000 whitelist entries: POST time, server RSS peak
#   bench-growth.sh ramp [CROSS]        lnbench connect --conns 10000 --cross-nodes CROSS (10)
#                                       --cross-capacity 1000: bytes to the client side,
#                                       handshakes/s (run it with CROSS=0 for the baseline)
# Server pinned to CPU 1, lnbench to CPU 0, state in a fresh temporary directory (fsync on).
# Build first: cargo build --release; lnbench is built into $BENCH_TARGET_DIR as compare.sh does.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$HERE/target/release/login-node}
export CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-/tmp/login-node-yardsticks}
(cd "$HERE/../shared/bench/lnbench" && cargo build --release -q)
LNBENCH=$CARGO_TARGET_DIR/release/lnbench
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=${PORT:-19100}
ADMIN=127.0.0.1:$((PORT + 1))
metric() { curl -s "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

taskset -c 1 "$BIN" --listen 127.0.0.1:$PORT --token secret --admin-listen $ADMIN \
  --admin-token bench-admin --log-level warn --state-dir "$WORK/state" 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://$ADMIN/healthz" >/dev/null && break; sleep 0.05; done

case "${1:-}" in
whitelist)
  NODES=${2:-2000}
  python3 -c "import json; print(json.dumps({'entries': ['player-%08d' % i for i in range(100000)]}))" >"$WORK/body.json"
  taskset -c 0 "$LNBENCH" connect --addr 127.0.0.1:$PORT --token secret --conns "$NODES" \
    --hold 25 --drain 10 --quiet >"$WORK/lnbench.out" 2>&1 &
  LB=$!
  for _ in $(seq 600); do [ "$(metric 'login_node_nodes_online{type="game"}')" = "$NODES" ] && break; sleep 0.1; done
  rss0=$(awk '/VmRSS/ { print $2 }' /proc/$PID/status)
  t0=$(date +%s.%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer bench-admin' \
    -X POST --data-binary @"$WORK/body.json" "http://$ADMIN/api/whitelist")
  t1=$(date +%s.%N)
  prev=0
  for _ in $(seq 300); do b=$(metric login_node_bytes_sent_total); [ "$b" = "$prev" ] && break; prev=$b; sleep 0.5; done
  hwm=$(awk '/VmHWM/ { print $2 }' /proc/$PID/status)
  wait $LB || true
  echo "whitelist: $NODES nodes, POST of 100,000 entries: HTTP $code in $(echo "$t1 - $t0" | bc) s;" \
    "RSS $rss0 KiB before, peak $hwm KiB (+$((hwm - rss0)) KiB); $prev bytes sent"
  grep -o '"WHITELIST_DELTA":[0-9]*' "$WORK/lnbench.out" | sed 's/^/lnbench received /'
  grep -E '^RESULT' "$WORK/lnbench.out"
  ;;
ramp)
  CROSS=${2:-10}
  taskset -c 0 "$LNBENCH" connect --addr 127.0.0.1:$PORT --token secret --conns 10000 \
    --cross-nodes "$CROSS" --cross-capacity 1000 --server-pid $PID --hold 3 --quiet >"$WORK/lnbench.out" 2>&1
  grep -E '^(RESULT|handshake:|CPU-us per handshake|CPU handshake)' "$WORK/lnbench.out"
  grep -o '"bytes_in":[0-9]*\|"CROSS_MEMBERS":[0-9]*' "$WORK/lnbench.out" | sed 's/^/client /'
  ;;
*)
  echo "usage: $0 whitelist [NODES] | ramp [CROSS_NODES]" >&2
  exit 2
  ;;
esac
