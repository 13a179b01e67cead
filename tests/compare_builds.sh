#!/usr/bin/env bash
# Two chorus builds side by side on the same load, in alternating rounds: three joined nodes,
# or node a alone with NODES=1 (node a takes `redis-benchmark -t set -c 50 -d 64 -r 100000` on
# its Redis port), each round printing the requests per second, each node's CPU ticks (/proc,
# 100 per second; of them the primary's user time) and the primary's context switches (`perf
# stat`). For changes whose effect is smaller than the swings between runs of
# `tests/redis_benchmark.sh`: a build is compared with another under the same conditions,
# minutes apart. A measurement, not a test;
# not run by .ci/run.
#
#   A=old/chorus B=target/release/chorus tests/compare_builds.sh
#   PIN=1 TTL=3600 ROUNDS=6 A=... B=... tests/compare_builds.sh   (servers on CPU 1, the
#                                  benchmark on CPU 0; every SET with EX 3600)
#   P="1 16" N=300000 KEYS=100000 are the defaults; NODES=1 runs node a alone.
#
# Installs redis-tools and perf (linux-perf) from Debian's packages when missing.
set -euo pipefail
: "${A:?A must name the first chorus binary}" "${B:?B must name the second chorus binary}"
A=$(readlink -f "$A") B=$(readlink -f "$B")
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
source tests/redis_tools.sh
ensure_redis_tools
ensure_perf
rounds="${ROUNDS:-4}" requests="${N:-300000}" keyspace="${KEYS:-100000}" nodes="${NODES:-3}"
case "$nodes" in
  1) names=(a) ;;
  3) names=(a b c) ;;
  *) echo "NODES must be 1 or 3, not $nodes" >&2; exit 1 ;;
esac
check_ttl
redis_test_args set
node_prefix=() client=()
if [ -n "${PIN:-}" ]; then node_prefix=(taskset -c 1); client=(taskset -c 0); fi
scratch=$(mktemp -d)
source tests/node_tools.sh
trap 'stop_nodes; rm -rf "$scratch"' EXIT

ticks() { awk '{print $14, $15}' "/proc/$(cat "$scratch/$1.pid")/stat"; }

# One round of build $1 at pipeline depth $2: prints its figures after the line's start.
round() {
  local node_bin=$1 depth=$2 a b c port name
  a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
  if [ "$nodes" = 3 ]; then
    # Each started in a command substitution, as a, so that no node is a job of this shell.
    b=$(start_node b --join "$a" --log-level warn)
    c=$(start_node c --join "$a" --log-level warn)
    sleep 2
  fi
  port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
  bench() { ${client[@]+"${client[@]}"} redis-benchmark -p "$port" -c 50 -d 64 -P "$depth" -r "$keyspace" -q "$@"; }
  bench -n 50000 "${test_args[@]}" >/dev/null   # the keys exist before the round counts
  declare -A before
  for name in "${names[@]}"; do before[$name]=$(ticks "$name"); done
  perf stat -e context-switches -p "$(cat "$scratch/a.pid")" -o "$scratch/switches" &
  local recorder=$!
  local ops
  ops=$(bench -n "$requests" "${test_args[@]}" | tr '\r' '\n' | grep 'per second' | tail -1 \
    | sed 's/.* \([0-9.]*\) requests per second.*/\1/')
  if [ -z "$ops" ]; then echo "redis-benchmark gave no result" >&2; exit 1; fi
  kill -INT "$recorder"; wait "$recorder" || true
  local line="P=$depth ops/s=$ops ticks:" user=0
  for name in "${names[@]}"; do
    read -r u0 s0 <<<"${before[$name]}"; read -r u1 s1 < <(ticks "$name")
    line+=" $name=$(( u1 + s1 - u0 - s0 ))"
    if [ "$name" = a ]; then user=$(( u1 - u0 )); fi
  done
  echo "$line (a's user $user) a's switches=$(awk '/context-switches/{print $1}' "$scratch/switches")"
  stop_nodes
}

for depth in ${P:-1 16}; do
  for r in $(seq "$rounds"); do
    for build in A B; do
      echo -n "round $r build $build "
      round "${!build}" "$depth"   # not in $(...), where a failure would not stop the script
    done
  done
done
