# Sourced (not run) by soak.sh and console-10k.sh, from the project root: one way to build
# the release workspace and start a release login-node for a long-running measurement.
#
#   start_release_node NAME STATE CAPACITY
#
# Needs PORT, ADMIN, TOKEN and ADMIN_TOKEN set. Builds, makes a fresh scratch directory OUT
# (/tmp/login-node-NAME.XXXXXX), starts the node on 127.0.0.1:PORT with its admin API on
# 127.0.0.1:ADMIN (state in OUT/state for STATE=durable, in memory for STATE=memory; default
# capacity CAPACITY; stderr to OUT/server.log), sets SERVER to its pid, kills it and every
# background job on exit, and waits (up to 10 s) until /healthz answers.
start_release_node() {
  local name=$1 state=$2 capacity=$3 state_dir=""
  cargo build --release --workspace -q
  OUT=$(mktemp -d "/tmp/login-node-$name.XXXXXX")
  if [ "$state" = durable ]; then state_dir="$OUT/state"; fi
  target/release/login-node --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
    --token "$TOKEN" --admin-token "$ADMIN_TOKEN" --state-dir "$state_dir" --log-level warn \
    --default-capacity "$capacity" 2>"$OUT/server.log" &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$ADMIN/healthz >/dev/null && break; sleep 0.1; done
}
