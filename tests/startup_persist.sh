#!/usr/bin/env bash
# Startup from a large data directory: N keys (default 1,000,000, 16-byte values) written
# through the Redis door under --fsync batch=50, the node killed with kill -9, then restarted on
# its directory; prints the entries restored, the file size, the time to the ready line and
# the RSS before and after.
#
#   tests/startup_persist.sh [N]
#
# Not run by .ci/run: a measurement, not a test. The directory goes under ${TMPDIR:-/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."
keys="${1:-1000000}"
source tests/redis_tools.sh
source tests/node_tools.sh
ensure_redis_tools
cargo build --release --locked --bin chorus >&2
chorus="${CARGO_TARGET_DIR:-target}/release/chorus"
dir=$(mktemp -d "${TMPDIR:-/tmp}/chorus-startup.XXXXXX")
pid=""
trap 'if [ -n "$pid" ]; then end_processes -TERM "$pid"; fi; rm -rf "$dir"' EXIT
port=$(free_port)
$chorus node --listen 127.0.0.1:0 --redis 127.0.0.1:$port --data-dir $dir/data --fsync batch=50 > $dir/out 2> $dir/err &
pid=$!
for _ in $(seq 1 200); do grep -q '^ready' $dir/out 2>/dev/null && break; sleep 0.05; done
redis-benchmark -h 127.0.0.1 -p $port -t set -c 50 -n $keys -d 16 -r 1000000000 -q > /dev/null
sleep 1
echo "rss before kill: $(ps -o rss= -p $pid) KiB"
kill -9 $pid; wait $pid 2>/dev/null || true
began=$(date +%s%N)
$chorus node --listen 127.0.0.1:0 --data-dir $dir/data > $dir/out2 2> $dir/err2 &
pid=$!
for _ in $(seq 1 1200); do grep -q '^ready' $dir/out2 2>/dev/null && break; sleep 0.05; done
ended=$(date +%s%N)
echo "restart: $(sed -n 's/.*entries=\([0-9]*\).*/\1/p' $dir/err2 | head -1) entries, file $(( $(stat -c %s $dir/data/chorus.redb) / 1048576 )) MiB, ready in $(( (ended - began) / 1000000 )) ms, rss $(ps -o rss= -p $pid) KiB"
