#!/usr/bin/env bash
# Soak test: a release login-node under the load tool's mixed workload (nodes holding and
# heartbeating, pipelined heartbeats, connect/close churn) plus whitelist changes through
# the admin API, for MINUTES (default 30). Samples the server's RSS and open descriptors
# every 30 s into soak.csv and prints the first and last samples; exits 1 if the load tool
# saw failures or RSS / descriptors grew by more than 10% between the 5-minute mark and
# the end.
#
#   scripts/soak.sh [MINUTES]        (from the project root)
set -euo pipefail
MINUTES=${1:-30}
cd "$(dirname "$0")/.."
PORT=17700; ADMIN=17701; TOKEN=soak-token; ADMIN_TOKEN=soak-admin
. scripts/release-node.sh
start_release_node soak durable 2000

target/release/login-node-bench mixed --addr 127.0.0.1:$PORT --token $TOKEN \
  --nodes 4000 --cross 4 --pump-nodes 100 --pipeline 4 --workers 20 \
  --duration $((MINUTES * 60)) --server-pid $SERVER --json >"$OUT/bench.json" 2>"$OUT/bench.log" &
BENCH=$!

# Whitelist churn: five changes a second, the list staying around 1,000 entries.
(
  i=0
  while kill -0 $BENCH 2>/dev/null; do
    curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" -X POST \
      http://127.0.0.1:$ADMIN/api/whitelist -d "{\"entry\": \"soak-$i\"}" >/dev/null || echo "whitelist add failed" >&2
    if [ $i -ge 1000 ]; then
      curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" -X DELETE \
        http://127.0.0.1:$ADMIN/api/whitelist -d "{\"entry\": \"soak-$((i - 1000))\"}" >/dev/null || echo "whitelist remove failed" >&2
    fi
    i=$((i + 1)); sleep 0.2
  done
) 2>"$OUT/whitelist.log" &

echo "t_s,rss_kib,fds" >"$OUT/soak.csv"
START=$(date +%s)
while kill -0 $BENCH 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVER/status)
  fds=$(ls /proc/$SERVER/fd | wc -l)
  echo "$(( $(date +%s) - START )),$rss,$fds" >>"$OUT/soak.csv"
  sleep 30
done
wait $BENCH && BENCH_OK=1 || BENCH_OK=0
rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVER/status); fds=$(ls /proc/$SERVER/fd | wc -l)
echo "$(( $(date +%s) - START )),$rss,$fds" >>"$OUT/soak.csv"

echo "soak: $MINUTES min, output in $OUT"
echo "first sample: $(sed -n 2p "$OUT/soak.csv")   (t_s,rss_kib,fds)"
echo "5-min sample: $(awk -F, 'NR>1 && $1>=300 {print; exit}' "$OUT/soak.csv")"
echo "last sample:  $(tail -1 "$OUT/soak.csv")"
echo "whitelist: $(curl -sf http://127.0.0.1:$ADMIN/metrics | grep -E '^login_node_whitelist_(version|entries)' | tr '\n' ' ')"
echo "whitelist errors: $(wc -l <"$OUT/whitelist.log")"
tail -5 "$OUT/bench.log"
python3 - "$OUT/soak.csv" "$BENCH_OK" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ok = sys.argv[2] == "1"
base = next((r for r in rows if int(r["t_s"]) >= 300), rows[0])
last = rows[-1]
for key in ("rss_kib", "fds"):
    a, b = int(base[key]), int(last[key])
    grew = (b - a) / max(a, 1)
    print(f"{key}: {a} at {base['t_s']} s -> {b} at {last['t_s']} s ({grew:+.1%})")
    if grew > 0.10:
        ok = False
sys.exit(0 if ok else 1)
PY
