# Shared by the benchmark scripts that run next to Redis (sourced, not run).

# Installs redis-server and redis-tools from Debian's packages when they are missing.
ensure_redis_tools() {
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "installing redis-server and redis-tools from Debian's packages" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  fi
}

# Installs perf (linux-perf) from Debian's packages when it is missing.
ensure_perf() {
  if ! command -v perf >/dev/null; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
  fi
}

# Prints a TCP port on 127.0.0.1 nobody listens on (a connection attempt is refused). Another
# process could take it before the caller binds it; the caller's readiness check then fails.
free_port() {
  local candidate
  for _ in $(seq 1 100); do
    candidate=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# The replicas of the Redis primary on port $1 that finished their first sync
# (`state=online` in INFO replication). A replica counts in `connected_slaves` as soon as it
# connects, but receives the primary's writes only once its sync is done, which Redis 7's
# diskless sync delays by 5 seconds (`repl-diskless-sync-delay`): a benchmark started before
# then measures a primary that replicates nothing.
replicas_online() {
  redis-cli -p "$1" info replication | grep -c 'state=online' || true
}

# Waits until the Redis primary on port $1 has $2 replicas online (60 s at most).
wait_replicas_online() {
  for _ in $(seq 1 600); do
    [ "$(replicas_online "$1")" -ge "$2" ] && return
    sleep 0.1
  done
  echo "the replicas of redis-server on $1 did not come online" >&2
  return 1
}

# The chorus binary a measuring script runs: CHORUS_BIN when set (built elsewhere), else this
# tree's release build, built now. Used as `bin=$(chorus_release_bin)`, so a failed build stops
# the script.
chorus_release_bin() {
  if [ -z "${CHORUS_BIN:-}" ]; then cargo build --release --locked --bin chorus >&2 || return 1; fi
  echo "${CHORUS_BIN:-${CARGO_TARGET_DIR:-target}/release/chorus}"
}

# Stops the script unless TTL is unset or a whole number of seconds above 0.
check_ttl() {
  if [ -n "${TTL:-}" ] && ! [ "$TTL" -gt 0 ] 2>/dev/null; then
    echo "TTL must be a whole number of seconds above 0, not '$TTL'" >&2; exit 1
  fi
}

# Sets the array `test_args` to redis-benchmark's arguments for test $1 (set or get): `-t $1`;
# with TTL (seconds, see check_ttl) set, the SET as a command of its own that gives its key that
# expiry, as a session or cache store does (`-t set` has none), with a 64-byte value, on
# key:__rand_int__ like `-t set` (so `-r` and the GETs see the same keys). redis-benchmark
# ignores -d for a command given in full: the value here is the 64 bytes.
redis_test_args() {
  test_args=(-t "$1")
  if [ "$1" = set ] && [ -n "${TTL:-}" ]; then
    test_args=(set key:__rand_int__ "$(printf 'x%.0s' $(seq 64))" EX "$TTL")
  fi
}

# Starts `redis-cli --latency-history -i 1` against the Redis port $1, writing to file $2, in the
# background; sets $latency_probe to its process id. Line-buffered (`stdbuf -oL`): with stdout
# not a terminal redis-cli prints a line per PING and would lose its last block when ended.
start_latency_probe() {
  stdbuf -oL redis-cli -p "$1" --latency-history -i 1 >"$2" 2>&1 &
  latency_probe=$!
}

# What the probe wrote to file $1: each line holds the interval's running min, max, mean and
# count of PINGs so far, and a "--" line ends each interval; the last line before it (and the
# file's last line) hold the interval's figures. Prints "PINGs N, mean M ms, longest L ms".
latency_summary() {
  awk 'function take() { if (have) { if (top > max) max = top; sum += mean * count; n += count } have = 0 }
    $1 == "--" { take(); next }
    NF == 4 { top = $2; mean = $3; count = $4; have = 1 }
    END { take(); printf "PINGs %d, mean %.2f ms, longest %d ms", n, n ? sum / n : 0, max }' "$1"
}
