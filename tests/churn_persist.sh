#!/usr/bin/env bash
# Does session churn grow a data directory's file? Rounds of: N sets of new keys, FLUSHDB
# (every key deleted), wait until the tombstones are collected; the file's size after each
# round. Then N keys are left in place and the node is killed with kill -9 and restarted, and
# the time to its ready line is printed (the replica read back from disk).
#
#   tests/churn_persist.sh [N] [ROUNDS]      (default 50000 keys, 5 rounds)
#
# One node alone (collection needs no peer), tombstones kept 1 s once stable
# (CHORUS_TEST_TOMBSTONE_GRACE_MS). Not run by .ci/run: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${1:-50000}"
rounds="${2:-5}"

source tests/redis_tools.sh
ensure_redis_tools

cargo build --release --locked --bin chorus >&2
chorus="${CARGO_TARGET_DIR:-target}/release/chorus"
dir="$(mktemp -d "${TMPDIR:-/tmp}/chorus-churn.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

start() {
  port=$(free_port)
  CHORUS_TEST_TOMBSTONE_GRACE_MS=1000 "$chorus" node --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/out" 2>"$dir/err" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q '^ready ' "$dir/out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no ready line" >&2
  return 1
}

tombstones() {
  "$chorus" stats --json --node "$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$dir/out")" \
    | sed -E 's/.*"tombstones":([0-9]+).*/\1/'
}

size_kib() { echo $(( $(stat -c %s "$dir/data/chorus.redb") / 1024 )); }

start
echo "keys per round: $keys, value 16 bytes"
for round in $(seq 1 "$rounds"); do
  redis-benchmark -h 127.0.0.1 -p "$port" -t set -c 50 -n "$keys" -d 16 -r 1000000000 -q \
    >/dev/null
  written=$(size_kib)
  redis-cli -h 127.0.0.1 -p "$port" flushdb >/dev/null
  for _ in $(seq 1 300); do
    [ "$(tombstones)" = "0" ] && break
    sleep 0.2
  done
  echo "round $round: file after sets ${written} KiB, after collection $(size_kib) KiB (tombstones $(tombstones))"
done
redis-benchmark -h 127.0.0.1 -p "$port" -t set -c 50 -n "$keys" -d 16 -r 1000000000 -q >/dev/null
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
began=$(date +%s%N)
start
ended=$(date +%s%N)
entries=$(sed -n 's/.*entries=\([0-9]*\).*/\1/p' "$dir/err" | head -1)
echo "restart after kill -9: ${entries:-?} entries, file $(size_kib) KiB, ready in $(( (ended - began) / 1000000 )) ms"
