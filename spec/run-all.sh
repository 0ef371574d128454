#!/bin/sh
# spec/run-all.sh: runs every test of zmqtt and sums them up.
# Usage: BUSTED="lua5.4 /usr/bin/busted" sh spec/run-all.sh [C test binaries...]
# BUSTED may run busted under lua5.1, lua5.2, lua5.3, lua5.4 or luajit; by hand
# (without the Makefile's LUA_CPATH) the module is then taken from build/ for
# lua5.4 and from build/<interpreter>/ for the others, as `make LUA=...` builds it.
# Runs each C test binary (TAP), then the busted specs in spec/ through
# spec/summary_output.lua, prints everything to stdout and ends with exactly one
# line "N passed, M failed"; exits non-zero when M > 0. A runner that crashes,
# times out or prints no summary counts as a failure. Processes the specs
# started and left behind (crash) are stopped by PID at the end.

set -u

BUSTED=${BUSTED:-"lua5.4 /usr/bin/busted"}
CTEST_TIMEOUT=${CTEST_TIMEOUT:-300}     # seconds per C test binary
SPEC_TIMEOUT=${SPEC_TIMEOUT:-1800}      # seconds for the whole busted run

cd "$(dirname "$0")/.." || exit 2
root=$(pwd)

# The Makefile exports these; set the same defaults when run by hand.
# shellcheck disable=SC2086  # BUSTED is a command with arguments
lua_bin=$(basename "$(set -- $BUSTED; echo "$1")")
case $lua_bin in
    lua5.1|lua5.2|lua5.3|luajit) build=$root/build/$lua_bin ;;
    *) build=$root/build ;;
esac
: "${LUA_PATH:=$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;}"
: "${LUA_CPATH:=$build/?.so;;}"
export LUA_PATH LUA_CPATH

tmp=$(mktemp -d -t zmqtt-run.XXXXXX) || exit 2
ZMQTT_TEST_PIDFILE=$tmp/pids
export ZMQTT_TEST_PIDFILE
: >"$ZMQTT_TEST_PIDFILE"

passed=0
failed=0

if command -v timeout >/dev/null 2>&1; then
    with_timeout() { t=$1; shift; timeout -k 10 "$t" "$@"; }
else
    with_timeout() { shift; "$@"; }
fi

# True while PID runs and still has the start time recorded when it started.
same_process_alive() {
    [ -r "/proc/$1/stat" ] || return 1
    set -- "$1" "$2" "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)"
    # After "pid (comm) ": field 1 is the state, field 20 the start time.
    state=$(echo "$3" | cut -d' ' -f1)
    start=$(echo "$3" | cut -d' ' -f20)
    [ "$state" != Z ] && [ "$state" != X ] && [ "$start" = "$2" ]
}

# Stops, by PID, whatever the specs started and did not stop (a crash).
stop_leftovers() {
    [ -s "$ZMQTT_TEST_PIDFILE" ] || return 0
    while read -r pid start dir; do
        if same_process_alive "$pid" "$start"; then
            echo "run-all: stopping leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
            [ "$dir" != - ] && echo "run-all: its files (log, config) stay in $dir"
            kill -TERM "$pid" 2>/dev/null
            i=0
            while [ "$i" -lt 30 ] && same_process_alive "$pid" "$start"; do
                sleep 0.1
                i=$((i + 1))
            done
            same_process_alive "$pid" "$start" && kill -KILL "$pid" 2>/dev/null
        fi
    done <"$ZMQTT_TEST_PIDFILE"
    : >"$ZMQTT_TEST_PIDFILE"
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    stop_leftovers
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

count() {   # count PATTERN FILE: number of matching lines (0 when none)
    n=$(grep -c -- "$1" "$2" 2>/dev/null)
    echo "${n:-0}"
}

# ---------------------------------------------------------------- C (TAP)
for bin in "$@"; do
    echo "== $bin"
    if [ ! -x "$bin" ]; then
        echo "not ok - $bin: not found or not executable"
        failed=$((failed + 1))
        continue
    fi
    { with_timeout "$CTEST_TIMEOUT" "$bin" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/tap"
    rc=$(cat "$tmp/rc")
    all_ok=$(count '^ok ' "$tmp/tap")
    skipped=$(grep '^ok ' "$tmp/tap" | grep -ic '# *skip')
    ok=$((all_ok - skipped))            # a skipped test is not a passed one
    not_ok=$(count '^not ok ' "$tmp/tap")
    plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$tmp/tap" | tail -n 1)
    passed=$((passed + ok))
    failed=$((failed + not_ok))
    if [ -z "$plan" ]; then
        echo "not ok - $bin: no TAP plan (crashed? exit status $rc)"
        failed=$((failed + 1))
    elif [ "$plan" -ne $((all_ok + not_ok)) ]; then
        echo "not ok - $bin: planned $plan tests, ran $((all_ok + not_ok))"
        failed=$((failed + 1))
    elif [ "$rc" -ne 0 ] && [ "$not_ok" -eq 0 ]; then
        echo "not ok - $bin: exit status $rc with no failing test"
        failed=$((failed + 1))
    fi
done

# ---------------------------------------------------------------- busted
echo "== busted specs"
# shellcheck disable=SC2086  # BUSTED is a command with arguments
{ with_timeout "$SPEC_TIMEOUT" $BUSTED --output=spec/summary_output.lua ${SPECS:-spec/} 2>&1
  echo $? >"$tmp/rc"; } | tee "$tmp/busted"
rc=$(cat "$tmp/rc")
summary=$(grep '^#summary passed=' "$tmp/busted" | tail -n 1)
if [ -n "$summary" ]; then
    b_passed=$(echo "$summary" | sed 's/.* passed=\([0-9]*\).*/\1/')
    b_failed=$(echo "$summary" | sed 's/.* failed=\([0-9]*\).*/\1/')
    b_errors=$(echo "$summary" | sed 's/.* errors=\([0-9]*\).*/\1/')
    passed=$((passed + b_passed))
    failed=$((failed + b_failed + b_errors))
    if [ "$rc" -ne 0 ] && [ $((b_failed + b_errors)) -eq 0 ]; then
        echo "busted: exit status $rc although every spec passed (crash at exit?)"
        failed=$((failed + 1))
    fi
else
    # Crashed (or timed out) mid-run: count what was reported, plus the crash.
    b_passed=$(count '^  ok    ' "$tmp/busted")
    b_failed=$(grep -c '^  \(FAIL\|ERROR\) ' "$tmp/busted")
    echo "busted: crashed or timed out (exit status $rc) before its summary"
    passed=$((passed + b_passed))
    failed=$((failed + b_failed + 1))
fi

stop_leftovers
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && exit 0
exit 1
