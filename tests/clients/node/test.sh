#!/usr/bin/env bash
# Runs one test file with node's test runner: passes only if it ran at least one test and
# none failed (node --test exits 0 when a file holds no test at all, counting the file itself
# as one passed test, so the check looks for a passed test other than the file).
set -uo pipefail
cd "$(dirname "$0")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
node --test --test-reporter=spec "$1" 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
((code == 0)) || exit "$code"
if ! grep '✔' "$log" | grep -vqF "$1"; then
    echo "node --test ran no test in $1"
    exit 1
fi
