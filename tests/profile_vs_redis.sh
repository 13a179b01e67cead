#!/usr/bin/env bash
# Instructions per request of the Redis door next to redis-server, counted by callgrind
# (valgrind): counts, unlike timings, hardly move on a busy machine, so they show what a change
# to the request path costs. Each server runs under callgrind; its counters are zeroed just
# before `redis-benchmark -t TEST -n N -c 50 -d 64 [-P 16]` (with TTL, the SET command of
# `redis_test_args`) and dumped just after, so start-up and idle timers are not counted.
#
#   tests/profile_vs_redis.sh                 (N = 20000; TESTS="set get"; PIPELINES="1 16")
#   SHAPE=3 tests/profile_vs_redis.sh         (three nodes; TESTS="set")
#   KEYS=100000 ... / CHORUS_BIN=path ...     (random keys of that many: redis-benchmark -r;
#                                              a chorus binary built elsewhere, not built here)
#   TTL=3600 ...                              (every SET with that expiry, as in
#                                              tests/redis_benchmark.sh)
#   KEYS=100000 WARM=300000 ...               (that many uncounted SETs first, pipelined -P 16;
#                                              without WARM, 2000 unpipelined: with most keys
#                                              already there, the counted SETs overwrite, the
#                                              steady state of a cache)
#
# Without KEYS every SET writes the one key `key:__rand_int__`. In a cluster, an anti-entropy
# round then claims a whole range of a writer's sequence numbers seen (the writer holds only
# the last write), so pushes still in flight arrive as duplicates and skip the store: a
# replica's work depends on timing. KEYS=100000 gives each write its own key.
#
# SHAPE=3 runs three chorus nodes joined into one cluster (every write replicated to all)
# against a Redis primary with two replicas (replicaof), every process under callgrind; the
# benchmark goes to the first node (the primary), and the instructions are summed over the
# three processes. Before and after each benchmark it checks that every node still counts
# three alive members (valgrind slows nodes down; a missed heartbeat would show there).
#
# Prints per test and pipeline depth: instructions per request for each, and chorus/redis.
# The dumps stay in $OUT (default a temporary directory, printed) for callgrind_annotate
# (KEEP=1 keeps each benchmark's dumps in $OUT/<server>-<test>-P<pipeline>/).
# Installs valgrind, redis-server and redis-tools from Debian's packages when missing. Not
# run by .ci/run: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${N:-20000}"
shape="${SHAPE:-1}"
pipelines="${PIPELINES:-1 16}"
if [ "$shape" = 3 ]; then tests="${TESTS:-set}"; else tests="${TESTS:-set get}"; fi

source tests/redis_tools.sh
ensure_redis_tools
if ! command -v valgrind >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
chorus=$(chorus_release_bin)
keyspace=()
if [ -n "${KEYS:-}" ]; then keyspace=(-r "$KEYS"); fi
check_ttl
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
echo "callgrind dumps in $out" >&2
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits until the Redis port $1 answers PING (a minute at most: valgrind starts slowly).
wait_ping() {
  for _ in $(seq 1 600); do
    redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  echo "the server on $1 did not start under valgrind" >&2; exit 1
}

# Starts one server under callgrind; $1 chorus|redis, $2 its Redis port, $3 a chorus node's
# gossip port, $4 (optional) the port to join or replicate.
start_one() {
  local cg=(valgrind --tool=callgrind --callgrind-out-file="$out/$1.%p")
  case $1 in
    chorus)
      local args=(node --listen "127.0.0.1:$3" --redis "127.0.0.1:$2" --log-level warn)
      [ -n "${4:-}" ] && args+=(--join "127.0.0.1:$4")
      "${cg[@]}" "$chorus" "${args[@]}" >/dev/null 2>>"$out/$1.log" & ;;
    redis)
      local args=(--bind 127.0.0.1 --port "$2" --save '' --appendonly no --dir "$out" --logfile "")
      [ -n "${4:-}" ] && args+=(--replicaof 127.0.0.1 "$4")
      "${cg[@]}" redis-server "${args[@]}" >/dev/null 2>>"$out/$1.log" & ;;
  esac
  pids+=("$!")
  wait_ping "$2"
}

# Starts $1 (chorus|redis) in the shape; sets port (the one benchmarked), gossip (chorus's
# first node) and pids.
start() {
  pids=()
  port=$(free_port); gossip=$(free_port)
  start_one "$1" "$port" "$gossip"
  local n
  local upstream=$gossip
  [ "$1" = redis ] && upstream=$port
  for n in $(seq 2 "$shape"); do start_one "$1" "$(free_port)" "$(free_port)" "$upstream"; done
  settled "$1"
}

# Waits until the shape is whole: every chorus node sees $shape alive members, or the redis
# primary $shape - 1 replicas online (two minutes at most).
settled() {
  [ "$shape" = 1 ] && return
  for _ in $(seq 1 240); do
    [ "$(whole "$1")" = yes ] && return
    sleep 0.5
  done
  echo "the $1 cluster did not form under valgrind" >&2; exit 1
}

# yes when the shape is whole (see settled), no otherwise.
whole() {
  case $1 in
    chorus)
      local alive
      alive=$("$chorus" members --node "127.0.0.1:$gossip" 2>/dev/null | grep -c alive || true)
      [ "$alive" -ge "$shape" ] && echo yes || echo no ;;
    redis)
      [ "$(replicas_online "$port")" -ge $((shape - 1)) ] && echo yes || echo no ;;
  esac
}

# Instructions the servers ran for one benchmark: zeroed, run, dumped, summed over every
# process's dumps.
count() { # server test pipeline
  local p
  for p in "${pids[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done
  redis_test_args "$2"
  redis-benchmark -p "$port" -n "$requests" -c 50 -d 64 -P "$3" "${keyspace[@]}" -q "${test_args[@]}" >/dev/null
  # Replicas and peers apply what they were sent before the counters are read.
  [ "$shape" = 1 ] || sleep 2
  for p in "${pids[@]}"; do
    rm -f "$out"/*."$p".*[0-9] 2>/dev/null || true
    callgrind_control -d "$p" >/dev/null 2>&1
  done
  sleep 1
  [ "$(whole "$1")" = yes ] || echo "warning: the $1 cluster lost a member during $2 -P $3" >&2
  local total=0 figure
  for p in "${pids[@]}"; do
    figure=$(cat "$out"/*."$p".[0-9]* 2>/dev/null | awk '/^summary:/ { total += $2 } END { print total + 0 }')
    total=$((total + figure))
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$out/$1-$2-P$3"
      cp "$out"/*."$p".[0-9]* "$out/$1-$2-P$3/"
    fi
    rm -f "$out"/*."$p".[0-9]*
  done
  echo "$total"
}

# WARM's longer run is pipelined; the default one is not, so that on three nodes under valgrind
# it lasts an anti-entropy round, which opens the bulk lane.
warm_pipeline=1
[ -n "${WARM:-}" ] && warm_pipeline=16
declare -A figure
for server in chorus redis; do
  start "$server"
  # A short uncounted run first: connections and lanes a cluster opens on its first writes
  # (a node's bulk lane opens with its first catch-up page) are not the steady state.
  redis_test_args set
  redis-benchmark -p "$port" -n "${WARM:-2000}" -c 50 -d 64 -P "$warm_pipeline" "${keyspace[@]}" \
    -q "${test_args[@]}" >/dev/null
  for test in $tests; do
    for pipeline in $pipelines; do
      figure[$server,$test,$pipeline]=$(count "$server" "$test" "$pipeline")
    done
  done
  for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  pids=()
done

printf '%-5s %-3s %15s %15s %13s   (%s)\n' test -P chorus_instr/req redis_instr/req chorus/redis \
  "$([ "$shape" = 3 ] && echo '3 chorus nodes vs a Redis primary + 2 replicas, summed' || echo 'one server each')"
for test in $tests; do
  for pipeline in $pipelines; do
    c=${figure[chorus,$test,$pipeline]} r=${figure[redis,$test,$pipeline]}
    awk -v t="$test" -v p="$pipeline" -v c="$c" -v r="$r" -v n="$requests" \
      'BEGIN { printf "%-5s %-3s %15.0f %15.0f %13.2f\n", t, p, c / n, r / n, c / r }'
  done
done
