#!/bin/bash
# Start-up time of the release binary on a state directory: until the admin API answers
# /healthz (the loop runs only after the state is loaded).
dir=$1; port=${2:-17700}
start=$(date +%s.%N)
${LOGIN_NODE:-target/release/login-node} --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+1)) --state-dir "$dir" --log-level info 2> "$dir.log" &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:$((port+1))/healthz; do sleep 0.02; done
end=$(date +%s.%N)
echo "up after $(echo "$end - $start" | bc) s; $(grep VmRSS /proc/$pid/status)"
kill -TERM $pid; wait $pid
