#!/usr/bin/env bash
# The longest hold of a node's lock while one command works on a hash of many fields (default
# 100,000): for each of HGETALL, HLEN, EXPIRE, PERSIST, RENAME and DEL, a fresh node is loaded
# with the hash by `redis-cli --pipe` (one pipelined HSET per field, so loading takes short
# holds), then the command runs once; prints the longest read and write holds (`chorus stats`:
# lock_read_hold_ns_max, lock_write_hold_ns_max) before and after the command, and its time.
#
#   tests/hash_lock_hold.sh [FIELDS]        CHORUS_BIN=path measures a binary already built
#
# A measurement, not a test: not run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

fields="${1:-100000}"
source tests/redis_tools.sh
source tests/node_tools.sh
command -v redis-cli >/dev/null || ensure_redis_tools
CHORUS_BIN=$(chorus_release_bin)
scratch=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then end_processes -TERM "$pid"; fi; rm -rf "$scratch"; }
trap cleanup EXIT

awk -v n="$fields" 'BEGIN {
  for (i = 1; i <= n; i++) {
    f = sprintf("field%08d", i)
    printf "*4\r\n$4\r\nHSET\r\n$4\r\nhash\r\n$%d\r\n%s\r\n$16\r\n%016d\r\n", length(f), f, i
  }
}' >"$scratch/load.resp"

# The longest read and write holds so far, in microseconds.
holds() {
  "$CHORUS_BIN" stats --json --node "$listen" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("read %7d us  write %7d us" % (s["lock_read_hold_ns_max"] // 1000, s["lock_write_hold_ns_max"] // 1000))'
}

printf "%-24s %-34s %-34s %s\n" command "longest holds before" "longest holds after" "time"
for command in "HGETALL hash" "HLEN hash" "EXPIRE hash 600" "PERSIST hash" "RENAME hash other" "DEL hash"; do
  "$CHORUS_BIN" node --listen 127.0.0.1:0 --redis 127.0.0.1:0 --log-level warn --name holds \
    >"$scratch/node.out" 2>"$scratch/node.err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q '^ready' "$scratch/node.out" && break; sleep 0.1; done
  listen=$(sed -n 's/.* listen=\([0-9.:]*\).*/\1/p' "$scratch/node.out")
  port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/node.out")
  [ -n "$port" ] || { echo "the node did not become ready" >&2; cat "$scratch/node.err" >&2; exit 1; }
  redis-cli -p "$port" --pipe <"$scratch/load.resp" >/dev/null
  if [ "$command" = "PERSIST hash" ]; then redis-cli -p "$port" EXPIRE hash 600 >/dev/null; fi
  before=$(holds)
  started=$(date +%s%N)
  # shellcheck disable=SC2086 # the command's words
  redis-cli -p "$port" $command >/dev/null
  took=$((($(date +%s%N) - started) / 1000000))
  printf "%-24s %-34s %-34s %d ms\n" "$command" "$before" "$(holds)" "$took"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
