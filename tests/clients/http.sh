#!/usr/bin/env bash
# curl against chorus's HTTP door: the README's HTTP examples, as written there, on node A and
# node B: a write on A read on B, 404, TTL, a key of any bytes, listing, the long poll
# resumed from its index, the event stream, /health, /ready and /metrics.
#
# Needs CHORUS_HTTP_A and CHORUS_HTTP_B (host:port), as tests/clients/run.sh exports them.
set -uo pipefail

: "${CHORUS_HTTP_A:?set by tests/clients/run.sh}" "${CHORUS_HTTP_B:?set by tests/clients/run.sh}"
# How long a replicated write may take to show on another node before the check fails.
REPLICATION_DEADLINE_S=${REPLICATION_DEADLINE_S:-10}
A=http://$CHORUS_HTTP_A
B=http://$CHORUS_HTTP_B
run=$(date +%s%N)
poll_file=$(mktemp "${TMPDIR:-/tmp}/chorus-poll.XXXXXX")
trap 'rm -f "$poll_file"' EXIT

passed=0
failed=0
failures=()
check() { # check NAME EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then
        passed=$((passed + 1))
        printf '  ok   %s\n' "$1"
    else
        failed=$((failed + 1))
        failures+=("$1")
        printf '  FAIL %s\n       expected: %q\n       actual:   %q\n' "$1" "$2" "$3"
    fi
}
# Every curl is bounded, so a node that never answers fails a check instead of hanging.
c() { curl -sS --max-time 40 "$@"; }
# put URL DATA: PUTs DATA to URL and prints the answer's body. A node answers 503 to a write it
# cannot take yet and takes it if asked again: after the machine's wall clock stepped (a VM's
# clock is corrected now and then), until it has compared its clock with its peers' again, as
# DESIGN section 3 asks. A client retries; so does this, within the replication deadline.
put() {
    local deadline=$((SECONDS + REPLICATION_DEADLINE_S)) answer
    while :; do
        answer=$(c -X PUT --data-binary "$2" -w '\n%{http_code}' "$1")
        if [[ ${answer##*$'\n'} != 503 ]] || ((SECONDS > deadline)); then break; fi
        sleep 0.1
    done
    printf '%s' "${answer%$'\n'*}"
}
# eventually_get URL: the body once URL answers 200, within the replication deadline.
eventually_get() {
    local deadline=$((SECONDS + REPLICATION_DEADLINE_S)) body
    while ((SECONDS <= deadline)); do
        body=$(c -f "$1" 2>/dev/null) && { printf '%s' "$body"; return 0; }
        sleep 0.1
    done
    return 1
}

# README: write on one node, read on another.
put "$A/v1/kv/app/$run/flags/dark_mode" on >/dev/null
check "a put on A is read on B" on "$(eventually_get "$B/v1/kv/app/$run/flags/dark_mode")"
check "an absent key is 404" 404 "$(c -o /dev/null -w '%{http_code}' "$B/v1/kv/app/$run/absent")"
check "the 404 says why as JSON" not_found \
    "$(c "$B/v1/kv/app/$run/absent" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"])')"
put "$A/v1/kv/app/$run/session?ttl=1s" bye >/dev/null
sleep 2
check "a key with ttl=1s expires" 404 "$(c -o /dev/null -w '%{http_code}' "$A/v1/kv/app/$run/session")"
put "$A/v1/kv/bin$run%2F%00%ff" raw >/dev/null
check "a key of any bytes, percent-encoded" raw "$(eventually_get "$B/v1/kv/bin$run/%00%FF")"
check "a waited write is confirmed by every node" true \
    "$(put "$A/v1/kv/app/$run/waited?wait=all&timeout=10s" x |
        python3 -c 'import json,sys; print(str(json.load(sys.stdin)["wait"]["complete"]).lower())')"
check "listing by prefix" '["app/'$run'/flags/dark_mode","app/'$run'/waited"]' \
    "$(c "$A/v1/kv?prefix=app/$run/&limit=10" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["keys"], separators=(",", ":")))')"

# README: the long poll, resumed from the index it answered.
index=$(c "$B/v1/watch?prefix=app/$run/poll/&wait=1s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"])')
c "$B/v1/watch?prefix=app/$run/poll/&index=$index&wait=30s" >"$poll_file" &
poller=$!
put "$A/v1/kv/app/$run/poll/k" changed >/dev/null
wait "$poller"
check "the long poll answers the change made on A" "app/$run/poll/k changed" \
    "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["changes"][0]; print(c["key"], c["value"])' "$poll_file")"
rm -f "$poll_file"

# README: the event stream (curl -N), cut after its first event; from an index, so the write
# is streamed even if it lands before the stream opens.
index=$(c "$B/v1/watch?prefix=app/$run/sse/&wait=1s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"])')
(sleep 1; put "$A/v1/kv/app/$run/sse/k" streamed >/dev/null) &
check "the stream sends the change as an event" "event: change" \
    "$(c -N --max-time 15 "$B/v1/watch/stream?prefix=app/$run/sse/&index=$index" 2>/dev/null | grep -m1 '^event:')"
wait

check "/health" 200 "$(c -o /dev/null -w '%{http_code}' "$A/health")"
check "/ready" "ready" "$(c "$A/ready")"
check "/metrics counts HTTP puts" 1 \
    "$(c "$A/metrics" | grep -c '^chorus_requests_total{frontend="http",kind="put",result="ok"}')"

echo "$passed passed, $failed failed"
((failed == 0)) || printf '  failed: %s\n' "${failures[@]}"
((failed == 0))
