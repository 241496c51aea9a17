#!/bin/bash
# Longest loop turns while a 100,000-entry whitelist change commits: durable (state dir with
# 100,000 assignments) vs memory only. Prints the loop-turn histogram's buckets above 1 ms.
set -e
B=${LOGIN_NODE:-target/release/login-node}
mode=$1; dir=$2; port=${3:-18800}
if [ "$mode" = durable ]; then sd=(--state-dir "$dir"); else sd=(--state-dir ""); fi
$B --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+1)) "${sd[@]}" --log-level warn 2>/dev/null &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:$((port+1))/healthz; do sleep 0.05; done
python3 -c "import json; print(json.dumps({'entries': ['player-%06d' % i for i in range(100000)]}))" > /tmp/wl100k.json
A="Authorization: Bearer dev-admin-token-change-me"
curl -s http://127.0.0.1:$((port+1))/metrics | grep '^login_node_loop_turn_seconds_bucket' > /tmp/before.txt
t0=$(date +%s.%N)
curl -s -H "$A" -X POST --data-binary @/tmp/wl100k.json http://127.0.0.1:$((port+1))/api/whitelist > /tmp/wlresp.txt
t1=$(date +%s.%N)
sleep 0.5
curl -s http://127.0.0.1:$((port+1))/metrics | grep -E '^login_node_loop_turn_seconds_bucket|^login_node_journal_fsync_seconds_(sum|count)' > /tmp/after.txt
echo "$mode: POST answered in $(echo "$t1 - $t0" | bc) s: $(cat /tmp/wlresp.txt)"
paste /tmp/before.txt <(grep loop_turn /tmp/after.txt) | awk '{print $1, $4-$2}' | sed 's/login_node_loop_turn_seconds_bucket//'
grep fsync /tmp/after.txt
kill $pid; wait $pid 2>/dev/null || true
