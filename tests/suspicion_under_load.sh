#!/usr/bin/env bash
# Whether a node on its one thread stays alive to its peers while that thread is kept busy:
# three joined nodes a, b and c (a with a Redis port), then three loads on a, one after the
# other:
#   saturate  redis-benchmark SET -P 64 with 1 KB values on random keys, as fast as a serves them,
#             for DURATION seconds (default 20)
#   long      DBSIZE and SCAN 0 COUNT 1000000 in a loop for DURATION seconds, once KEYS more keys
#             (default 1,000,000) are loaded into a
#   join      a fourth node d joins a and pulls every key (until it holds them all, at most
#             3 x DURATION seconds)
# Throughout, `chorus stats` is read from every node in turn, then 0.2 s of rest, and so on.
# For each load the script prints, per node, the readings taken, the most members it saw
# suspect and dead in any reading and in how many readings it saw any (a healthy cluster:
# none), with the names of the members seen so; a's longest lock holds if the load made them
# longer than any before (`chorus stats` keeps the longest since the node started); and the
# PINGs to a's Redis port meanwhile (`redis-cli --latency-history`: mean and longest). The
# saturating load also prints the SETs per second it reached. The nodes are then stopped and
# the saturating load runs against a Redis primary with two replicas (`replicaof`), with the
# same PING probe, for reference.
#
#   tests/suspicion_under_load.sh              CHORUS_BIN=path measures a binary already built
#   DURATION=30 KEYS=200000 tests/suspicion_under_load.sh
#
# A measurement, not a test: timings on a shared machine. Not run by .ci/run. Installs
# redis-server and redis-tools from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-20}" keys="${KEYS:-1000000}"
source tests/redis_tools.sh
source tests/node_tools.sh
ensure_redis_tools
node_bin=$(chorus_release_bin)
scratch=$(mktemp -d)
helpers=()
servers=()
cleanup() {
  end_processes -TERM ${helpers[@]+"${helpers[@]}"} ${servers[@]+"${servers[@]}"}
  stop_nodes
  rm -rf "$scratch"
}
trap cleanup EXIT

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
b=$(start_node b --join "$a" --log-level warn)
c=$(start_node c --join "$a" --log-level warn)
port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
[ -n "$port" ] || { echo "node a printed no Redis port" >&2; exit 1; }
printf '%s %s\n' a "$a" b "$b" c "$c" >"$scratch/nodes"

# Whether every node counts three alive members.
formed() {
  local node
  for node in "$a" "$b" "$c"; do
    [ "$("$node_bin" stats --node "$node" --json | stats_field members_alive)" = 3 ] || return 1
  done
}
for _ in $(seq 1 100); do formed && break; sleep 0.1; done
formed || { echo "the three nodes did not see each other alive within 10 s" >&2; exit 1; }

# Reads the stats of every node in $scratch/nodes until $scratch/stop appears; one line per
# reading to $scratch/$name: the members it counts suspect, and dead.
# A reading that counts any also lists, in $scratch/$name.who, the members the node does not
# see alive.
sample() {
  local name node stats line
  while [ ! -e "$scratch/stop" ]; do
    while read -r name node; do
      stats=$("$node_bin" stats --node "$node" --json --connect-timeout 2s 2>/dev/null) || continue
      line="$(stats_field members_suspect <<<"$stats") $(stats_field members_dead <<<"$stats")"
      echo "$line" >>"$scratch/$name"
      if [ "$line" != "0 0" ]; then
        "$node_bin" members --node "$node" --connect-timeout 2s 2>/dev/null \
          | awk -v n="$name" '$NF != "alive" { print "  " n " sees " $1 " " $NF }' >>"$scratch/$name.who" || true
      fi
    done <"$scratch/nodes"
    sleep 0.2
  done
}

# a's longest hold of purpose $1 in ms, if stats $3 (after a load) have it longer than stats
# $2 (before it); otherwise says the load made none longer.
longest() {
  local before after
  before=$(stats_field "lock_$1_hold_ns_max" <<<"$2")
  after=$(stats_field "lock_$1_hold_ns_max" <<<"$3")
  if [ "${after:-0}" -gt "${before:-0}" ]; then
    echo "$1 $(ms_of_ns "$after")"
  else
    echo "$1 none longer than before"
  fi
}

# Runs load $1 (a function) with the sampler and a PING probe beside it; prints what they saw.
measure() {
  local load=$1 name sampler before after
  rm -f "$scratch/stop" "$scratch"/[abcd] "$scratch"/[abcd].who
  before=$("$node_bin" stats --node "$a" --json)
  sample &
  sampler=$!
  start_latency_probe "$port" "$scratch/latency"
  helpers=("$sampler" "$latency_probe")
  echo "== $load"
  "$load"
  touch "$scratch/stop"
  end_processes -TERM "${helpers[@]}"
  helpers=()
  for name in a b c d; do
    [ -s "$scratch/$name" ] || continue
    awk -v n="$name" '{ if ($1 > s) s = $1; if ($2 > d) d = $2; if ($1 + $2 > 0) bad++; all++ }
      END { printf "node %s: %d readings, most suspect %d, most dead %d, readings with any %d\n", n, all, s, d, bad + 0 }' "$scratch/$name"
    if [ -s "$scratch/$name.who" ]; then sort "$scratch/$name.who" | uniq -c; fi
  done
  after=$("$node_bin" stats --node "$a" --json)
  echo "a's longest lock holds in this load (ms): $(longest read "$before" "$after")," \
    "$(longest write "$before" "$after"), $(longest gossip "$before" "$after")"
  echo "to a: $(latency_summary "$scratch/latency")"
}

# Ended by `timeout`, redis-benchmark prints no summary: the last of its progress lines (it
# prints one every quarter second) gives the overall rate.
saturate() {
  timeout "$duration" redis-benchmark -p "$port" -t set -c 50 -P 64 -d 1024 -r 1000000 \
    -n 100000000 -q >"$scratch/bench" 2>&1 || true
  local rate
  rate=$(tr '\r' '\n' <"$scratch/bench" | sed -n 's/.*rps=[0-9.]* (overall: \([0-9.]*\)).*/\1/p' | tail -1)
  [ -n "$rate" ] || { echo "redis-benchmark reached no rate:" >&2; tail -c 300 "$scratch/bench" >&2; exit 1; }
  echo "SETs per second: $rate"
}

long() {
  local end=$((SECONDS + duration))
  while [ "$SECONDS" -lt "$end" ]; do
    redis-cli -p "$port" dbsize >/dev/null
    redis-cli -p "$port" scan 0 count 1000000 >/dev/null
  done
}

join() {
  local d held started=$SECONDS end=$((SECONDS + duration * 3))
  d=$(start_joiner d "$a" --log-level warn)
  echo "d $d" >>"$scratch/nodes"
  while [ "$SECONDS" -lt "$end" ]; do
    held=$(keys_of "$d") || held=0
    [ "${held:-0}" -ge "$(keys_of "$a")" ] && break
    sleep 0.5
  done
  echo "d holds $(keys_of "$d") of a's $(keys_of "$a") keys after about $((SECONDS - started)) s"
}

measure saturate
echo "loading $keys keys into a" >&2
awk -v keys="$keys" 'BEGIN { for (n = 0; n < keys; n++) {
  key = "key:" n; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n0123456789abcdef\r\n", length(key), key } }' \
  | redis-cli -p "$port" --pipe >/dev/null
echo "a holds $(keys_of "$a") keys" >&2
measure long
measure join

# Redis under the saturating load, the nodes stopped: a primary and two replicas on free ports.
stop_nodes
primary=""
for role in primary replica replica; do
  redis_port=$(free_port)
  args=(--port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch")
  [ "$role" = replica ] && args+=(--replicaof 127.0.0.1 "$primary")
  redis-server "${args[@]}" --logfile "$scratch/redis-$redis_port.log" &
  servers+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  [ -n "$primary" ] || primary=$redis_port
done
wait_replicas_online "$primary" 2
port=$primary
start_latency_probe "$port" "$scratch/latency"
helpers=("$latency_probe")
echo "== saturate, Redis primary + 2 replicas"
saturate
end_processes -TERM "${helpers[@]}"
helpers=()
echo "to the primary: $(latency_summary "$scratch/latency")"
