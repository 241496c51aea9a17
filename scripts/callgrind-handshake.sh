#!/bin/bash
# Instructions per handshake, main thread and store thread, counted by callgrind (repeatable
# while the machine is busy, unlike CPU time). Needs valgrind and the yardsticks' lnbench
# (bash ../shared/bench/compare.sh builds it into /tmp/login-node-yardsticks).
#   scripts/callgrind-handshake.sh [fresh|steady] [nodes]
# fresh:  an empty state directory (every node is new: one server/ row each).
# steady: the same node ids connected once before (lnbench's open_time moves with the clock,
#         so each handshake still rewrites its server/ row).
mode=${1:-fresh}; n=${2:-2000}; port=${PORT:-9640}
bin=${LOGIN_NODE:-target/release/login-node}
lnbench=${LNBENCH:-/tmp/login-node-yardsticks/release/lnbench}
dir=$(mktemp -d); out=$(mktemp -d)
trap 'rm -rf "$dir" "$out"' EXIT
listening() { for _ in $(seq 150); do ss -ltn "sport = :$port" | grep -q LISTEN && return; sleep 0.1; done; echo "not listening"; exit 1; }
connect() { "$lnbench" connect --conns "$n" --hold 1 --addr 127.0.0.1:$port --token secret --quiet >/dev/null; }
if [ "$mode" = steady ]; then
  "$bin" --listen 127.0.0.1:$port --token secret --state-dir "$dir" 2>/dev/null & pid=$!
  listening; connect; kill -INT $pid; wait $pid; sleep 1.1
fi
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg.%p" \
  "$bin" --listen 127.0.0.1:$port --token secret --state-dir "$dir" 2>/dev/null & pid=$!
listening; connect; kill -INT $pid; wait $pid
for f in "$out"/cg.*-[0-9]*; do
  [ -s "$f" ] || continue
  thread=$(callgrind_annotate "$f" 2>/dev/null | sed -n 's/.*thread \([0-9]*\)).*/\1/p' | head -1)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  name=$([ "$thread" = 1 ] && echo main || echo store)
  echo "$mode $name thread: $((total / n)) instructions per handshake ($total for $n, start-up included)"
done
