#!/usr/bin/env bash
# Memory bounded in bytes (issue 11): 30 s of 1 MiB overwrites to 10 keys on each of 3 nodes,
# then each node's RSS (from /proc) before, right after and 10 s later, the messages the
# lanes dropped (anti-entropy repairs them), and the stamps of three keys on every node (they
# must agree). A measurement, not a test: not run by .ci/run.
#
#   tests/overwrite_memory.sh
set -u
cd "$(dirname "$0")/.."
cargo build --release --locked --bin chorus >&2
B=target/release/chorus; S=$(mktemp -d)
source tests/node_tools.sh
trap 'end_processes -TERM $(cat $S/pids 2>/dev/null); rm -rf $S' EXIT
start() { $B node --listen 127.0.0.1:0 --name $1 $2 --log-level warn > $S/$1.out 2>$S/$1.err & echo $! >> $S/pids; for i in $(seq 100); do grep -q ready $S/$1.out && break; sleep 0.1; done; sed -n 's/.*listen=\([^ ]*\).*/\1/p' $S/$1.out; }
a=$(start a ""); b=$(start b "--join $a"); c=$(start c "--join $a"); sleep 2
rss() { for p in $(cat $S/pids); do grep VmRSS /proc/$p/status | awk '{printf "%d MB ", $2/1024}'; done; echo; }
echo "start: $(rss)"
for n in $a $b $c; do timeout 30 $B bench --node $n -t put -d 1048576 -k 10 -n 1000000 -c 4 >/dev/null 2>&1 & done; wait
echo "after 30 s: $(rss)"; sleep 10; echo "10 s later: $(rss)"
$B stats --node $a | grep -E "messages_dropped|bytes_sent"
for n in $a $b $c; do for k in 0 5 9; do $B get "bench/key:00000000000$k" --node $n --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stamp"]["text"], end=" ")'; done; echo; done
