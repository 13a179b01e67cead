#!/usr/bin/env bash
# chorus's Redis door next to redis-server, measured with Redis's own tool.
#
#   tests/redis_benchmark.sh [N]        (default N = 100000 requests per test; ROUNDS=2)
#   KEYS=100000 tests/redis_benchmark.sh  (random keys among that many: redis-benchmark -r;
#                                          without it every SET and GET hits one key)
#   DETAIL=1 tests/redis_benchmark.sh     (also each server process's CPU ticks, of them in
#                                          the kernel, and how often redis-benchmark slept and
#                                          woke, on stderr)
#   PIN=1 tests/redis_benchmark.sh        (redis-benchmark on CPU 0, every server on the other
#                                          CPUs, with taskset: less noise than the scheduler's
#                                          placement; needs 2 CPUs or more)
#   TTL=3600 tests/redis_benchmark.sh     (every SET gives its key that expiry, as a session
#                                          or cache store does: SET key <64 bytes> EX 3600)
#   TLS=1 tests/redis_benchmark.sh        (Redis's replicas replicate over TLS, as chorus's nodes
#                                          always do over QUIC; clients stay on plain TCP for
#                                          both; certificates made with openssl)
#
# For each shape, redis-benchmark -t set and -t get with 50 clients and 64-byte values (and again
# pipelined with -P 16) run against redis-server and against a chorus node's Redis port, in
# alternating rounds of one run. It prints ops/s and the servers' CPU time per request (user +
# system, from /proc, summed over every server process of the shape), each side by side with the
# ratio chorus/redis (ops/s: above 1 is chorus faster; CPU: below 1 is chorus cheaper), and
# at the end each test's median ratios over the rounds, with their range.
#
# Shapes: one node against one redis-server; three chorus nodes (every write replicated to all)
# against a Redis primary with two replicas (replicaof). Installs redis-server and redis-tools
# from Debian's packages when missing. Not run by .ci/run: timings on a shared machine are
# measurements, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-100000}"
rounds="${ROUNDS:-2}"

source tests/redis_tools.sh
source tests/node_tools.sh
ensure_redis_tools
chorus=$(chorus_release_bin)
scratch=$(mktemp -d)
pids=()
cleanup() { end_processes -TERM "${pids[@]}"; rm -rf "$scratch"; }
trap cleanup EXIT

# Starts redis-server on a free port (a replica of $1 when given: the primary's replication
# port, which with TLS=1 is its TLS port); sets $port, $replication_port and $pid. A port taken
# meanwhile (by a node's own port 0) makes it try another.
start_redis() {
  for _ in 1 2 3; do
    port=$(free_port); replication_port=$port
    local args=(--port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$scratch" --logfile "$scratch/redis-$port.log")
    if [ "${TLS:-}" = 1 ]; then
      until [ "$replication_port" != "$port" ]; do replication_port=$(free_port); done
      args+=(--tls-port "$replication_port" --tls-replication yes --tls-cert-file "$scratch/tls.crt"
        --tls-key-file "$scratch/tls.key" --tls-ca-cert-file "$scratch/ca.crt")
    fi
    [ -n "${1:-}" ] && args+=(--replicaof 127.0.0.1 "$1")
    "${pin_server[@]}" redis-server "${args[@]}" &
    pid=$!; pids+=("$pid")
    # Its own process answering, not another server on that port.
    for _ in $(seq 1 100); do
      redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid" && return
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
  done
  echo "redis-server did not start (last try: port $port); its log:" >&2
  tail -n 5 "$scratch/redis-$port.log" >&2 2>/dev/null || true
  exit 1
}

# Starts a chorus node serving Redis (joining $1 when given); sets $port, $pid and $listen.
start_chorus() {
  local name="n$RANDOM" args=(node --listen 127.0.0.1:0 --redis 127.0.0.1:0 --log-level warn)
  [ -n "${1:-}" ] && args+=(--join "$1")
  "${pin_server[@]}" "$chorus" "${args[@]}" --name "$name" >"$scratch/$name.out" 2>"$scratch/$name.err" &
  pid=$!; pids+=("$pid")
  for _ in $(seq 1 300); do
    if grep -q '^ready' "$scratch/$name.out"; then
      listen=$(sed -n 's/.* listen=\([^ ]*\).*/\1/p' "$scratch/$name.out")
      port=$(sed -n 's/.* redis=127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/$name.out")
      return
    fi
    sleep 0.1
  done
  echo "chorus node did not become ready" >&2; cat "$scratch/$name.err" >&2; exit 1
}

ticks() { local sum=0; for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$sum"; }
# A process's system CPU ticks (of the user + system that `ticks` sums).
system_ticks() { awk '{print $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
pin_bench=(); pin_server=()
if [ "${PIN:-}" = 1 ]; then
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "PIN=1 needs 2 CPUs or more" >&2; exit 1; }
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  taskset -c 0 true || { echo "PIN=1: this process may not run on CPU 0" >&2; exit 1; }
  pin_bench=(taskset -c 0); pin_server=(taskset -c "1-$((cpus - 1))")
fi
if [ "${TLS:-}" = 1 ]; then
  command -v openssl >/dev/null || { echo "TLS=1 needs openssl" >&2; exit 1; }
  # One certificate for every Redis server, signed by a CA of this run (replicas check it).
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ca \
      -addext basicConstraints=critical,CA:TRUE -keyout "$scratch/ca.key" -out "$scratch/ca.crt" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout "$scratch/tls.key" -out "$scratch/tls.csr" &&
    openssl x509 -req -in "$scratch/tls.csr" -CA "$scratch/ca.crt" -CAkey "$scratch/ca.key" \
      -CAcreateserial -days 1 -out "$scratch/tls.crt"
  } 2>"$scratch/openssl.err" || { echo "TLS=1: openssl could not make the certificates:" >&2; cat "$scratch/openssl.err" >&2; exit 1; }
fi
if [ "${DETAIL:-}" = 1 ] && ! command -v python3 >/dev/null; then
  echo "DETAIL=1 needs python3 (it reads the benchmark's context switches)" >&2; exit 1
fi
keyspace=()
if [ -n "${KEYS:-}" ]; then keyspace=(-r "$KEYS"); fi
check_ttl

# Runs one test against $1 (port) with extra flags; prints "ops_per_s cpu_us_per_request",
# the CPU summed over the pids that follow. With DETAIL=1, also each process's CPU ticks and
# how many of them were in the kernel (first the node or primary the benchmark talks to; $SERVER
# names the server), and how often redis-benchmark slept (blocked waiting for replies: its
# voluntary context switches), on stderr.
measure() {
  local port=$1 test=$2 pipeline=$3; shift 3
  local before=() after=() system=() rps p sum=0 each="" bench=()
  redis_test_args "$test"
  bench=("${pin_bench[@]}" redis-benchmark -p "$port" -c 50 -n "$requests" -d 64 -P "$pipeline" "${keyspace[@]}" --csv -q "${test_args[@]}")
  # With DETAIL=1 the benchmark runs under Python, which reads its context switches.
  [ "${DETAIL:-}" = 1 ] && bench=(python3 -c 'import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_nvcsw}\n")
sys.exit(code)' "$scratch/switches" "${bench[@]}")
  rm -f "$scratch/switches"
  for p in "$@"; do before+=("$(ticks "$p")"); system+=("$(system_ticks "$p")"); done
  rps=$("${bench[@]}" 2>/dev/null | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }')
  for p in "$@"; do after+=("$(ticks "$p")"); done
  local pids=("$@")
  for p in "${!after[@]}"; do
    sum=$((sum + after[p] - before[p]))
    each="$each $((after[p] - before[p])) ($(($(system_ticks "${pids[p]}") - system[p])) system)"
  done
  if [ "${DETAIL:-}" = 1 ]; then
    echo "    ${SERVER:-} $test -P $pipeline on port $port: CPU ticks per process:$each;" \
      "redis-benchmark slept $(awk -v n="$requests" '{ printf "%.1f", $1 * 1000 / n }' "$scratch/switches") times per 1,000 requests" >&2
  fi
  awk -v rps="$rps" -v t="$sum" -v hz="$hz" -v n="$requests" \
    'BEGIN { printf "%.0f %.2f\n", rps, t / hz * 1e6 / n }'
}

report() {
  local shape=$1 test=$2 pipeline=$3 redis=$4 chorus=$5
  read -r r_ops r_cpu <<<"$redis"; read -r c_ops c_cpu <<<"$chorus"
  awk -v s="$shape" -v t="$test -P $pipeline" -v ro="$r_ops" -v rc="$r_cpu" -v co="$c_ops" -v cc="$c_cpu" 'BEGIN {
    printf "%-8s %-10s %12.0f %12.0f %6.2f   %10.2f %10.2f %6.2f\n", s, t, ro, co, co / ro, rc, cc, (rc > 0 ? cc / rc : 0) }'
}

start_redis; redis1=$port; redis1_pid=$pid
start_chorus; chorus1=$port; chorus1_pid=$pid
start_redis; primary=$port; primary_replication=$replication_port; primary_pids=("$pid")
start_redis "$primary_replication"; primary_pids+=("$pid")
start_redis "$primary_replication"; primary_pids+=("$pid")
start_chorus; seed=$listen; cluster=$port; cluster_pids=("$pid")
start_chorus "$seed"; cluster_pids+=("$pid")
start_chorus "$seed"; cluster_pids+=("$pid")
wait_replicas_online "$primary" 2
sleep 2  # the cluster forms

printf "%-8s %-10s %12s %12s %6s   %10s %10s %6s\n" shape test "redis ops/s" "chorus ops/s" ratio "redis us" "chorus us" ratio
rows="$scratch/rows"
for round in $(seq 1 "$rounds"); do
  for pipeline in 1 16; do
    for test in set get; do
      report "1 node" "$test" "$pipeline" "$(SERVER=redis measure "$redis1" "$test" "$pipeline" "$redis1_pid")" \
        "$(SERVER=chorus measure "$chorus1" "$test" "$pipeline" "$chorus1_pid")" | tee -a "$rows"
      report "3 nodes" "$test" "$pipeline" "$(SERVER=redis measure "$primary" "$test" "$pipeline" "${primary_pids[@]}")" \
        "$(SERVER=chorus measure "$cluster" "$test" "$pipeline" "${cluster_pids[@]}")" | tee -a "$rows"
    done
  done
done
echo "(round $rounds of $rounds; us = server CPU microseconds per request, all server processes of the shape)"
# The median of each test's ratios over the rounds, and their range.
echo
printf "%-8s %-10s %22s   %22s\n" shape test "ops ratio: median (range)" "CPU ratio: median (range)"
sort -s -k1,2 -k3,5 "$rows" | awk '
  function show(   n, i, j, t) {
    n = count
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
      if (ops[j] < ops[i]) { t = ops[i]; ops[i] = ops[j]; ops[j] = t }
      if (cpu[j] < cpu[i]) { t = cpu[i]; cpu[i] = cpu[j]; cpu[j] = t }
    }
    printf "%-8s %-10s %8.2f (%.2f-%.2f)   %8.2f (%.2f-%.2f)\n", shape, test,
      (n % 2 ? ops[(n + 1) / 2] : (ops[n / 2] + ops[n / 2 + 1]) / 2), ops[1], ops[n],
      (n % 2 ? cpu[(n + 1) / 2] : (cpu[n / 2] + cpu[n / 2 + 1]) / 2), cpu[1], cpu[n]
  }
  { key = $1 " " $2 " " $3 " " $4 " " $5
    if (key != last && count) show()
    if (key != last) { count = 0; last = key; shape = $1 " " $2; test = $3 " " $4 " " $5 }
    count++; ops[count] = $8; cpu[count] = $11 }
  END { if (count) show() }'
echo "(ratios chorus/redis: ops above 1 is chorus faster; CPU below 1 is chorus cheaper)"
