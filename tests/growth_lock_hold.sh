#!/usr/bin/env bash
# The longest hold of a node's lock while its store grows: one node, loaded through its Redis
# port by `redis-cli --pipe` with STEP new keys at a time (default 100,000; `SET key:N <16
# bytes>`), up to KEYS keys (default 1,200,000); after each step prints the keys held and the
# longest write hold so far (`chorus stats`: lock_write_hold_ns_max), in ms. A structure that
# grows in one step (a hash table rehashing every key) shows as a jump at its sizes. With
# JOIN=1 a second node then joins and pulls every key: prints how long it took, the first
# node's longest gossip hold (serving the catch-up; nothing else takes that lock purpose on a
# lone node) and the PINGs to its Redis port meanwhile (`redis-cli --latency-history`: mean and
# longest).
#
#   tests/growth_lock_hold.sh                 CHORUS_BIN=path measures a binary already built
#   KEYS=3000000 STEP=500000 tests/growth_lock_hold.sh
#   KEYS=2000000 STEP=2000000 JOIN=1 tests/growth_lock_hold.sh
#
# A measurement, not a test: not run by .ci/run. Installs redis-tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${KEYS:-1200000}" step="${STEP:-100000}"
[ "$step" -gt 0 ] || { echo "STEP must be above 0" >&2; exit 1; }
source tests/redis_tools.sh
source tests/node_tools.sh
command -v redis-cli >/dev/null || ensure_redis_tools
node_bin=$(chorus_release_bin)
scratch=$(mktemp -d)
latency_probe=""
cleanup() {
  if [ -n "$latency_probe" ]; then end_processes -TERM "$latency_probe"; fi
  stop_nodes
  rm -rf "$scratch"
}
trap cleanup EXIT

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
for ((start = 0; start < keys; start += step)); do
  awk -v from="$start" -v to="$((start + step < keys ? start + step : keys))" 'BEGIN {
    for (n = from; n < to; n++) {
      key = "key:" n
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n0123456789abcdef\r\n", length(key), key
    } }' >"$scratch/step.resp"
  redis-cli -p "$port" --pipe <"$scratch/step.resp" >/dev/null
  stats=$("$node_bin" stats --node "$a" --json)
  echo "keys $(stats_field keys <<<"$stats"):" \
    "longest write hold $(ms_of_ns "$(stats_field lock_write_hold_ns_max <<<"$stats")") ms"
done

[ "${JOIN:-}" = 1 ] || exit 0
start_latency_probe "$port" "$scratch/latency"
held=$(keys_of "$a") started=$(date +%s%N)
b=$(start_joiner b "$a" --log-level warn)
for _ in $(seq 1 1200); do
  now=$(keys_of "$b") || now=0
  [ "${now:-0}" -ge "$held" ] && break
  sleep 0.25
done
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
end_processes -TERM "$latency_probe"
latency_probe=""
gossip_ns=$("$node_bin" stats --node "$a" --json | stats_field lock_gossip_hold_ns_max)
echo "joining node holds $(keys_of "$b") of $held keys $took_ms ms after it was started;" \
  "longest gossip hold on the first $(ms_of_ns "$gossip_ns") ms"
echo "to the first node meanwhile: $(latency_summary "$scratch/latency")"
