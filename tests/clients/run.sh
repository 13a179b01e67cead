#!/usr/bin/env bash
# chorus's Redis door driven by real clients: redis-cli, redis-py, ioredis, node-redis, and
# express-session with connect-redis across two nodes; its HTTP door driven by curl (the
# README's examples) and its /metrics read by Prometheus's Python parsers (in the python suite).
#
#   bash tests/clients/run.sh [SUITE...]      SUITE: cli python ioredis node-redis sessions http
#
# Builds nothing: the binary is CHORUS_BIN (default target/debug/chorus); the clients are
# installed by tests/clients/install.sh (redis-tools, target/clients-venv, node_modules).
# Starts three nodes on 127.0.0.1 (ports picked by the system), exports their Redis addresses
# as CHORUS_REDIS_A, CHORUS_REDIS_B, CHORUS_REDIS_C and their HTTP addresses as CHORUS_HTTP_A...
# (host:port), runs each suite with a time
# bound, and stops exactly the processes it started. Ends with `N passed, N failed` (suites).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=tests/clients
bin=${CHORUS_BIN:-target/debug/chorus}
venv=${CHORUS_CLIENTS_VENV:-target/clients-venv}
# Seconds one suite may take before it is stopped and counted as failed.
suite_timeout=${CHORUS_CLIENTS_SUITE_TIMEOUT:-150}
all_suites=(cli python ioredis node-redis sessions http)
if (($# > 0)); then suites=("$@"); else suites=("${all_suites[@]}"); fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/chorus-clients.XXXXXX")
pids=()

stop_nodes() {
    local pid tries
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        tries=0
        while kill -0 "$pid" 2>/dev/null && ((tries < 50)); do
            sleep 0.1
            tries=$((tries + 1))
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    pids=()
}
# The nodes' logs are kept here after a failed run (and printed in part).
logs=${CHORUS_CLIENTS_LOGS:-target/clients-logs}
save_logs() {
    rm -rf "$logs" && mkdir -p "$logs" && cp "$scratch"/*.log "$logs"/ 2>/dev/null &&
        echo "the nodes' logs are in $logs/"
}
cleanup() {
    stop_nodes
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "run.sh: $*" >&2
    for log in "$scratch"/*.log; do
        [[ -e $log ]] || continue
        echo "--- last lines of $(basename "$log")" >&2
        tail -20 "$log" >&2
    done
    save_logs
    echo "0 passed, ${#suites[@]} failed"
    exit 1
}

[[ -x $bin ]] || die "no chorus binary at $bin (cargo build --bin chorus, or set CHORUS_BIN)"

# start_node NAME [SEED]: starts a node in the background; its ready line goes to NAME.out.
start_node() {
    local name=$1 seed=${2:-}
    local args=(node --listen 127.0.0.1:0 --redis 127.0.0.1:0 --http 127.0.0.1:0 --name "$name")
    [[ -n $seed ]] && args+=(--join "$seed")
    # The nodes use the development cluster key, whatever this shell has set.
    env -u CHORUS_CLUSTER_KEY -u CHORUS_NODE -u RUST_LOG -u CHORUS_REDIS_PASSWORD \
        "$bin" "${args[@]}" </dev/null >"$scratch/$name.out" 2>"$scratch/$name.log" &
    pids+=($!)
}

# await_ready NAME: the node's ready line, within 15 s; sets ready_listen, ready_redis and
# ready_http.
await_ready() {
    local name=$1 tries=0 line=""
    local deadline=$((SECONDS + 15))
    while ((tries < 300)); do
        tries=$((tries + 1))
        line=$(grep -m1 '^ready ' "$scratch/$name.out" 2>/dev/null || true)
        [[ -n $line ]] && break
        ((SECONDS >= deadline)) && break
        sleep 0.05
    done
    [[ -n $line ]] || die "node $name printed no ready line within 15 s"
    ready_listen=$(sed -n 's/.* listen=\([^ ]*\).*/\1/p' <<<"$line")
    ready_redis=$(sed -n 's/.* redis=\([^ ]*\).*/\1/p' <<<"$line")
    ready_http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")
    [[ $ready_listen =~ ^127\.0\.0\.1:[0-9]+$ && $ready_redis =~ ^127\.0\.0\.1:[0-9]+$ &&
        $ready_http =~ ^127\.0\.0\.1:[0-9]+$ ]] ||
        die "node $name: cannot read listen=, redis= and http= in its ready line: $line"
}

echo "==> starting three chorus nodes ($bin)"
start_node a
await_ready a
listen_a=$ready_listen
export CHORUS_REDIS_A=$ready_redis CHORUS_HTTP_A=$ready_http
start_node b "$listen_a"
start_node c "$listen_a"
await_ready b
export CHORUS_REDIS_B=$ready_redis CHORUS_HTTP_B=$ready_http
listen_b=$ready_listen
await_ready c
export CHORUS_REDIS_C=$ready_redis CHORUS_HTTP_C=$ready_http
listen_c=$ready_listen

# Every node sees all three alive before any client starts, within 20 s.
for listen in "$listen_a" "$listen_b" "$listen_c"; do
    tries=0
    deadline=$((SECONDS + 20))
    while :; do
        tries=$((tries + 1))
        alive=$(env -u CHORUS_CLUSTER_KEY timeout 5 "$bin" members --node "$listen" 2>/dev/null |
            grep -c ' alive$')
        ((alive == 3)) && break
        ((SECONDS >= deadline || tries >= 200)) && die "node at $listen sees $alive of 3 nodes alive after 20 s"
        sleep 0.1
    done
done
echo "nodes ready: Redis A=$CHORUS_REDIS_A B=$CHORUS_REDIS_B C=$CHORUS_REDIS_C, HTTP A=$CHORUS_HTTP_A B=$CHORUS_HTTP_B"

passed=0
failed=0
results=()

# run_suite NAME COMMAND...: runs one suite within suite_timeout, records PASS or FAIL.
# `timeout` signals the suite's whole process group, so test runners' children stop too.
run_suite() {
    local name=$1 code started=$SECONDS
    shift
    printf '\n==> suite %s\n' "$name"
    timeout -k 10 "$suite_timeout" "$@"
    code=$?
    local took=$((SECONDS - started))
    if ((code == 0)); then
        passed=$((passed + 1))
        results+=("PASS  $name (${took}s)")
        printf -- '--- PASS %s (%ss)\n' "$name" "$took"
    else
        local why="exit code $code"
        ((code == 124)) && why="stopped after ${suite_timeout}s"
        ((code == 5)) && [[ $name == python ]] && why="pytest collected no test (exit 5)"
        failed=$((failed + 1))
        results+=("FAIL  $name ($why)")
        printf -- '--- FAIL %s (%s)\n' "$name" "$why"
    fi
}

need() {
    local what=$1 how=$2
    shift 2
    if ! "$@" >/dev/null 2>&1; then
        echo "missing $what: $how"
        return 1
    fi
}

for suite in "${suites[@]}"; do
    case $suite in
    cli)
        if need redis-cli "install redis-tools (tests/clients/install.sh)" command -v redis-cli; then
            run_suite cli bash "$here/cli.sh"
        else
            failed=$((failed + 1)); results+=("FAIL  cli (redis-cli missing)")
        fi
        ;;
    python)
        if need "redis-py in $venv" "run tests/clients/install.sh" "$venv/bin/python" -c 'import redis, pytest'; then
            run_suite python "$venv/bin/python" -m pytest -q "$here/python"
        else
            failed=$((failed + 1)); results+=("FAIL  python (venv missing)")
        fi
        ;;
    http)
        if need curl "install curl" command -v curl; then
            run_suite http bash "$here/http.sh"
        else
            failed=$((failed + 1)); results+=("FAIL  http (curl missing)")
        fi
        ;;
    ioredis | node-redis | sessions)
        if need "node_modules in $here/node" "run tests/clients/install.sh" test -d "$here/node/node_modules/ioredis"; then
            run_suite "$suite" bash "$here/node/test.sh" "$suite.test.mjs"
        else
            failed=$((failed + 1)); results+=("FAIL  $suite (node_modules missing)")
        fi
        ;;
    *)
        echo "unknown suite $suite (suites: ${all_suites[*]})"
        failed=$((failed + 1)); results+=("FAIL  $suite (unknown suite)")
        ;;
    esac
done

# A node that died during the suites is a failure of its own, whatever the suites said.
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        name=$(printf '%s' abc | cut -c$((i + 1)))
        echo "node $name (pid ${pids[$i]}) exited during the suites; from its log:"
        grep -m1 -A12 'panicked' "$scratch/$name.log" || tail -20 "$scratch/$name.log"
        failed=$((failed + 1))
        results+=("FAIL  node $name stayed up")
    fi
done

printf '\n==> real Redis clients against chorus\n'
printf '  %s\n' "${results[@]}"
((failed == 0)) || save_logs
echo "$passed passed, $failed failed"
((failed == 0))
