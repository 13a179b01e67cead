#!/usr/bin/env bash
# Keyspace notifications under a pipelined write stream: one chorus node and one redis-server,
# each with a `redis-cli psubscribe '__keyspace@0__:*'` subscriber, while `redis-benchmark -t
# set -P 16 -r 100000` writes to it. Prints how many notifications each subscriber received,
# and for chorus how many `redis_notifications_missed` counted (a subscriber that fell behind
# the node's change stream skips what it missed). A measurement, not a test: it asserts nothing.
#
#   bash tests/notifications_under_load.sh     # N=300000 writes, ROUNDS=2
#
# Builds the release binary unless CHORUS_BIN names one. Installs redis-server and redis-tools
# from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/redis_tools.sh
ensure_redis_tools
node_bin=$(chorus_release_bin)
scratch=$(mktemp -d)
source tests/node_tools.sh
pids=()
trap 'end_processes -TERM "${pids[@]}"; stop_nodes; rm -rf "$scratch"' EXIT
writes="${N:-300000}"

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
chorus_port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch" \
  --logfile "$scratch/redis.log" &
redis_pid=$!; pids+=("$redis_pid")
# Its own process answering, not another server on that port.
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$redis_pid" && break
  sleep 0.05
done
redis-cli -p "$redis_port" info server | tr -d '\r' | grep -qx "process_id:$redis_pid" \
  || { echo "redis-server did not start on $redis_port" >&2; tail -n 5 "$scratch/redis.log" >&2; exit 1; }

missed() { "$node_bin" stats --node "$a" --json | python3 -c 'import json, sys; print(json.load(sys.stdin).get("redis_notifications_missed", 0))'; }
# The lines in $1 once they stop growing (the subscriber has read what was on its way).
settled_lines() {
  local lines=-1 now
  for _ in $(seq 1 100); do
    now=$(wc -l <"$1")
    [ "$now" = "$lines" ] && break
    lines=$now; sleep 0.5
  done
  echo "$lines"
}

# Runs the write stream against $2 with a subscriber; prints what the subscriber received
# (and, for chorus, what the node counted as missed meanwhile).
measure() {
  local name=$1 port=$2 subscriber lines before=0 counted=""
  [ "$name" = chorus ] && before=$(missed)
  redis-cli -p "$port" config set notify-keyspace-events KEA >/dev/null
  redis-cli -p "$port" psubscribe '__keyspace@0__:*' >"$scratch/sub" &
  subscriber=$!
  # Three lines confirm the subscription; then four per notification.
  for _ in $(seq 1 100); do [ "$(wc -l <"$scratch/sub")" -ge 3 ] && break; sleep 0.05; done
  redis-benchmark -p "$port" -t set -c 50 -n "$writes" -d 64 -P 16 -r 100000 -q >/dev/null
  lines=$(settled_lines "$scratch/sub")
  kill "$subscriber" 2>/dev/null || true; wait "$subscriber" 2>/dev/null || true
  [ "$name" = chorus ] && counted=", $(( $(missed) - before )) counted missed"
  echo "$name: $(( (lines - 3) / 4 )) notifications of $writes writes$counted"
}

for round in $(seq 1 "${ROUNDS:-2}"); do
  measure redis "$redis_port"
  measure chorus "$chorus_port"
done
