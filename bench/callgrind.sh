#!/bin/sh
# bench/callgrind.sh: instructions per message (valgrind's callgrind, which
# counts the same on a busy machine) of bench/zmqtt_bench.lua publishing or
# receiving against bench/fakebroker, for one zmqtt tree. Each scenario runs
# twice, with N and 2N messages: the difference over N leaves out the start,
# the connect and the end. Every thread of the process is counted.
#
# Usage: sh bench/callgrind.sh [TREE] [N]
#   TREE  a zmqtt checkout with its build/ (default: this one); e.g.
#         build/bench/baseline-<rev>, which BENCH_BASELINE builds
#   N     messages of the QoS 1 run [20000]; QoS 0 and receive take 2.5 N,
#         QoS 2 N / 2
# Needs build/bench/fakebroker (make bench builds it) and valgrind.

set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "${1:-$ROOT}" && pwd)
N=${2:-20000}
BIN=$ROOT/build/bench
LUA=${LUA:-lua5.4}
tmp=$(mktemp -d -t zmqtt-callgrind.XXXXXX) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

[ -x "$BIN/fakebroker" ] || { echo "callgrind: no $BIN/fakebroker (make bench builds it)"; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind: valgrind not found"; exit 2; }

# Instructions of one run: scenario (pub or sub), QoS, count.
count() {
    if [ "$1" = sub ]; then
        "$BIN/fakebroker" blast -n "$3" -s 32 -t bench/blast >"$tmp/port" 2>/dev/null &
    else
        "$BIN/fakebroker" sink >"$tmp/port" 2>/dev/null &
    fi
    broker=$!
    port=
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$(sed -n 's/^port \([0-9]*\).*/\1/p' "$tmp/port")
        [ -n "$port" ] && break
        sleep 0.2
    done
    if [ "$1" = sub ]; then
        set -- sub 127.0.0.1 "$port" "$3" bench/blast
    else
        set -- pub 127.0.0.1 "$port" "$2" "$3" 32 1000
    fi
    LUA_PATH="$TREE/lua/?.lua;$TREE/lua/?/init.lua;;" LUA_CPATH="$TREE/build/?.so;;" \
        valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
        "$LUA" "$ROOT/bench/zmqtt_bench.lua" "$@" >/dev/null 2>"$tmp/err"
    kill "$broker"
    wait "$broker" 2>/dev/null
    sed -n 's/^summary: *//p; s/^totals: *//p' "$tmp/out" | head -n 1
}

per_message() { # label scenario qos n
    a=$(count "$2" "$3" "$4")
    b=$(count "$2" "$3" $(($4 * 2)))
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "callgrind: $1 failed (see $tmp/err)"
        exit 1
    fi
    echo "$1: $(((b - a) / $4)) instructions per message"
}

echo "zmqtt tree $TREE"
per_message "publish QoS 0" pub 0 $((N * 5 / 2))
per_message "publish QoS 1" pub 1 "$N"
per_message "publish QoS 2" pub 2 $((N / 2))
per_message "receive QoS 0" sub 0 $((N * 5 / 2))
