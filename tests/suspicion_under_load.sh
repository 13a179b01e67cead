#!/usr/bin/env bash
# Whether a node on its one thread stays alive to its peers while that thread is kept busy:
# three joined nodes a, b and c (a with a Redis port), then three loads on a, one after the
# other, each for about DURATION seconds (default 20):
#   saturate  redis-benchmark SET -P 64 with 1 KB values on random keys, as fast as a serves them
#   long      DBSIZE and SCAN 0 COUNT 1000000 in a loop, once KEYS more keys (default 1,000,000)
#             are loaded into a
#   join      a fourth node d joins a, pulling every key (a serves the catch-up)
# Throughout, `chorus stats` is read from every node about every 0.2 s. For each load the script
# prints, per node, the most members it saw suspect and dead in any reading and in how many
# readings it saw any (a healthy cluster: none), a's longest lock holds, and the round trip of
# PINGs to a's Redis port meanwhile (`redis-cli --latency-history`: longest and mean, in ms).
# Then, for reference, the PINGs to a Redis primary with two replicas (`replicaof`) under the
# same saturating load.
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
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || ensure_redis_tools
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
printf '%s %s\n' a "$a" b "$b" c "$c" >"$scratch/nodes"
for _ in $(seq 1 100); do
  [ "$("$node_bin" stats --node "$c" --json | sed -n 's/.*"members_alive":\([0-9]*\).*/\1/p')" = 3 ] && break
  sleep 0.1
done

field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# Reads the stats of every node in $scratch/nodes until $scratch/stop appears; one line per
# reading to $scratch/$name: the members it counts suspect, and dead.
# A reading that counts any also lists, in $scratch/$name.who, the members the node does not
# see alive.
sample() {
  local name node line
  while [ ! -e "$scratch/stop" ]; do
    while read -r name node; do
      line=$("$node_bin" stats --node "$node" --json --connect-timeout 2s 2>/dev/null \
        | awk '{ s = $0; d = $0; sub(/.*"members_suspect":/, "", s); sub(/[,}].*/, "", s);
          sub(/.*"members_dead":/, "", d); sub(/[,}].*/, "", d); print s, d }') || continue
      [ -n "$line" ] || continue
      echo "$line" >>"$scratch/$name"
      if [ "$line" != "0 0" ]; then
        "$node_bin" members --node "$node" --connect-timeout 2s 2>/dev/null \
          | awk -v n="$name" '$NF != "alive" { print "  " n " sees " $1 " " $NF }' >>"$scratch/$name.who" || true
      fi
    done <"$scratch/nodes"
    sleep 0.2
  done
}

# What the PING probe saw (its lines, one a second: min, max and mean ms, and the number of
# PINGs), as "PINGs to $1: ...".
pings() {
  awk -v to="$1" '{ if ($2 > max) max = $2; sum += $3 * $4; n += $4 }
    END { printf "PINGs to %s: %d, longest %d ms, mean %.2f ms\n", to, n, max, n ? sum / n : 0 }' \
    "$scratch/latency"
}

# Runs load $1 (a function) with the sampler and a PING round trip probe beside it; prints
# what they saw.
measure() {
  local load=$1 name sampler probe
  rm -f "$scratch/stop" "$scratch"/[abcd] "$scratch"/[abcd].who
  "$node_bin" stats --node "$a" --json >"$scratch/before.json"
  sample &
  sampler=$!
  redis-cli -p "$port" --latency-history -i 1 >"$scratch/latency" 2>&1 &
  probe=$!
  helpers=("$sampler" "$probe")
  "$load"
  kill "$probe" 2>/dev/null || true
  touch "$scratch/stop"
  wait "$sampler" 2>/dev/null || true
  wait "$probe" 2>/dev/null || true
  helpers=()
  echo "== $load"
  for name in a b c d; do
    [ -s "$scratch/$name" ] || continue
    awk -v n="$name" '{ if ($1 > s) s = $1; if ($2 > d) d = $2; if ($1 + $2 > 0) bad++; all++ }
      END { printf "node %s: %d readings, most suspect %d, most dead %d, readings with any %d\n", n, all, s, d, bad + 0 }' "$scratch/$name"
    [ -s "$scratch/$name.who" ] && sort "$scratch/$name.who" | uniq -c
  done
  local after
  after=$("$node_bin" stats --node "$a" --json)
  echo "a's longest lock holds (ms): read $(field lock_read_hold_ns_max <<<"$after" | awk '{printf "%.1f", $1/1e6}')," \
    "write $(field lock_write_hold_ns_max <<<"$after" | awk '{printf "%.1f", $1/1e6}')," \
    "gossip $(field lock_gossip_hold_ns_max <<<"$after" | awk '{printf "%.1f", $1/1e6}')"
  pings a
}

saturate() {
  timeout "$duration" redis-benchmark -p "$port" -t set -c 50 -P 64 -d 1024 -r 1000000 -n 100000000 -q \
    >/dev/null 2>&1 || true
}

long() {
  local end=$((SECONDS + duration))
  while [ "$SECONDS" -lt "$end" ]; do
    redis-cli -p "$port" dbsize >/dev/null
    redis-cli -p "$port" scan 0 count 1000000 >/dev/null
  done
}

join() {
  local d end=$((SECONDS + duration * 3))
  d=$(start_node d --join "$a" --log-level warn)
  echo "d $d" >>"$scratch/nodes"
  while [ "$SECONDS" -lt "$end" ]; do
    [ "$(keys_of "$d")" -ge "$(keys_of "$a")" ] && break
    sleep 0.5
  done
  echo "d holds $(keys_of "$d") of a's $(keys_of "$a") keys" >&2
}

measure saturate
echo "loading $keys keys into a" >&2
awk -v keys="$keys" 'BEGIN { for (n = 0; n < keys; n++) {
  key = "key:" n; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n0123456789abcdef\r\n", length(key), key } }' \
  | redis-cli -p "$port" --pipe >/dev/null
echo "a holds $(keys_of "$a") keys" >&2
measure long
measure join

# Redis under the saturating load: a primary and two replicas on free ports.
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
redis-cli -p "$port" --latency-history -i 1 >"$scratch/latency" 2>&1 &
helpers=($!)
saturate
end_processes -TERM "${helpers[@]}"
helpers=()
echo "== saturate, Redis primary + 2 replicas"
pings "the primary"
