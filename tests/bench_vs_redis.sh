#!/usr/bin/env bash
# chorus next to Redis, same shape: 50 clients, N requests, 3-byte values, 10,000 keys.
#
#   tests/bench_vs_redis.sh [N]          (default N = 100000; ROUNDS=3 repeats the pair)
#
# Runs `redis-benchmark -t set,get` against a redis-server it starts on 127.0.0.1 (a free port,
# no persistence, stopped at exit), then `chorus bench --local 1` (release build) with the same
# shape, and prints each figure side by side with the ratio chorus/redis. For ops/s a ratio
# above 1 means chorus is faster; for latencies a ratio below 1 does. Installs redis-server and
# redis-tools from Debian's packages when they are missing. Not run by .ci/run: timings on a
# shared machine are measurements, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-100000}"
rounds="${ROUNDS:-1}"
clients=50
size=3
keys=10000

source tests/redis_tools.sh
ensure_redis_tools

cargo build --release --locked --bin chorus >&2
chorus=target/release/chorus

port=$(free_port)

redis_pid=""
stop_redis() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap stop_redis EXIT

redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "${TMPDIR:-/tmp}" \
  --daemonize no --logfile "" --loglevel warning >/dev/null &
redis_pid=$!
for _ in $(seq 1 100); do
  redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
redis-cli -h 127.0.0.1 -p "$port" ping | grep -q PONG || { echo "redis did not start" >&2; exit 1; }

# One CSV line of redis-benchmark: "SET","rps","avg","min","p50","p95","p99","max".
redis_field() { # test column
  printf '%s\n' "$redis_csv" | awk -F'","' -v test="\"$1" -v col="$2" \
    '$1 == test { gsub(/"/, "", $col); print $col }'
}

# A number inside the object "test":{...} of chorus's one-line JSON report.
chorus_field() { # test field
  printf '%s\n' "$chorus_json" | sed -E "s/.*\"$1\":\{([^}]*)\}.*/\1/" \
    | sed -E "s/(^|.*,)\"$2\":([-0-9.eE+]+).*/\2/"
}

row() { # name redis chorus
  awk -v name="$1" -v r="$2" -v c="$3" \
    'BEGIN { printf "%-14s %12.3f %12.3f %8.2f\n", name, r, c, (r > 0 ? c / r : 0) }'
}

rows="" # every row of every round, for the medians

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "shape: -c $clients -n $requests -d $size, $keys keys"
for round in $(seq 1 "$rounds"); do
  redis_csv="$(redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c "$clients" -n "$requests" \
    -d "$size" -r "$keys" --csv)"
  chorus_json="$("$chorus" bench --local 1 -t put,get -c "$clients" -n "$requests" \
    -d "$size" -k "$keys" --json)"
  echo
  echo "round $round of $rounds"
  printf '%-14s %12s %12s %8s\n' figure redis chorus ratio
  round_rows="$(
    for pair in "SET put" "GET get"; do
      set -- $pair
      row "$2 ops/s" "$(redis_field "$1" 2)" "$(chorus_field "$2" ops_per_s)"
      row "$2 p50 ms" "$(redis_field "$1" 5)" "$(chorus_field "$2" p50_ms)"
      row "$2 p99 ms" "$(redis_field "$1" 7)" "$(chorus_field "$2" p99_ms)"
      row "$2 max ms" "$(redis_field "$1" 8)" "$(chorus_field "$2" max_ms)"
    done
  )"
  echo "$round_rows"
  rows="$rows$round_rows"$'\n'
done

if [ "$rounds" -gt 1 ]; then
  echo
  echo "median of $rounds rounds"
  printf '%-14s %12s %12s %8s\n' figure redis chorus ratio
  # Each column's median on its own (a column's median need not come from one round).
  printf '%s' "$rows" | awk '
    NF { name = $1; for (i = 2; i <= NF - 3; i++) name = name " " $i
         if (!(name in seen)) { seen[name] = 1; order[++n] = name }
         k = ++count[name]; redis[name, k] = $(NF - 2); chorus[name, k] = $(NF - 1)
         ratio[name, k] = $NF }
    function median(values, k,    i, j, t, a) {
      for (i = 1; i <= k; i++) a[i] = values[i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END {
      for (f = 1; f <= n; f++) {
        name = order[f]; k = count[name]
        for (i = 1; i <= k; i++) { r[i] = redis[name, i]; c[i] = chorus[name, i]; q[i] = ratio[name, i] }
        printf "%-14s %12.3f %12.3f %8.2f\n", name, median(r, k), median(c, k), median(q, k)
      }
    }'
fi
