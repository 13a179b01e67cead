#!/usr/bin/env bash
# The CPU a server spends on redis-benchmark's requests, counted by `perf stat` (task-clock of
# every thread of the server process) rather than from /proc's 10 ms ticks: a pipelined run of
# 400,000 requests takes well under a second of CPU, which ticks measure to a tenth at best.
#
#   tests/cpu_vs_redis.sh                      (ROUNDS=3, N=400000, TESTS="set get", PIPELINES="1 16")
#   CHORUS_BIN=a CHORUS_BIN2=b tests/cpu_vs_redis.sh    (two chorus binaries, alternating)
#
# Each round runs, per test and pipeline depth, a fresh chorus node (and, when CHORUS_BIN2 is
# given, a fresh node of the second binary) and a fresh redis-server, one after another, with
# `redis-benchmark -c 50 -d 64`; it prints the milliseconds of CPU each spent. Installs
# redis-server, redis-tools and perf (linux-perf) from Debian's packages when missing. Not run
# by .ci/run: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${N:-400000}"
rounds="${ROUNDS:-3}"
tests="${TESTS:-set get}"
pipelines="${PIPELINES:-1 16}"

source tests/redis_tools.sh
source tests/node_tools.sh
ensure_redis_tools
ensure_perf
if [ -z "${CHORUS_BIN:-}" ]; then
  cargo build --release --locked --bin chorus >&2
  CHORUS_BIN="${CARGO_TARGET_DIR:-target}/release/chorus"
fi
scratch=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then end_processes -TERM "$pid"; fi; rm -rf "$scratch"; }
trap cleanup EXIT

# Starts a server ($1: a chorus binary, or "redis") on a free port; sets pid and port.
start() {
  port=$(free_port)
  if [ "$1" = redis ]; then
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch" --logfile "" >/dev/null &
  else
    "$1" node --listen 127.0.0.1:0 --redis "127.0.0.1:$port" --log-level warn >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return
    sleep 0.05
  done
  echo "$1 did not start" >&2; exit 1
}

# Milliseconds of CPU the server $1 spent on one benchmark.
measure() { # server test pipeline
  start "$1"
  perf stat -e task-clock -x, -p "$pid" -o "$scratch/stat" &
  local perf_pid=$!
  sleep 0.3
  redis-benchmark -p "$port" -t "$2" -n "$requests" -c 50 -d 64 -P "$3" -q >/dev/null
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  awk -F, '/task-clock/ { printf "%.0f", $1 }' "$scratch/stat"
}

servers=("$CHORUS_BIN")
[ -n "${CHORUS_BIN2:-}" ] && servers+=("$CHORUS_BIN2")
servers+=(redis)
printf '%-5s %-3s %-5s' test -P round
for server in "${servers[@]}"; do printf ' %14s' "$(basename "$server")_ms"; done
echo
for round in $(seq 1 "$rounds"); do
  for test in $tests; do
    for pipeline in $pipelines; do
      printf '%-5s %-3s %-5s' "$test" "$pipeline" "$round"
      for server in "${servers[@]}"; do printf ' %14s' "$(measure "$server" "$test" "$pipeline")"; done
      echo
    done
  done
done
echo "(ms of CPU for $requests requests: task-clock of every thread of the server, perf stat)"
