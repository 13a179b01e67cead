#!/usr/bin/env bash
# Where a chorus node's CPU goes under redis-benchmark, by `perf record`: one node, or three
# joined nodes with the benchmark against the first (SHAPE=3). Prints the requests per second,
# each recorded node's CPU ticks (/proc, 100 per second) over the benchmark, and its hottest
# symbols. A measurement, not a test; not run by .ci/run.
#
#   tests/perf_top.sh                     (SHAPE=1, T=set, P=16, N=300000, KEYS=100000)
#   SHAPE=3 KEYS= tests/perf_top.sh       (three nodes, one key)
#   TTL=3600 SHAPE=3 tests/perf_top.sh    (every SET gives its key that expiry, as a session store
#                                          does: SET key <64 bytes> EX 3600)
#
# Records the first node (and, with SHAPE=3, the second, a replica). CHORUS_BIN names a
# binary built elsewhere. Installs redis-tools and perf (linux-perf) from Debian's packages
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/redis_tools.sh
ensure_redis_tools
ensure_perf
node_bin=$(chorus_release_bin)
shape="${SHAPE:-1}" test="${T:-set}" pipeline="${P:-16}" requests="${N:-300000}"
keyspace=(); if [ -n "${KEYS-100000}" ]; then keyspace=(-r "${KEYS-100000}"); fi
check_ttl
redis_test_args "$test"
scratch=$(mktemp -d)
source tests/node_tools.sh
recorders=()
trap 'end_processes -INT "${recorders[@]}"; stop_nodes; rm -rf "$scratch"' EXIT

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
names=(a)
if [ "$shape" = 3 ]; then
  start_node b --join "$a" --log-level warn >/dev/null
  start_node c --join "$a" --log-level warn >/dev/null
  names=(a b)
  sleep 2
fi
port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
bench() { redis-benchmark -p "$port" -c 50 -d 64 -P "$pipeline" "${keyspace[@]}" -q "$@" "${test_args[@]}"; }
bench -n 50000 >/dev/null   # warm up: the store holds the keyspace before recording
ticks() { awk '{print $14 + $15}' "/proc/$(cat "$scratch/$1.pid")/stat"; }
declare -A before
for name in "${names[@]}"; do
  perf record -F 2999 -g -p "$(cat "$scratch/$name.pid")" -o "$scratch/$name.perf" 2>/dev/null &
  recorders+=($!)
  before[$name]=$(ticks "$name")
done
sleep 0.5
bench -n "$requests" | tr '\r' '\n' | grep 'per second' | tail -1
for name in "${names[@]}"; do
  echo "node $name: $(( $(ticks "$name") - ${before[$name]} )) CPU ticks for $requests requests"
done
for p in "${recorders[@]}"; do kill -INT "$p"; wait "$p" 2>/dev/null || true; done
recorders=()
for name in "${names[@]}"; do
  echo "== node $name: hottest symbols"
  perf report -i "$scratch/$name.perf" --no-children --sort sym --stdio 2>/dev/null \
    | grep -v '^#' | grep '%' | grep -v '^ *[|-]' | head -"${TOP:-15}" || true  # head closes the pipe
done
