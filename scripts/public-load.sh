#!/bin/sh
# The players' server list under load next to heartbeating nodes (issue 16):
# 1,000 game nodes on one platform heartbeat once a second; then HTTP clients ask for that
# platform's list (~115 KB) at --rate, first as full 200 answers, then revalidating (304).
# Server pinned to CPU 1, the tool to CPU 0. Run from the project root after
#   cargo build --release --workspace
# Env: DUR (seconds per phase, 10), RATE (requests/s, 10000), HTTP (extra flags for the
# HTTP side, "--http-conns 16 --depth 4"), PORT (base port, 17900).
set -e
PORT=${PORT:-17900}
NODE=127.0.0.1:$PORT; ADM=127.0.0.1:$((PORT + 1)); PUB=127.0.0.1:$((PORT + 2))
RATE=${RATE:-10000}; HTTP=${HTTP:---http-conns 16 --depth 4}
taskset -c 1 target/release/login-node --listen $NODE --public-listen $PUB --admin-listen $ADM \
  --state-dir "" --heartbeat-interval 1 --heartbeat-timeout 10 --log-level error &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 0.5
B="taskset -c 0 target/release/login-node-bench"
COMMON="--addr $NODE --nodes 1000 --id-base 100000 --duration ${DUR:-10} --quiet --server-pid $SERVER"
# Loop turns of the server (login_node_loop_turn_seconds) since the last call: how many,
# and how many took over 0.5 ms and over 1 ms (a heartbeat waits at most one turn).
LAST=/tmp/public-load.$$.turns
buckets() { curl -s $ADM/metrics | awk -F'[{}" ]+' '/^login_node_loop_turn_seconds_bucket/ {print $3, $4}'; }
turns() {
  buckets > $LAST.new
  [ -f $LAST ] || sed 's/ .*/ 0/' $LAST.new > $LAST
  paste -d' ' $LAST $LAST.new | awk '{d[$1] = $4 - $2} END {
    n = d["+Inf"]; printf "  server turns %d; over 0.5 ms %d (%.2f%%), over 1 ms %d (%.2f%%)\n",
      n, n - d["0.0005"], 100 * (n - d["0.0005"]) / n, n - d["0.001"], 100 * (n - d["0.001"]) / n }'
  mv $LAST.new $LAST
}
turns >/dev/null
echo "== baseline: hold 1000 nodes, no HTTP"; $B hold $COMMON; turns
echo "== public $RATE/s, full 200 answers"; $B public $COMMON --public-addr $PUB --rate $RATE $HTTP; turns
echo "== public $RATE/s, revalidating (304)"; $B public $COMMON --public-addr $PUB --rate $RATE $HTTP --conditional; turns
rm -f $LAST
