#!/bin/sh
# examples/run-demo.sh: runs examples/demo.lua against a broker (`make demo`).
# With MQTT_BROKER=host:port it uses that broker; otherwise it starts a private
# mosquitto on a free 127.0.0.1 port (config in a temp dir, PID recorded) and
# stops it by PID on exit, whatever happens. Exits with the demo's status.

set -u

LUA=${LUA:-lua5.4}
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
: "${LUA_PATH:=$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;}"
: "${LUA_CPATH:=$root/build/?.so;;}"
export LUA_PATH LUA_CPATH
. examples/broker.sh

if [ -n "${MQTT_BROKER:-}" ]; then
    parse_broker "$MQTT_BROKER"
    echo "demo: using broker $broker_host port $broker_port"
    # shellcheck disable=SC2086  # LUA may carry arguments
    exec $LUA examples/demo.lua "$broker_host" "$broker_port"
fi

dir=""
broker_pid=""
demo_pid=""

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    # Interrupted while the demo runs: it goes first (it ignores SIGINT in background).
    [ -n "$demo_pid" ] && kill -TERM "$demo_pid" 2>/dev/null
    [ -n "$broker_pid" ] && stop_pid "$broker_pid" TERM
    [ -n "$dir" ] && rm -rf "$dir"
    demo_pid="" broker_pid="" dir=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

dir=$(mktemp -d -t zmqtt-demo.XXXXXX) || exit 2
start_broker "$dir" || exit 1

echo "demo: private mosquitto (pid $broker_pid) on 127.0.0.1 port $broker_port"
# In the background so that a signal reaches the traps at once.
# shellcheck disable=SC2086
$LUA examples/demo.lua 127.0.0.1 "$broker_port" &
demo_pid=$!
wait "$demo_pid"
status=$?
demo_pid=""
exit $status
