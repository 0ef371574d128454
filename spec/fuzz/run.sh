#!/bin/sh
# spec/fuzz/run.sh: builds the libFuzzer targets of spec/fuzz/ with clang and
# runs each for FUZZ_SECONDS over a scratch copy of its committed corpus
# (spec/fuzz/corpus/<target>/), FUZZ_JOBS targets at a time [the CPU count].
# Usage: FUZZ_SECONDS=10 sh spec/fuzz/run.sh [target...]   (default: all)
# Prints per target the executions libFuzzer ran and whether it crashed; ends
# with "fuzz: N targets, M failed" and the total in the suite's own form
# ("P passed, M failed", a target being one test); exits 1 when M > 0. A crashing
# (or leaking, hanging, out-of-memory) input is copied to
# spec/fuzz/corpus/<target>/crash-<sha1>, where every later run replays it.
# The library objects are compiled with the same sanitizers as the targets.
# Replay one input: build/fuzz/<target> <file> (FUZZ_TRACE=1 makes
# fuzz_client_stream and fuzz_client_stream_v5 print the conversation); seeds:
# lua5.4 spec/fuzz/seeds.lua.

set -u

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
FUZZ_CC=${FUZZ_CC:-clang}
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
FUZZ_FLAGS=${FUZZ_FLAGS:-}   # extra libFuzzer flags, e.g. -dict=... or -seed=1
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}

cd "$(dirname "$0")/../.." || exit 2

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
    echo "fuzz: $FUZZ_CC not found (Debian: apt-get install clang)"
    exit 2
fi

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
CFLAGS="-std=c11 -D_GNU_SOURCE -pthread -g -O1 -fno-omit-frame-pointer \
    -Iinclude -Isrc/base -Isrc/codec -Isrc/session -Isrc/store -Isrc/transport -Isrc/client \
    -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
LIBS="-pthread -lcares -lwslay -lmbedtls -lmbedx509 -lmbedcrypto"

# The client target swaps in a socketpair for TCP, a movable clock, and a
# epoll_wait that reports when the I/O loop is idle (see fuzz_client.h).
extra_ldflags() {
    case $1 in
    fuzz_client_stream | fuzz_client_stream_v5) echo "-Wl,--wrap=mqtt__transport_open -Wl,--wrap=mqtt__now -Wl,--wrap=epoll_wait" ;;
    *) echo "" ;;
    esac
}

if [ $# -gt 0 ]; then
    targets=$*
else
    targets=$(for f in spec/fuzz/fuzz_*.c; do basename "$f" .c; done)
fi

# ---- build -----------------------------------------------------------------

mkdir -p "$FUZZ_BUILD/obj" || exit 2
tmp=$(mktemp -d -t zmqtt-fuzz.XXXXXX) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

# A pool of FUZZ_JOBS background jobs: pool_add starts one once a slot is
# free; pool_wait waits for the rest. Each job reports its own failure.
pool_pids=""
pool_add() {
    # shellcheck disable=SC2086
    set -- $pool_pids
    if [ $# -ge "$FUZZ_JOBS" ]; then
        wait "$1"
        shift
        pool_pids=$*
    fi
}
pool_wait() {
    for p in $pool_pids; do wait "$p"; done
    pool_pids=""
}

objs=""
for src in src/base/*.c src/codec/*.c src/session/*.c src/store/*.c src/transport/*.c src/client/*.c; do
    layer=$(basename "$(dirname "$src")")
    obj=$FUZZ_BUILD/obj/$layer-$(basename "$src" .c).o
    pool_add
    # -fsanitize=fuzzer-no-link: coverage for libFuzzer without a second main.
    # shellcheck disable=SC2086
    { $FUZZ_CC $CFLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
        -c "$src" -o "$obj" || { echo "fuzz: building $src failed"; : >"$tmp/build-failed"; }; } &
    pool_pids="$pool_pids $!"
    objs="$objs $obj"
done
pool_wait
[ -e "$tmp/build-failed" ] && exit 2
for t in $targets; do
    [ -f "spec/fuzz/$t.c" ] || { echo "fuzz: no target spec/fuzz/$t.c"; exit 2; }
    pool_add
    # shellcheck disable=SC2046,SC2086
    { $FUZZ_CC $CFLAGS $SAN -o "$FUZZ_BUILD/$t" "spec/fuzz/$t.c" $objs $(extra_ldflags "$t") \
        $LIBS || { echo "fuzz: building $t failed"; : >"$tmp/build-failed"; }; } &
    pool_pids="$pool_pids $!"
done
pool_wait
[ -e "$tmp/build-failed" ] && exit 2

# ---- run -------------------------------------------------------------------

run_one() {
    t=$1
    seeds=spec/fuzz/corpus/$t
    work=$tmp/$t/corpus
    art=$tmp/$t/artifacts
    log=$tmp/$t/log
    mkdir -p "$work" "$art" "$seeds"
    cp "$seeds"/* "$work"/ 2>/dev/null
    # Inputs that take long (the session filling all 65535 ids) get less of the
    # time budget; LeakSanitizer checks each input libFuzzer suspects of leaking.
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        "$FUZZ_BUILD/$t" "$work" -max_total_time="$FUZZ_SECONDS" -timeout=5 \
        -rss_limit_mb=2048 -print_final_stats=1 -entropic_scale_per_exec_time=1 \
        -artifact_prefix="$art/" $FUZZ_FLAGS >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "$work" -type f | wc -l)
    saved=""
    for a in "$art"/*; do
        [ -f "$a" ] || continue
        case $(basename "$a") in
        crash-* | leak-* | timeout-* | oom-*) ;;
        *) continue ;;
        esac
        name=crash-$(sha1sum "$a" | cut -c1-40)
        cp "$a" "$seeds/$name"
        saved="$saved $seeds/$name ($(basename "$a" | cut -d- -f1))"
    done
    if [ "$rc" -ne 0 ] || [ -n "$saved" ]; then
        : >"$tmp/$t/failed"
        echo "fuzz: $t FAILED after ${execs:-?} executions (exit $rc)"
        # The report, and the stack frames in our code (not libFuzzer's or libc's).
        grep -E "^(==[0-9]+==ERROR|SUMMARY|fuzz check failed)|^ +#[0-9]+ .*(src|spec/fuzz)/" \
            "$log" | head -n 30 | sed 's/^/    /'
        for a in "$art"/*; do
            [ -f "$a" ] && echo "    input $(basename "$a"), first 64 bytes:" &&
                head -c 64 "$a" | od -An -tx1 | sed 's/^/   /'
        done
        [ -n "$saved" ] && echo "    input saved as regression seed:$saved"
        echo "    full log: $FUZZ_BUILD/$t.log"
        cp "$log" "$FUZZ_BUILD/$t.log"
    else
        echo "fuzz: $t ok: ${execs:-?} executions in ${FUZZ_SECONDS}s, no crash" \
            "(corpus $corpus inputs)"
    fi
}

# Each target's report goes to a file, printed in order once all are done.
total=0
for t in $targets; do
    total=$((total + 1))
    mkdir -p "$tmp/$t"
    pool_add
    run_one "$t" >"$tmp/$t/report" 2>&1 &
    pool_pids="$pool_pids $!"
done
pool_wait
failed=0
for t in $targets; do
    cat "$tmp/$t/report"
    [ -e "$tmp/$t/failed" ] && failed=$((failed + 1))
done
echo "fuzz: $total targets, $failed failed"
echo "$((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
