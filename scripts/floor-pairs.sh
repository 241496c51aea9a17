#!/bin/bash
# Alternated pairs of the floor (echo-floor) and the product on issue 12's two workloads (which
# runs first alternates from round to round, so an order effect cancels), each run pinned as ../shared/bench/compare.sh pins them (server on CPU 1, lnbench on CPU 0), a
# fresh state directory per product run. Prints server CPU-us per operation and each pair's
# ratio, then the medians. This VM moves the floor itself by +-30% between runs: judge medians.
#   scripts/floor-pairs.sh            ROUNDS=8 by default; PORT=9700
# Needs target/release/login-node and the yardsticks (compare.sh builds them into
# /tmp/login-node-yardsticks, or set BENCH_BIN).
B=${BENCH_BIN:-/tmp/login-node-yardsticks/release}; PORT=${PORT:-9700}; ROUNDS=${ROUNDS:-8}
PRODUCT=${PRODUCT:-target/release/login-node}
state=$(mktemp -d); trap 'rm -rf "$state"' EXIT
start() {
  taskset -c 1 "$@" >/dev/null 2>&1 & SP=$!
  for _ in $(seq 100); do ss -ltn "sport = :$PORT" | grep -q LISTEN && return; sleep 0.05; done
  echo "server did not start: $*" >&2; exit 1
}
stop() { kill $SP 2>/dev/null; wait $SP 2>/dev/null; }
per_op() { python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); c=d['cpu_us_per_op']
print(c['handshake_server'] if d['mode']=='connect' else c['measure_server'])"; }
run() { # lnbench args...: server CPU-us per operation of the server started last
  taskset -c 0 "$B/lnbench" "$@" --addr 127.0.0.1:$PORT --token secret --server-pid $SP --quiet 2>/dev/null | tail -1 | per_op
  stop
}
floor() { start "$B/echo-floor" "127.0.0.1:$PORT"; run "$@"; }
product() {
  rm -rf "$state/db"
  start "$PRODUCT" --listen 127.0.0.1:$PORT --token secret --state-dir "$state/db" --admin-listen off
  run "$@"
}
one() { # round, name, lnbench args...: the floor first in odd rounds, the product in even ones
  local round=$1 name=$2; shift 2; local f p
  if [ $((round % 2)) = 1 ]; then f=$(floor "$@"); p=$(product "$@"); else p=$(product "$@"); f=$(floor "$@"); fi
  python3 -c "print('$name floor %.2f product %.2f ratio %.3f' % ($f, $p, $p / $f))"
}
for round in $(seq "$ROUNDS"); do
  one "$round" hold connect --conns 19000 --hold 1
  one "$round" churn churn --conns 200 --duration 4
done | tee /dev/stderr | python3 -c "
import sys, statistics
r = {}
for line in sys.stdin:
    w = line.split(); r.setdefault(w[0], []).append(float(w[6]))
for name, xs in r.items():
    print('%s: median ratio %.3f over %d pairs' % (name, statistics.median(xs), len(xs)))"
