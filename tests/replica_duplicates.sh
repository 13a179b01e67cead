#!/usr/bin/env bash
# Writes that reach a replica twice (by push and again in an anti-entropy page), on three
# chorus nodes: `redis-benchmark -t set` against node a's Redis port, then each node's
# `updates_applied`, `updates_duplicate` and `updates_ahead` counters (`chorus stats`), the
# messages it dropped on a full queue, and the gossip packets
# each lost on the way (`packets_lost`, counted by the sender: a receive buffer too small, see
# `GOSSIP_RECEIVE_BUFFER`). A measurement, not a test: it prints the counters and asserts nothing.
#
#   bash tests/replica_duplicates.sh          # N=300000 P=16 R=100000 (random keys)
#   R=1 bash tests/replica_duplicates.sh      # one key
#
# Builds the release binary unless CHORUS_BIN names one. Installs redis-tools from Debian's
# packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/redis_tools.sh
ensure_redis_tools
node_bin=$(chorus_release_bin)
scratch=$(mktemp -d)
source tests/node_tools.sh
trap 'stop_nodes; rm -rf "$scratch"' EXIT

a=$(start_node a --redis 127.0.0.1:0 --log-level warn)
b=$(start_node b --join "$a" --log-level warn)
c=$(start_node c --join "$a" --log-level warn)
sleep 2
port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/a.out")
redis-benchmark -p "$port" -t set -n "${N:-300000}" -c 50 -d 64 -P "${P:-16}" -r "${R:-100000}" -q \
  | tr '\r' '\n' | grep 'requests per second' | tail -1
sleep 2
for name in a b c; do
  address=$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$scratch/$name.out" | head -1)
  "$node_bin" stats --node "$address" --json | python3 -c '
import json, sys
stats = json.load(sys.stdin)
print(sys.argv[1], " ".join(f"{k}={stats[k]}" for k in ("updates_applied", "updates_duplicate", "updates_ahead", "keys", "messages_dropped", "packets_lost")))
' "$name"
done
