#!/usr/bin/env bash
# Durable write throughput: chorus with --data-dir next to chorus in memory and Redis with an
# append-only file, all driven by the same client (redis-benchmark, SET, no pipelining).
#
#   tests/bench_persist.sh [N]      (default N = 50000 SETs per run; CLIENTS=50, KEYS=100000)
#
# Runs, one after another, each on a fresh port and a fresh directory:
#   chorus memory        chorus node --redis (no --data-dir)
#   chorus always        --data-dir, --fsync always (acknowledged once fsynced; group commit)
#   chorus batch=10ms    --data-dir, --fsync batch=10
#   redis always         redis-server --appendonly yes --appendfsync always
#   redis everysec       redis-server --appendonly yes --appendfsync everysec
# and prints SET ops/s, p50 and p99 latency for each. For every chorus run with a data
# directory it then prints the file's size, and the time a node killed with kill -9 takes to
# restart from that directory and print its ready line (the replica is read back from disk).
# The directories live under BENCH_DIR (default: a new directory in $TMPDIR or /tmp); put it
# on the disk you want to measure (tmpfs makes fsync free). Installs redis-server and
# redis-tools from Debian's packages when missing. Not run by .ci/run: timings on a shared
# machine are measurements, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-50000}"
clients="${CLIENTS:-50}"
keys="${KEYS:-100000}"
size=16

source tests/redis_tools.sh
ensure_redis_tools

cargo build --release --locked --bin chorus >&2
chorus="${CARGO_TARGET_DIR:-target}/release/chorus"
base="${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/chorus-bench-persist.XXXXXX")}"
mkdir -p "$base"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
cleanup() {
  stop_all
  if [ -z "${BENCH_DIR:-}" ]; then rm -rf "$base"; fi
}
trap cleanup EXIT

await_pong() { # port
  for _ in $(seq 1 200); do
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  echo "nothing answers PING on port $1" >&2
  return 1
}

# Starts a chorus node serving Redis on a free port, with extra flags; sets port and pid.
start_chorus() { # log flags...
  local log="$1"
  shift
  port=$(free_port)
  "$chorus" node --listen 127.0.0.1:0 --redis "127.0.0.1:$port" "$@" >"$log.out" 2>"$log.err" &
  pid=$!
  pids+=("$pid")
  await_pong "$port"
}

start_redis() { # appendfsync
  port=$(free_port)
  mkdir -p "$base/redis-$1"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly yes --appendfsync "$1" \
    --dir "$base/redis-$1" --daemonize no --logfile "" --loglevel warning >/dev/null &
  pid=$!
  pids+=("$pid")
  await_pong "$port"
}

# SET ops/s, p50 ms, p99 ms of one redis-benchmark run against $port.
measure() {
  redis-benchmark -h 127.0.0.1 -p "$port" -t set -c "$clients" -n "$requests" -d "$size" \
    -r "$keys" --csv | awk -F'","' '$1 == "\"SET" { print $2, $5, $7 }'
}

row() { # name ops p50 p99
  printf '%-18s %12s %9s %9s\n' "$1" "$2" "$3" "$4"
}

# Kills the node at $pid with kill -9, restarts it on its directory and prints how long it took
# to print its ready line, and the file's size.
restart_time() { # dir
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  local start end
  start=$(date +%s%N)
  "$chorus" node --listen 127.0.0.1:0 --data-dir "$1" >"$1.restart.out" 2>"$1.restart.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do
    grep -q '^ready ' "$1.restart.out" 2>/dev/null && break
    sleep 0.05
  done
  end=$(date +%s%N)
  grep -q '^ready ' "$1.restart.out" || { echo "no ready line after restart" >&2; return 1; }
  local entries
  entries=$(sed -n 's/.*entries=\([0-9]*\).*/\1/p' "$1.restart.err" | head -1)
  printf '%-18s file %6s KiB, %s entries, restart to ready %5d ms\n' "" \
    "$(( $(stat -c %s "$1/chorus.redb") / 1024 ))" "${entries:-?}" "$(( (end - start) / 1000000 ))"
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "disk: $(df -T "$base" | awk 'NR == 2 { print $2, $1 }')"
echo "shape: redis-benchmark -t set -c $clients -n $requests -d $size -r $keys (no pipelining)"
echo
row run "SET ops/s" "p50 ms" "p99 ms"

start_chorus "$base/memory"
row "chorus memory" $(measure)
stop_all

for policy in always batch=10; do
  dir="$base/chorus-$policy"
  start_chorus "$dir" --data-dir "$dir" --fsync "$policy"
  row "chorus $policy" $(measure)
  restart_time "$dir"
  stop_all
done

for policy in always everysec; do
  start_redis "$policy"
  row "redis $policy" $(measure)
  stop_all
done
