#!/usr/bin/env bash
# Catch-up at the speed of the network (issue 11): how long a node joining a cluster that holds
# K keys of 1 KB takes to hold all of them, next to a Redis replica's full sync of the same data.
#
#   tests/catchup_vs_redis.sh             (K = 100000, ROUNDS = 3, PEERS = 3)
#
# chorus: PEERS nodes, the first filled with K keys of 1 KB through `chorus bench --fill`, the
# others holding them all; then, ROUNDS times, a new node joins every peer and the time from its
# start to holding K keys is printed (stats polled every 20 ms), after which it is stopped.
# Redis: a redis-server primary holding K keys of 1 KB (DEBUG POPULATE), and ROUNDS times a
# replica started with --replicaof: the time from its start to `master_link_status:up` with K
# keys. Both use this machine's loopback. Not run by .ci/run: timings on a shared machine are
# measurements, not tests. Installs redis-server from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${KEYS:-100000}"
rounds="${ROUNDS:-3}"
peers="${PEERS:-3}"

source tests/redis_tools.sh
ensure_redis_tools
cargo build --release --locked --bin chorus >&2
node_bin=target/release/chorus
scratch=$(mktemp -d)
source tests/node_tools.sh
redis_pids=()
cleanup() {
  stop_nodes
  end_processes -TERM "${redis_pids[@]}"
  rm -rf "$scratch"
}
trap cleanup EXIT

elapsed() { python3 -c "import time; print(f'{time.time() - $1:.2f}')"; }

seeds=()
for i in $(seq 1 "$peers"); do
  join=(); for seed in "${seeds[@]}"; do join+=(--join "$seed"); done
  seeds+=("$(start_node "peer$i" --log-level warn "${join[@]}")")
done
echo "filling $keys keys of 1 KB through ${seeds[0]}" >&2
"$node_bin" bench --node "${seeds[0]}" -t put --fill -k "$keys" -d 1024 -c 50 --json >/dev/null
for seed in "${seeds[@]}"; do
  for _ in $(seq 1 600); do [ "$(keys_of "$seed")" = "$keys" ] && break; sleep 0.1; done
done
join=(); for seed in "${seeds[@]}"; do join+=(--join "$seed"); done
for round in $(seq 1 "$rounds"); do
  started=$(date +%s.%N)
  joiner=$(start_node "joiner$round" --log-level warn "${join[@]}")
  held=0
  for _ in $(seq 1 3000); do
    held=$(keys_of "$joiner"); [ "$held" = "$keys" ] && break; sleep 0.02
  done
  echo "chorus round $round: new node held $held of $keys keys $(elapsed "$started") s after it started ($peers peers)"
  stop_node "joiner$round" KILL
done

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize no --dir "$scratch" \
  --enable-debug-command yes --logfile "" --loglevel warning >/dev/null &
redis_pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
redis-cli -p "$redis_port" debug populate "$keys" key 1024 >/dev/null
for round in $(seq 1 "$rounds"); do
  replica_port=$(free_port)
  started=$(date +%s.%N)
  redis-server --bind 127.0.0.1 --port "$replica_port" --save '' --appendonly no --daemonize no --dir "$scratch" \
    --replicaof 127.0.0.1 "$redis_port" --logfile "" --loglevel warning >/dev/null &
  replica=$!
  redis_pids+=("$replica")
  for _ in $(seq 1 3000); do
    if redis-cli -p "$replica_port" info replication 2>/dev/null | grep -q 'master_link_status:up' \
      && [ "$(redis-cli -p "$replica_port" dbsize)" = "$keys" ]; then break; fi
    sleep 0.02
  done
  echo "redis round $round: replica held $(redis-cli -p "$replica_port" dbsize) of $keys keys $(elapsed "$started") s after it started"
  kill "$replica"; wait "$replica" 2>/dev/null || true
done
