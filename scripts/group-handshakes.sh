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
# Counts, sums and percentiles (upper bucket bounds) of the store's transactions.
curl -s http://127.0.0.1:$((port+1))/metrics | python3 -c "
import re,sys
h={}
for l in sys.stdin:
    m=re.match(r'login_node_(journal_fsync_seconds|store_txn_seconds|store_txn_ops)_(bucket\{le=\"([^\"]+)\"\}|sum|count) (\S+)',l)
    if not m: continue
    d=h.setdefault(m[1],{'b':[]})
    if m[3]: d['b'].append((float('inf') if m[3]=='+Inf' else float(m[3]),float(m[4])))
    else: d[m[2]]=float(m[4])
for k,d in h.items():
    n=d.get('count',0)
    if not n: continue
    pct=lambda q: next(le for le,c in sorted(d['b']) if c>=q*n)
    print(k,'count %d mean %.4g p50<=%g p90<=%g p99<=%g' % (n,d['sum']/n,pct(.5),pct(.9),pct(.99)))"
kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
