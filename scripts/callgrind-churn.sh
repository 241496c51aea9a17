#!/bin/bash
# Instructions per churn session (connect, AUTH, INFO, close; 20 workers over 4 ids each for
# 6 s), main thread and store thread, counted by callgrind. Needs valgrind and the yardsticks'
# lnbench (bash ../shared/bench/compare.sh builds it into /tmp/login-node-yardsticks).
#   scripts/callgrind-churn.sh
# instructions per churn session (loop, store) under callgrind
port=${PORT:-9650}; bin=${LOGIN_NODE:-target/release/login-node}; lnbench=${LNBENCH:-/tmp/login-node-yardsticks/release/lnbench}
dir=$(mktemp -d); out=$(mktemp -d)
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg.%p" "$bin" --listen 127.0.0.1:$port --token secret --state-dir "$dir" 2>/dev/null & pid=$!
for _ in $(seq 150); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
r=$("$lnbench" churn --conns 20 --duration 6 --addr 127.0.0.1:$port --token secret --quiet 2>/dev/null | tail -1)
n=$(echo "$r" | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['churn']['sessions_total'])")
kill -INT $pid; wait $pid
for f in "$out"/cg.*-[0-9]*; do total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'); name=$(basename "$f" | grep -q -- "-01$" && echo main || echo store); echo "churn $name thread: $((total / n)) instructions per session ($total for $n, start-up included)"; done
rm -rf "$dir" "$out"
