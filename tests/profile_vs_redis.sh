#!/usr/bin/env bash
# Instructions per request of the Redis door next to redis-server, counted by callgrind
# (valgrind): counts, unlike timings, hardly move on a busy machine, so they show what a change
# to the request path costs. Each server runs under callgrind; its counters are zeroed just
# before `redis-benchmark -t TEST -n N -c 50 -d 64 [-P 16]` and dumped just after, so start-up
# and idle timers are not counted.
#
#   tests/profile_vs_redis.sh                 (N = 20000; TESTS="set get"; PIPELINES="1 16")
#
# Prints per test and pipeline depth: instructions per request for each, and chorus/redis.
# The dumps stay in $OUT (default a temporary directory, printed) for callgrind_annotate.
# Installs valgrind, redis-server and redis-tools from Debian's packages when missing. Not
# run by .ci/run: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${N:-20000}"
tests="${TESTS:-set get}"
pipelines="${PIPELINES:-1 16}"

source tests/redis_tools.sh
ensure_redis_tools
if ! command -v valgrind >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
cargo build --release --locked --bin chorus >&2
out="${OUT:-$(mktemp -d)}"
echo "callgrind dumps in $out" >&2
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

# Starts $1 (chorus|redis) under callgrind on a free port; sets pid and port.
start() {
  port=$(free_port)
  case $1 in
    chorus)
      valgrind --tool=callgrind --callgrind-out-file="$out/$1.%p" target/release/chorus node \
        --listen 127.0.0.1:0 --redis "127.0.0.1:$port" --log-level warn >/dev/null 2>"$out/$1.log" & ;;
    redis)
      valgrind --tool=callgrind --callgrind-out-file="$out/$1.%p" redis-server --bind 127.0.0.1 \
        --port "$port" --save '' --appendonly no --logfile "" >/dev/null 2>"$out/$1.log" & ;;
  esac
  pid=$!
  for _ in $(seq 1 600); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  echo "$1 did not start under valgrind" >&2; exit 1
}

# Instructions the server ran for one benchmark: zeroed, run, dumped, summed over its dumps.
count() { # test pipeline
  callgrind_control -z "$pid" >/dev/null
  redis-benchmark -p "$port" -t "$1" -n "$requests" -c 50 -d 64 -P "$2" -q >/dev/null
  rm -f "$out"/*."$pid".*[0-9] 2>/dev/null || true
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  cat "$out"/*."$pid".[0-9]* 2>/dev/null | awk '/^summary:/ { total += $2 } END { print total }'
  rm -f "$out"/*."$pid".[0-9]*
}

declare -A figure
for server in chorus redis; do
  start "$server"
  for test in $tests; do
    for pipeline in $pipelines; do
      figure[$server,$test,$pipeline]=$(count "$test" "$pipeline")
    done
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

printf '%-5s %-3s %15s %15s %13s\n' test -P chorus_instr/req redis_instr/req chorus/redis
for test in $tests; do
  for pipeline in $pipelines; do
    c=${figure[chorus,$test,$pipeline]} r=${figure[redis,$test,$pipeline]}
    awk -v t="$test" -v p="$pipeline" -v c="$c" -v r="$r" -v n="$requests" \
      'BEGIN { printf "%-5s %-3s %15.0f %15.0f %13.2f\n", t, p, c / n, r / n, c / r }'
  done
done
