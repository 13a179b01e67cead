#!/usr/bin/env bash
# redis-cli (Debian's redis-tools) against chorus: every must-have command of REDIS.md that
# chorus implements, on node A, with the replies checked as redis-cli prints them (--no-raw:
# `(integer) 1`, `"v"`, `(nil)`, `(error) ...`), then writes on A read on B.
#
# Needs CHORUS_REDIS_A and CHORUS_REDIS_B (host:port), as tests/clients/run.sh exports them.
set -uo pipefail

: "${CHORUS_REDIS_A:?set by tests/clients/run.sh}" "${CHORUS_REDIS_B:?set by tests/clients/run.sh}"
# How long a replicated write may take to show on another node before the check fails.
REPLICATION_DEADLINE_S=${REPLICATION_DEADLINE_S:-10}

passed=0
failed=0
failures=()

# redis-cli on node A or B; every call bounded, so a server that never answers fails a check
# instead of hanging the suite. A command the node refused while it compares its clock with its
# peers again (the machine's wall clock stepped: DESIGN section 3) is sent again, for up to
# 10 s, as an application would retry it; the suite tests the protocol, not that refusal.
cli_at() {
    local addr=$1 out status tries=0
    shift
    while :; do
        status=0
        out=$(timeout 10 redis-cli -h "${addr%:*}" -p "${addr##*:}" --no-raw "$@" 2>&1) || status=$?
        case $out in
            *"has not yet compared its clock with its peers"*) ;;
            *) break ;;
        esac
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || break
        sleep 0.1
    done
    [ -z "$out" ] || printf '%s\n' "$out"
    return "$status"
}
a() { cli_at "$CHORUS_REDIS_A" "$@"; }
b() { cli_at "$CHORUS_REDIS_B" "$@"; }
# one_conn TEXT [redis-cli options]: the lines of TEXT sent as commands on one connection
# (redis-cli reads them from stdin), every reply printed; never sent twice.
one_conn() {
    local text=$1
    shift
    printf '%b' "$text" |
        timeout 10 redis-cli -h "${CHORUS_REDIS_A%:*}" -p "${CHORUS_REDIS_A##*:}" --no-raw "$@" 2>&1
}

ok() {
    passed=$((passed + 1))
    printf '  ok   %s\n' "$1"
}
not_ok() {
    failed=$((failed + 1))
    failures+=("$1")
    printf '  FAIL %s\n' "$1"
    printf '       expected: %s\n' "$(printf '%s' "$2" | sed '2,$s/^/                 /')"
    printf '       got:      %s\n' "$(printf '%s' "$3" | sed '2,$s/^/                 /')"
}

# expect WHAT EXPECTED COMMAND...: the command's whole output is EXPECTED.
expect() {
    local what=$1 expected=$2 got
    shift 2
    got=$("$@")
    if [[ $got == "$expected" ]]; then ok "$what"; else not_ok "$what" "$expected" "$got"; fi
}

# expect_match WHAT REGEX COMMAND...: the command's whole output matches the extended REGEX.
expect_match() {
    local what=$1 regex=$2 got
    shift 2
    got=$("$@")
    if [[ $got =~ ^${regex}$ ]]; then ok "$what"; else not_ok "$what" "/$regex/" "$got"; fi
}

# expect_int_in WHAT LOW HIGH COMMAND...: the reply is `(integer) N` with LOW <= N <= HIGH.
expect_int_in() {
    local what=$1 low=$2 high=$3 got n
    shift 3
    got=$("$@")
    n=${got#(integer) }
    if [[ $got == "(integer) "* && $n =~ ^-?[0-9]+$ ]] && ((n >= low && n <= high)); then
        ok "$what"
    else
        not_ok "$what" "(integer) between $low and $high" "$got"
    fi
}

# eventually WHAT EXPECTED COMMAND...: polls the command until its output is EXPECTED, for at
# most REPLICATION_DEADLINE_S seconds (at most 200 tries).
eventually() {
    local what=$1 expected=$2 got="" tries=0
    shift 2
    local deadline=$((SECONDS + REPLICATION_DEADLINE_S))
    while ((tries < 200)); do
        tries=$((tries + 1))
        got=$("$@")
        if [[ $got == "$expected" ]]; then
            ok "$what"
            return
        fi
        ((SECONDS >= deadline)) && break
        sleep 0.05
    done
    not_ok "$what (polled ${tries}x, ${REPLICATION_DEADLINE_S}s)" "$expected" "$got"
}

# Keys of this run, so that a rerun against the same nodes starts clean.
p="cli:$$:"

echo "redis-cli $(redis-cli --version | awk '{print $2}') against A=$CHORUS_REDIS_A B=$CHORUS_REDIS_B"

echo "connection"
expect "PING" "PONG" a PING
expect "PING message" '"hello"' a PING hello
expect "ECHO" '"a b"' a ECHO "a b"
expect "AUTH password (no password configured: accepted)" "OK" a AUTH whatever
expect "AUTH user password" "OK" a AUTH default whatever
expect "SELECT 1" "OK" a SELECT 1
expect "SELECT out of range" "(error) ERR DB index is out of range" a SELECT 16
hello() { a "$@" | tr '\n' ' '; }
hello3() { one_conn "$1" -3 | tr '\n' ' '; }
expect_match "HELLO" '.*"server" +[0-9]+\) "redis".*"proto" +[0-9]+\) \(integer\) 2 .*' hello HELLO
expect_match "HELLO 2" '.*"proto" +[0-9]+\) \(integer\) 2 .*"modules".*' hello HELLO 2
expect_match "HELLO 3 (redis-cli -3 shows a map)" \
    '.*1# "server" => "redis".*"proto" => \(integer\) 3.*"role" => "master".*' \
    hello3 'HELLO 3\n'
expect_match "HELLO 3 AUTH default pw SETNAME" '.*"proto" => \(integer\) 3.*' \
    hello3 'HELLO 3 AUTH default pw SETNAME cli-test\n'
expect "HELLO 4 is refused" "(error) NOPROTO unsupported protocol version" a HELLO 4
# One connection for several commands: redis-cli reads them from stdin.
last_line() { "$@" | tail -1; }
expect "HELLO SETNAME then CLIENT GETNAME" '"named-by-hello"' \
    last_line one_conn 'HELLO 2 SETNAME named-by-hello\nCLIENT GETNAME\n'
expect "CLIENT SETINFO lib-name" "OK" a CLIENT SETINFO lib-name redis-cli
expect "CLIENT SETINFO lib-ver" "OK" a CLIENT SETINFO lib-ver 7.0
expect_match "CLIENT ID" '\(integer\) [0-9]+' a CLIENT ID
expect "CLIENT GETNAME on a fresh connection" "(nil)" a CLIENT GETNAME
expect "CLIENT SETNAME then GETNAME" $'OK\n"cli-name"' \
    one_conn 'CLIENT SETNAME cli-name\nCLIENT GETNAME\n'
expect "RESET forgets the name" $'OK\nRESET\n(nil)' \
    one_conn 'CLIENT SETNAME n1\nRESET\nCLIENT GETNAME\n'
expect "QUIT" "OK" a QUIT
info=$(a INFO)
for line in "# Server" "redis_version:" "# Clients" "connected_clients:" "# Keyspace" "loading:0"; do
    if grep -q "^${line}" <<<"$info"; then ok "INFO has ${line}"; else not_ok "INFO has ${line}" "a line starting ${line}" "$info"; fi
done
# Lucee's INFO parser: a `# Section` before any key:value line, and a ':' on every other line.
bad=$(awk 'NF && !/^# / && !/:/' <<<"$info" | tr -d '\r')
first=$(grep -v '^\s*$' <<<"$info" | head -1 | tr -d '\r')
if [[ -z $bad && $first == "# "* ]]; then ok "INFO is Redis's text format"; else not_ok "INFO is Redis's text format" "# Section first, key:value lines" "first=$first bad=$bad"; fi
expect_match "COMMAND COUNT" '\(integer\) [0-9]+' a COMMAND COUNT
expect_match "COMMAND DOCS answers (redis-cli's hints)" '.*' a COMMAND DOCS GET

echo "strings and keys"
expect "SET" "OK" a SET "${p}s" v1
expect "GET" '"v1"' a GET "${p}s"
expect "GET missing" "(nil)" a GET "${p}missing"
expect "SET binary-safe value with spaces" "OK" a SET "${p}spaces" "a b  c"
expect "GET value with spaces" '"a b  c"' a GET "${p}spaces"
expect "SET EX" "OK" a SET "${p}ex" v EX 100
expect_int_in "TTL after SET EX 100" 1 100 a TTL "${p}ex"
expect "SET PX" "OK" a SET "${p}px" v PX 100000
expect_int_in "PTTL after SET PX 100000" 1 100000 a PTTL "${p}px"
expect "SET EXAT" "OK" a SET "${p}exat" v EXAT $(($(date +%s) + 100))
expect_int_in "TTL after SET EXAT now+100" 1 101 a TTL "${p}exat"
expect "SET PXAT" "OK" a SET "${p}pxat" v PXAT $(($(date +%s%3N) + 100000))
expect_int_in "PTTL after SET PXAT now+100000" 1 101000 a PTTL "${p}pxat"
expect "SET NX on an existing key" "(nil)" a SET "${p}s" other NX
expect "SET NX did not write" '"v1"' a GET "${p}s"
expect "SET NX on a new key" "OK" a SET "${p}nx" v NX
expect "SET XX on a missing key" "(nil)" a SET "${p}xx" v XX
expect "GET after refused SET XX" "(nil)" a GET "${p}xx"
expect "SET XX on an existing key" "OK" a SET "${p}nx" v2 XX
expect "SET ... GET returns the old value" '"v2"' a SET "${p}nx" v3 GET
expect "SET ... GET wrote the new value" '"v3"' a GET "${p}nx"
expect "SET KEEPTTL" "OK" a SET "${p}ex" v2 KEEPTTL
expect_int_in "TTL kept by SET KEEPTTL" 1 100 a TTL "${p}ex"
expect "SET without KEEPTTL clears the TTL" "OK" a SET "${p}ex" v3
expect "TTL -1 after plain SET" "(integer) -1" a TTL "${p}ex"
expect "SET with EX and PX is a syntax error" "(error) ERR syntax error" a SET "${p}bad" v EX 10 PX 10
expect_match "SET EX 0 is refused" '\(error\) ERR invalid expire time.*' a SET "${p}bad" v EX 0
expect "SETEX" "OK" a SETEX "${p}setex" 100 v
expect_int_in "TTL after SETEX" 1 100 a TTL "${p}setex"
expect "PSETEX" "OK" a PSETEX "${p}psetex" 100000 v
expect_int_in "PTTL after PSETEX" 1 100000 a PTTL "${p}psetex"
expect "MSET" "OK" a MSET "${p}m1" one "${p}m2" two
expect "MGET" $'1) "one"\n2) (nil)\n3) "two"' a MGET "${p}m1" "${p}nope" "${p}m2"
expect "EXISTS counts each key given" "(integer) 3" a EXISTS "${p}m1" "${p}m2" "${p}nope" "${p}m1"
expect "DEL" "(integer) 2" a DEL "${p}m1" "${p}m2" "${p}nope"
expect "GET after DEL" "(nil)" a GET "${p}m1"
expect "UNLINK" "(integer) 1" a UNLINK "${p}spaces"
expect "EXISTS after UNLINK" "(integer) 0" a EXISTS "${p}spaces"
expect "EXPIRE" "(integer) 1" a EXPIRE "${p}s" 100
expect_int_in "TTL after EXPIRE 100" 1 100 a TTL "${p}s"
expect "EXPIRE on a missing key" "(integer) 0" a EXPIRE "${p}nope" 100
expect "PEXPIRE" "(integer) 1" a PEXPIRE "${p}s" 200000
expect_int_in "PTTL after PEXPIRE 200000" 100001 200000 a PTTL "${p}s"
expect "EXPIREAT" "(integer) 1" a EXPIREAT "${p}s" $(($(date +%s) + 300))
expect_int_in "TTL after EXPIREAT now+300" 200 301 a TTL "${p}s"
expect "PEXPIREAT" "(integer) 1" a PEXPIREAT "${p}s" $(($(date +%s%3N) + 50000))
expect_int_in "PTTL after PEXPIREAT now+50000" 1 51000 a PTTL "${p}s"
expect "EXPIRE NX on a key with a TTL" "(integer) 0" a EXPIRE "${p}s" 1000 NX
expect "PERSIST" "(integer) 1" a PERSIST "${p}s"
expect "TTL -1 after PERSIST" "(integer) -1" a TTL "${p}s"
expect "PERSIST without a TTL" "(integer) 0" a PERSIST "${p}s"
expect "TTL -2 for a missing key" "(integer) -2" a TTL "${p}nope"
expect "PTTL -2 for a missing key" "(integer) -2" a PTTL "${p}nope"
expect "GET keeps the value through TTL changes" '"v1"' a GET "${p}s"
expect "SET PX 300 (expires soon)" "OK" a SET "${p}short" v PX 300
eventually "a key set with PX 300 expires" "(nil)" a GET "${p}short"
expect "EXPIRE with a negative TTL deletes" "(integer) 1" a EXPIRE "${p}nx" -1
expect "GET after EXPIRE -1" "(nil)" a GET "${p}nx"
expect "TYPE string" "string" a TYPE "${p}s"
expect "TYPE none" "none" a TYPE "${p}nope"
expect "RENAME" "OK" a RENAME "${p}s" "${p}renamed"
expect "GET the new name" '"v1"' a GET "${p}renamed"
expect "GET the old name" "(nil)" a GET "${p}s"
expect "RENAME a missing key" "(error) ERR no such key" a RENAME "${p}nope" "${p}x"
expect "RENAME keeps the TTL" $'OK\nOK\n(integer) 1' \
    one_conn "SET ${p}t1 v EX 100\nRENAME ${p}t1 ${p}t2\nEXISTS ${p}t2\n"
expect_int_in "TTL of the renamed key" 1 100 a TTL "${p}t2"
expect_match "DEBUG OBJECT in Redis's format" 'Value at:.* refcount:[0-9]+ encoding:[a-z]+ serializedlength:2 lru:[0-9]+ lru_seconds_idle:[0-9]+' \
    a DEBUG OBJECT "${p}renamed"
expect_match "DEBUG OBJECT of a missing key is an error" '\(error\) .*' a DEBUG OBJECT "${p}nope"

echo "hashes"
expect "HSET" "(integer) 2" a HSET "${p}h" f1 v1 f2 v2
expect "HSET an existing field" "(integer) 0" a HSET "${p}h" f1 v1b
expect "HMSET" "OK" a HMSET "${p}h" f3 v3 f4 v4
expect "HGET" '"v1b"' a HGET "${p}h" f1
expect "HGET missing field" "(nil)" a HGET "${p}h" nope
expect "HMGET" $'1) "v1b"\n2) (nil)\n3) "v3"' a HMGET "${p}h" f1 nope f3
# Field, value pairs in the order of the fields (a hash has no order of its own).
pairs_sorted() { "$@" | sed -E 's/^ *[0-9]+\) //' | paste -d' ' - - | sort | tr '\n' ' '; }
expect "HGETALL" '"f1" "v1b" "f2" "v2" "f3" "v3" "f4" "v4" ' pairs_sorted a HGETALL "${p}h"
expect "HLEN" "(integer) 4" a HLEN "${p}h"
expect "HEXISTS yes" "(integer) 1" a HEXISTS "${p}h" f2
expect "HEXISTS no" "(integer) 0" a HEXISTS "${p}h" nope
hkeys_sorted() { a HKEYS "$@" | sed 's/^[0-9]*) //' | sort | tr '\n' ' '; }
expect "HKEYS" '"f1" "f2" "f3" "f4" ' hkeys_sorted "${p}h"
expect "HDEL" "(integer) 2" a HDEL "${p}h" f3 f4 nope
expect "HLEN after HDEL" "(integer) 2" a HLEN "${p}h"
expect "TYPE hash" "hash" a TYPE "${p}h"
expect "EXISTS hash" "(integer) 1" a EXISTS "${p}h"
expect "EXPIRE hash" "(integer) 1" a EXPIRE "${p}h" 100
expect_int_in "TTL of the hash" 1 100 a TTL "${p}h"
expect "HGETALL missing" "(empty array)" a HGETALL "${p}nope"
expect "DEL hash" "(integer) 1" a DEL "${p}h"
expect "HLEN after DEL" "(integer) 0" a HLEN "${p}h"
# A key that was a hash and is then SET is one key: DEL removes it whole. (Found failing: the
# hash's fields survived the DEL; see README.md, "Chorus bugs these suites found".)
expect "HSET, then SET on the same key" $'(integer) 1\nOK' one_conn "HSET ${p}retyped f v\nSET ${p}retyped s\n"
expect "DEL of a key that was a hash, then SET" "(integer) 1" a DEL "${p}retyped"
expect "EXISTS after that DEL" "(integer) 0" a EXISTS "${p}retyped"
expect "HGETALL after that DEL" "(empty array)" a HGETALL "${p}retyped"

echo "pipelining and MULTI/EXEC (one connection, commands from stdin)"
expect "several commands on one connection, answered in order" $'OK\nOK\n"1"\n"2"' \
    one_conn "SET ${p}p1 1\nSET ${p}p2 2\nGET ${p}p1\nGET ${p}p2\n"
# redis-cli --pipe: mass insertion, raw RESP on stdin, ends with an ECHO it waits for.
pipe_out=$(for i in $(seq 1 500); do printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s%05d\r\n$1\r\nv\r\n' $((${#p} + 5)) "$p" "$i"; done \
    | timeout 20 redis-cli -h "${CHORUS_REDIS_A%:*}" -p "${CHORUS_REDIS_A##*:}" --pipe 2>&1)
if grep -q 'errors: 0, replies: 500' <<<"$pipe_out"; then ok "redis-cli --pipe (500 SETs)"; else not_ok "redis-cli --pipe (500 SETs)" "errors: 0, replies: 500" "$pipe_out"; fi
expect '"GET" one of the --pipe keys' '"v"' a GET "${p}00250"
expect "MULTI/EXEC" $'OK\nQUEUED\nQUEUED\nQUEUED\n1) OK\n2) OK\n3) 1) "1"\n   2) "2"' \
    one_conn "MULTI\nSET ${p}t1 1\nSET ${p}t2 2\nMGET ${p}t1 ${p}t2\nEXEC\n"
expect "MULTI/DISCARD writes nothing" $'OK\nQUEUED\nOK\n(nil)' \
    one_conn "MULTI\nSET ${p}discarded 1\nDISCARD\nGET ${p}discarded\n"
expect "EXEC without MULTI" "(error) ERR EXEC without MULTI" a EXEC

echo "databases, KEYS, SCAN, DBSIZE, FLUSHDB, FLUSHALL (in databases 7 and 8)"
a7() { a -n 7 "$@"; }
# Database 9 is never written: FLUSHDB on an empty database. (Found failing: chorus answered
# "ERR wrong number of arguments for 'del' command"; see README.md, "Chorus bugs these suites found".)
expect "FLUSHDB on an empty database" "OK" a -n 9 FLUSHDB
expect "MSET in db 7" "OK" a7 MSET "${p}k1" 1 "${p}k2" 2 "${p}other" 3
expect "HSET in db 7" "(integer) 1" a7 HSET "${p}kh" f v
expect "db 0 does not see db 7" "(nil)" a GET "${p}k1"
expect "DBSIZE" "(integer) 4" a7 DBSIZE
sorted() { "$@" | sed 's/^ *[0-9]*) //' | sort | tr '\n' ' '; }
expect "KEYS *" "\"${p}k1\" \"${p}k2\" \"${p}kh\" \"${p}other\" " sorted a7 KEYS '*'
expect "KEYS pattern" "\"${p}k1\" \"${p}k2\" \"${p}kh\" " sorted a7 KEYS "${p}k*"
expect "KEYS [class]" "\"${p}k1\" \"${p}k2\" " sorted a7 KEYS "${p}k[0-9]"
# A full SCAN walk by hand: cursor until 0, COUNT 1 so it takes several round trips.
scan_all() {
    local cursor=0 rounds=0 out keys=()
    while ((rounds < 100)); do
        rounds=$((rounds + 1))
        out=$(timeout 10 redis-cli -h "${CHORUS_REDIS_A%:*}" -p "${CHORUS_REDIS_A##*:}" -n 7 --raw SCAN "$cursor" MATCH "$1" COUNT 1) || return 1
        cursor=$(head -1 <<<"$out")
        [[ $cursor =~ ^[0-9]+$ ]] || { echo "bad cursor: $out"; return 1; }
        while IFS= read -r key; do [[ -n $key ]] && keys+=("$key"); done < <(tail -n +2 <<<"$out")
        [[ $cursor == 0 ]] && break
    done
    printf '%s\n' "${keys[@]}" | sort | tr '\n' ' '
    echo "rounds>1:$((rounds > 1))"
}
expect "SCAN cursor walk with MATCH and COUNT 1" "${p}k1 ${p}k2 ${p}kh rounds>1:1" scan_all "${p}k*"
expect "redis-cli --scan --pattern" "\"${p}k1\" \"${p}k2\" \"${p}kh\" \"${p}other\" " sorted a7 --scan --pattern "${p}*"
expect "FLUSHDB" "OK" a7 FLUSHDB
eventually "DBSIZE 0 after FLUSHDB" "(integer) 0" a7 DBSIZE
expect "FLUSHDB leaves db 0" '"v1"' a GET "${p}renamed"
expect "SET in db 8" "OK" a -n 8 SET "${p}f" 1
# (Found failing with the FLUSHDB bug above: FLUSHALL stops at the first empty database.)
expect "FLUSHALL" "OK" a -n 8 FLUSHALL
eventually "db 8 empty after FLUSHALL" "(integer) 0" a -n 8 DBSIZE
eventually "db 0 empty after FLUSHALL" "(integer) 0" a DBSIZE

echo "replication: written on A, read on B"
expect "SET on A" "OK" a SET "${p}repl" "from-a"
eventually "GET on B sees A's write" '"from-a"' b GET "${p}repl"
expect "SET EX on A" "OK" a SET "${p}repl-ttl" v EX 100
eventually "B sees the value written with EX" '"v"' b GET "${p}repl-ttl"
expect_int_in "B sees A's TTL" 1 100 b TTL "${p}repl-ttl"
expect "HSET on A" "(integer) 2" a HSET "${p}repl-h" name ada lang rust
eventually "HGETALL on B sees A's hash" '"lang" "rust" "name" "ada" ' pairs_sorted b HGETALL "${p}repl-h"
expect "MSET in db 3 on A" "OK" a -n 3 MSET "${p}d3" three
eventually "B sees db 3 in db 3" '"three"' b -n 3 GET "${p}d3"
expect "B does not see it in db 0" "(nil)" b GET "${p}d3"
expect "DEL on A" "(integer) 1" a DEL "${p}repl"
eventually "B sees A's DEL" "(nil)" b GET "${p}repl"
expect "SET on B" "OK" b SET "${p}repl-back" "from-b"
eventually "A sees B's write" '"from-b"' a GET "${p}repl-back"

echo "keyspace notifications: CONFIG, SUBSCRIBE and PSUBSCRIBE on B, writes on A"
expect "CONFIG SET notify-keyspace-events" "OK" b CONFIG SET notify-keyspace-events KEA
expect_match "CONFIG GET notify-keyspace-events" $'1\\) "notify-keyspace-events"\n2\\) "[KEA]{3}"' b CONFIG GET notify-keyspace-events
sub_out=$(mktemp)
# Subscribed to one keyevent pattern and one keyspace channel, for at most 15 s.
timeout 15 redis-cli -h "${CHORUS_REDIS_B%:*}" -p "${CHORUS_REDIS_B##*:}" --no-raw \
    PSUBSCRIBE '__keyevent@0__:*' >"$sub_out" 2>&1 &
sub_pid=$!
timeout 15 redis-cli -h "${CHORUS_REDIS_B%:*}" -p "${CHORUS_REDIS_B##*:}" --no-raw \
    SUBSCRIBE "__keyspace@0__:${p}notified" >"$sub_out.2" 2>&1 &
sub2_pid=$!
subscribed() { grep -c '^1) "psubscribe"' "$sub_out"; grep -c '^1) "subscribe"' "$sub_out.2"; }
eventually "both subscriptions confirmed" $'1\n1' subscribed
expect "SET on A while B is subscribed" "OK" a SET "${p}notified" v
expect "DEL on A while B is subscribed" "(integer) 1" a DEL "${p}notified"
# redis-cli prints a pmessage as 1) "pmessage" 2) pattern 3) channel 4) payload.
pmessages() { grep -A3 '^1) "pmessage"' "$sub_out" | grep -v '^--$' | tr '\n' ' '; }
eventually "PSUBSCRIBE on B sees set then del from A" \
    "1) \"pmessage\" 2) \"__keyevent@0__:*\" 3) \"__keyevent@0__:set\" 4) \"${p}notified\" 1) \"pmessage\" 2) \"__keyevent@0__:*\" 3) \"__keyevent@0__:del\" 4) \"${p}notified\" " \
    pmessages
messages() { grep -A2 '^1) "message"' "$sub_out.2" | grep -v '^--$' | tr '\n' ' '; }
eventually "SUBSCRIBE on B sees __keyspace@0__ set and del" \
    "1) \"message\" 2) \"__keyspace@0__:${p}notified\" 3) \"set\" 1) \"message\" 2) \"__keyspace@0__:${p}notified\" 3) \"del\" " \
    messages
kill "$sub_pid" "$sub2_pid" 2>/dev/null
wait "$sub_pid" "$sub2_pid" 2>/dev/null
rm -f "$sub_out" "$sub_out.2"
# UNSUBSCRIBE and PUNSUBSCRIBE: redis-cli stops sending once subscribed; redis-py tests them.

echo
echo "redis-cli: $passed checks passed, $failed failed"
if ((failed > 0)); then
    printf '  failed: %s\n' "${failures[@]}"
    exit 1
fi
((passed > 0)) || { echo "no check ran"; exit 1; }
