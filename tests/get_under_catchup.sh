#!/usr/bin/env bash
# How much a joining node's catch-up slows reads on the node it pulls from: the lock figure of
# issue 10. Node A holds K keys of 1 KB; gets run against A (c clients) once with nothing else
# going on, and once while node B joins A and pulls every key. Prints each run's p50, p99 and
# max get latency, B's catch-up time, and A's lock hold figures.
#
#   tests/get_under_catchup.sh                 (K = 100000)
#   NODE_BIN=/path/to/old/chorus tests/get_under_catchup.sh   (measure another node binary)
#
# The client side (fill, gets) always uses this tree's release binary; NODE_BIN, when given,
# runs the nodes, so an older build can be measured with the same load. Not run by .ci/run:
# timings on a shared machine are measurements, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${KEYS:-100000}"
gets="${GETS:-300000}"
clients="${CLIENTS:-10}"

cargo build --release --locked --bin chorus >&2
cli=target/release/chorus
node_bin="${NODE_BIN:-$cli}"
scratch=$(mktemp -d)
source tests/node_tools.sh
cleanup() { stop_nodes; rm -rf "$scratch"; }
trap cleanup EXIT

a=$(start_node a)
echo "node a at $a; filling $keys keys of 1 KB" >&2
"$cli" bench --node "$a" -t put --fill -k "$keys" -d 1024 -c 50 --json >/dev/null
echo "a holds $(keys_of "$a") keys" >&2

gets_json() { "$cli" bench --node "$a" -t get -k "$keys" -n "$gets" -c "$clients" --json; }
figures() {
  python3 -c '
import json, sys
g = json.load(sys.stdin)["get"]
print("p50_ms=%s p99_ms=%s max_ms=%s ops_per_s=%.0f" % (g["p50_ms"], g["p99_ms"], g["max_ms"], g["ops_per_s"]))'
}

echo "quiet:      $(gets_json | figures)"

gets_json >"$scratch/catchup.json" &
bench_pid=$!
sleep 0.5
joined_at=$(date +%s.%N)
b=$(start_node b --join "$a")
for _ in $(seq 1 600); do
  [ "$(keys_of "$b")" = "$keys" ] && break
  sleep 0.05
done
caught_up=$(python3 -c "import time; print(f'{time.time() - $joined_at:.2f}')")
wait "$bench_pid"
echo "catch-up:   $(figures <"$scratch/catchup.json")"
echo "b held $(keys_of "$b") of $keys keys ${caught_up} s after it started"
echo "a's lock:   $("$node_bin" stats --node "$a" | grep '^lock_.*_max=' | tr '\n' ' ' || echo 'not reported by this build')"
