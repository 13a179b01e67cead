#!/usr/bin/env bash
# Restart-to-ready on the same address, measured on real processes (issue 11).
#
#   tests/restart_to_ready.sh [N]        (default N = 10 restarts)
#
# Starts three nodes a, b, c on fixed loopback ports, every node given the same seed list (all
# three addresses; SEEDS=others gives each node only the other two). Then restarts c N times on
# its own address, alternating SIGTERM and kill -9, and for each restart prints the time from
# starting the new process to
#   ready   its `ready` line,
#   member  a full member: it lists a and b alive, a and b list its new id alive, and a
#           `put --wait all --timeout 10s` through a succeeds.
# Ends with the median and the maximum of each, per signal and overall. CHORUS_BIN picks the
# binary (default: a release build made first). Not run by .ci/run: timings on a shared machine
# are measurements, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/node_tools.sh

restarts="${1:-10}"
seeds_mode="${SEEDS:-all}"
if [ -z "${CHORUS_BIN:-}" ]; then
  cargo build --release --locked --bin chorus >&2
  CHORUS_BIN=target/release/chorus
fi
chorus="$CHORUS_BIN"

scratch=$(mktemp -d)
declare -A pid port id
cleanup() {
  end_processes -KILL "${pid[@]}"
  rm -rf "$scratch"
}
trap cleanup EXIT

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for name in a b c; do port[$name]=$(free_udp_port); done

now() { date +%s.%N; }

# Starts node $1; its stdout goes to $scratch/$1.out, its log to $scratch/$1.log.
start() {
  local name=$1 args=(node --listen "127.0.0.1:${port[$1]}" --name "$1")
  for other in a b c; do
    if [ "$seeds_mode" = all ] || [ "$other" != "$name" ]; then
      args+=(--join "127.0.0.1:${port[$other]}")
    fi
  done
  : >"$scratch/$name.out"
  "$chorus" "${args[@]}" >"$scratch/$name.out" 2>>"$scratch/$name.log" &
  pid[$name]=$!
}

# Waits (up to 60 s) for node $1's ready line and records its id.
await_ready() {
  local name=$1
  for _ in $(seq 1 6000); do
    if grep -q '^ready ' "$scratch/$name.out"; then
      id[$name]=$(sed -n 's/^ready .* id=\([^ ]*\) .*/\1/p' "$scratch/$name.out")
      return 0
    fi
    sleep 0.01
  done
  echo "$name: no ready line within 60 s; log tail:" >&2
  tail -n 20 "$scratch/$name.log" >&2
  exit 1
}

# Whether node $1 lists the member with id $2 alive.
sees_alive() {
  "$chorus" members --node "127.0.0.1:${port[$1]}" 2>/dev/null | grep -q " $2 .* alive$"
}

full_member() {
  sees_alive c "${id[a]}" && sees_alive c "${id[b]}" && sees_alive a "${id[c]}" \
    && sees_alive b "${id[c]}" \
    && "$chorus" put restart/probe x --wait all --timeout 10s --node "127.0.0.1:${port[a]}" \
      >/dev/null 2>&1
}

start a; start b; start c
for name in a b c; do await_ready "$name"; done
for _ in $(seq 1 3000); do full_member && break; sleep 0.01; done

results="$scratch/results"
: >"$results"
for i in $(seq 1 "$restarts"); do
  if [ $((i % 2)) -eq 1 ]; then signal=TERM; else signal=KILL; fi
  kill -s "$signal" "${pid[c]}"
  wait "${pid[c]}" 2>/dev/null || true
  t0=$(now)
  start c
  await_ready c
  t_ready=$(now)
  member=""
  for _ in $(seq 1 6000); do
    if full_member; then member=$(now); break; fi
    sleep 0.01
  done
  [ -n "$member" ] || { echo "restart $i: not a full member within 60 s" >&2; exit 1; }
  ready_s=$(echo "$t_ready - $t0" | bc -l)
  member_s=$(echo "$member - $t0" | bc -l)
  printf 'restart %2d  SIG%-4s  ready %6.2f s  member %6.2f s\n' "$i" "$signal" "$ready_s" "$member_s"
  echo "$signal $ready_s $member_s" >>"$results"
done

summary() {
  local label=$1 column=$2 filter=$3
  sort -n -k"$column" <(grep -E "$filter" "$results") | awk -v label="$label" -v c="$column" '
    { v[NR] = $c }
    END {
      if (NR == 0) exit
      median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%-22s n=%-3d median %6.2f s  max %6.2f s\n", label, NR, median, v[NR]
    }'
}
echo
for what in "ready:2" "member:3"; do
  name=${what%%:*}; column=${what##*:}
  summary "$name (all)" "$column" '.'
  summary "$name (SIGTERM)" "$column" '^TERM'
  summary "$name (kill -9)" "$column" '^KILL'
done
