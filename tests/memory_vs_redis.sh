#!/usr/bin/env bash
# Memory of 1,000,000 small keys: a chorus node (through its Redis door) next to redis-server,
# in one run. Both are loaded with the same SET commands (keys `session/00000001` ..., 16-byte
# values) by `redis-cli --pipe`, then each process's RSS is read from /proc. Prints both RSS
# figures before and after loading, bytes per key, and the ratio chorus/redis (the target in
# DESIGN section 8 is at most 1.5).
#
#   tests/memory_vs_redis.sh [KEYS]        (default 1000000)
#   CHORUS_BIN=path tests/memory_vs_redis.sh  (a chorus binary built elsewhere, not built here)
#
# Installs redis-server and redis-tools from Debian's packages when missing. A measurement, not a
# test: not run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${1:-1000000}"

source tests/redis_tools.sh
source tests/node_tools.sh
ensure_redis_tools
chorus=$(chorus_release_bin)
scratch=$(mktemp -d)
pids=()
cleanup() { end_processes -TERM "${pids[@]}"; rm -rf "$scratch"; }
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$scratch" --logfile "$scratch/redis.log" &
redis_pid=$!; pids+=("$redis_pid")
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

"$chorus" node --listen 127.0.0.1:0 --redis 127.0.0.1:0 --log-level warn --name memory \
  >"$scratch/chorus.out" 2>"$scratch/chorus.err" &
chorus_pid=$!; pids+=("$chorus_pid")
for _ in $(seq 1 300); do grep -q '^ready' "$scratch/chorus.out" && break; sleep 0.1; done
chorus_port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/chorus.out")
[ -n "$chorus_port" ] || { echo "chorus node did not become ready" >&2; cat "$scratch/chorus.err" >&2; exit 1; }

# The load, in the Redis protocol: SET session/%08d <16 bytes>.
awk -v n="$keys" 'BEGIN {
  for (i = 1; i <= n; i++) {
    key = sprintf("session/%08d", i); value = sprintf("v%015d", i)
    printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key), key, length(value), value
  }
}' >"$scratch/load.resp"

redis_before=$(rss_kb "$redis_pid"); chorus_before=$(rss_kb "$chorus_pid")
redis-cli -p "$redis_port" --pipe <"$scratch/load.resp" >"$scratch/redis.pipe"
redis-cli -p "$chorus_port" --pipe <"$scratch/load.resp" >"$scratch/chorus.pipe"
sleep 2 # let the node's timers run (pushes, collection) before reading its RSS
tail -n 1 "$scratch/redis.pipe" "$scratch/chorus.pipe" >&2
redis_dbsize=$(redis-cli -p "$redis_port" dbsize); chorus_dbsize=$(redis-cli -p "$chorus_port" dbsize)
redis_after=$(rss_kb "$redis_pid"); chorus_after=$(rss_kb "$chorus_pid")

printf "%-8s %8s %12s %12s %14s\n" server keys "RSS before" "RSS after" "bytes per key"
report() {
  awk -v s="$1" -v k="$2" -v b="$3" -v a="$4" -v n="$keys" \
    'BEGIN { printf "%-8s %8d %9.1f MB %9.1f MB %14.1f\n", s, k, b / 1024, a / 1024, (a - b) * 1024 / n }'
}
report redis "$redis_dbsize" "$redis_before" "$redis_after"
report chorus "$chorus_dbsize" "$chorus_before" "$chorus_after"
awk -v r="$redis_after" -v c="$chorus_after" \
  'BEGIN { printf "ratio chorus/redis (RSS after): %.2f    # target <= 1.5: %s\n", c / r, (c / r <= 1.5 ? "met" : "MISSED") }'
