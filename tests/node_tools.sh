# Shared by the measurement scripts that start chorus nodes (sourced, not run). The caller sets
# `node_bin` (the binary) and `scratch` (a directory), and calls `stop_nodes` at exit; those that
# start other servers end them with `end_processes`. An array `node_prefix`, when set, goes
# before the binary (`taskset -c 1`: the node starts pinned, and its runtime sees one CPU).

# Starts node $1 on a free loopback port with the remaining arguments; prints its listen
# address once its ready line appears (30 s at most). stdout goes to $scratch/$1.out, the log to
# $scratch/$1.err; the process id is kept in $scratch/$1.pid (a file: callers run this in a
# command substitution, a subshell, whose variables do not come back).
start_node() {
  local name=$1; shift
  ${node_prefix[@]+"${node_prefix[@]}"} "$node_bin" node --listen 127.0.0.1:0 --name "$name" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" &
  echo $! >"$scratch/$name.pid"
  for _ in $(seq 1 300); do
    if grep -q '^ready' "$scratch/$name.out"; then
      sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$scratch/$name.out" | head -1
      return
    fi
    sleep 0.1
  done
  echo "node $name did not become ready" >&2; tail "$scratch/$name.err" >&2; exit 1
}

# Starts node $1 joining node $2 (an address) with the remaining arguments, without waiting for
# its ready line: a joining node reports ready only once it caught up, which for millions of
# keys takes longer than `start_node` waits. Prints its address once $2 lists it among its
# members (30 s at most). Files as `start_node`'s.
start_joiner() {
  local name=$1 seed=$2 addr; shift 2
  ${node_prefix[@]+"${node_prefix[@]}"} "$node_bin" node --listen 127.0.0.1:0 --name "$name" --join "$seed" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" &
  echo $! >"$scratch/$name.pid"
  for _ in $(seq 1 300); do
    addr=$("$node_bin" members --node "$seed" 2>/dev/null | awk -v n="$name" '$1 == n { print $3 }') || addr=""
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.1
  done
  echo "node $name did not join $seed" >&2; tail "$scratch/$name.err" >&2; exit 1
}

# Field $1 (a number) of the one-line `chorus stats --json` object on standard input.
stats_field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# Nanoseconds $1 as milliseconds, to a tenth.
ms_of_ns() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }

# The number of live keys node $1 (an address) holds, from `chorus stats`.
keys_of() { "$node_bin" stats --node "$1" --json | stats_field keys; }

# Stops node $1 with signal $2 (default TERM) and waits for it to exit (10 s at most).
stop_node() {
  local pid
  pid=$(cat "$scratch/$1.pid" 2>/dev/null) || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$scratch/$1.pid"
}

# Kills every node this script started (each by its own process id) and returns once they
# have exited; forgets their ids.
stop_nodes() {
  local file pids=()
  for file in "$scratch"/*.pid; do
    [ -e "$file" ] && pids+=("$(cat "$file")")
  done
  end_processes -KILL "${pids[@]}"
  rm -f "$scratch"/*.pid   # their ids may be another process's later
}

# Whether process $1 runs (an exited child that was not waited for is a zombie: it does not).
running() {
  [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}

# Sends signal $1 (-TERM, -KILL...) to the processes given by id after it, then returns once
# each has exited: after 10 s it kills what still runs. A script's cleanup removes its scratch
# directory after this, once nothing writes there any more.
end_processes() {
  local signal=$1 pid; shift
  for pid in "$@"; do kill "$signal" "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 100); do running "$pid" || break; sleep 0.1; done
    running "$pid" || continue
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
  done
}
