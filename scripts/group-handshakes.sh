#!/bin/bash
# Handshakes/s and server CPU per handshake with 10,000 game nodes over 10 cross nodes:
# local database vs a failover group on etcd (one etcd member at $ETCD).
B=${LOGIN_NODE:-target/release/login-node}; T=${BENCH:-target/release/login-node-bench}
mode=$1; port=${2:-20700}; dir=$(mktemp -d)
extra=(); [ "$mode" = etcd ] && extra=(--etcd "$ETCD" --etcd-prefix "/bench/$$-$port" --member-name bench --etcd-max-txn-ops "${MAX_TXN_OPS:-128}")
$B --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+1)) --token T --state-dir "$dir/s" --default-capacity 1000 --log-level warn "${extra[@]}" 2>"$dir/log" &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:$((port+1))/healthz; do sleep 0.05; done
$T hold --addr 127.0.0.1:$port --token T --nodes 10000 --cross 10 --cross-capacity 1000 --duration 3 --server-pid $pid --json --quiet 2>/dev/null | python3 -c "
import json,sys; r=json.load(sys.stdin)
print('$mode', 'hs/s %.0f' % r['handshakes_per_sec'], 'cpu-us/hs %.1f' % r['server_cpu_us_per_handshake'], 'ramp %.2fs' % r['ramp_secs'], 'p99 hs %.1fms' % (r['handshake_latency']['p99_us']/1000), 'ok', r['ok'], r['failures'])"
curl -s http://127.0.0.1:$((port+1))/metrics | grep -E "^login_node_(journal_fsync_seconds|store_txn_seconds|store_txn_ops)_(sum|count)"
kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
