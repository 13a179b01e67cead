#!/usr/bin/env bash
# Keyspace notifications under a pipelined write stream: one chorus node and one redis-server,
# each with a `redis-cli psubscribe '__keyspace@0__:*'` subscriber, while `redis-benchmark -t
# set -P 16 -r 100000` writes to it. Prints how many notifications each subscriber received,
# and chorus's `redis_notifications_missed` (a subscriber that fell behind the node's change
# stream skips what it missed). A measurement, not a test: it asserts nothing.
#
#   bash tests/notifications_under_load.sh     # N=300000 writes, ROUNDS=2
#
# Builds the release binary unless CHORUS_BIN names one. Installs redis-server and redis-tools
# from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/redis_tools.sh
ensure_redis_tools
if [ -z "${CHORUS_BIN:-}" ]; then cargo build --release --locked --bin chorus >&2; fi
node_bin="${CHORUS_BIN:-${CARGO_TARGET_DIR:-target}/release/chorus}"
scratch=$(mktemp -d)
source tests/node_tools.sh
pids=()
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; stop_nodes; rm -rf "$scratch"' EXIT
writes="${N:-300000}"

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
chorus_port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch" \
  --logfile "$scratch/redis.log" &
pids+=("$!")
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Runs the write stream against $2 with a subscriber; prints what the subscriber received.
measure() {
  local name=$1 port=$2 subscriber lines
  redis-cli -p "$port" config set notify-keyspace-events KEA >/dev/null
  redis-cli -p "$port" psubscribe '__keyspace@0__:*' >"$scratch/sub" &
  subscriber=$!; pids+=("$subscriber")
  sleep 0.5
  redis-benchmark -p "$port" -t set -c 50 -n "$writes" -d 64 -P 16 -r 100000 -q >/dev/null
  sleep 2  # the subscriber reads what is still on its way
  kill "$subscriber"; wait "$subscriber" 2>/dev/null || true
  # Three lines of subscription confirmation, then four per notification.
  lines=$(wc -l <"$scratch/sub")
  echo "$name: $(( (lines - 3) / 4 )) notifications of $writes writes"
}

for round in $(seq 1 "${ROUNDS:-2}"); do
  measure redis "$redis_port"
  measure chorus "$chorus_port"
done
"$node_bin" stats --node "$a" --json | python3 -c '
import json, sys
stats = json.load(sys.stdin)
print("chorus redis_notifications_missed (all rounds):", stats.get("redis_notifications_missed", 0))
'
