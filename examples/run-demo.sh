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

if [ -n "${MQTT_BROKER:-}" ]; then
    case $MQTT_BROKER in
        \[*\]:*) host=${MQTT_BROKER%\]:*}; host=${host#\[}; port=${MQTT_BROKER##*\]:} ;;
        *:*:*)   host=$MQTT_BROKER; port=1883 ;;          # a bare IPv6 address
        *:*)     host=${MQTT_BROKER%:*}; port=${MQTT_BROKER##*:} ;;
        *)       host=$MQTT_BROKER; port=1883 ;;
    esac
    echo "demo: using broker $host port $port"
    # shellcheck disable=SC2086  # LUA may carry arguments
    exec $LUA examples/demo.lua "$host" "$port"
fi

dir=""
broker_pid=""
demo_pid=""

# True while the PID exists and is not a zombie.
# shellcheck disable=SC2317  # called from the EXIT trap
alive() {
    [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat"
}

# shellcheck disable=SC2317  # the EXIT trap
stop_broker() {
    # Interrupted while the demo runs: it goes first (it ignores SIGINT in background).
    [ -n "$demo_pid" ] && kill -TERM "$demo_pid" 2>/dev/null
    if [ -n "$broker_pid" ]; then
        kill -TERM "$broker_pid" 2>/dev/null
        i=0
        while [ "$i" -lt 30 ] && alive "$broker_pid"; do
            sleep 0.1
            i=$((i + 1))
        done
        alive "$broker_pid" && kill -KILL "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null
        broker_pid=""
    fi
    [ -n "$dir" ] && rm -rf "$dir"
    dir=""
}
trap stop_broker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

dir=$(mktemp -d -t zmqtt-demo.XXXXXX) || exit 2
# shellcheck disable=SC2086
port=$($LUA -e 'local s = require("socket"); local srv = assert(s.bind("127.0.0.1", 0));
                local _, p = srv:getsockname(); srv:close(); io.write(p)') || exit 2
{
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "log_dest file $dir/mosquitto.log"
    [ "$(id -u)" = 0 ] && echo "user root"   # else it switches to "mosquitto"
} >"$dir/mosquitto.conf"

mosquitto -c "$dir/mosquitto.conf" >"$dir/stdout.log" 2>&1 &
broker_pid=$!
echo "$broker_pid" >"$dir/mosquitto.pid"

# Wait (up to 5 s) until it accepts connections.
# shellcheck disable=SC2086
if ! $LUA - "$port" "$broker_pid" <<'LUA'
local socket = require("socket")
local port, pid = tonumber(arg[1]), arg[2]
local deadline = socket.gettime() + 5
while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then
        os.exit(0)
    end
    local f = io.open("/proc/" .. pid .. "/stat")
    local stat = f and f:read("a") or ""
    if f then f:close() end
    if not stat:match("^%d+ %(.*%) [^Z]") then
        os.exit(1)                               -- mosquitto died
    end
    socket.sleep(0.02)
end
os.exit(1)
LUA
then
    echo "demo: mosquitto did not start on 127.0.0.1:$port" >&2
    cat "$dir/mosquitto.log" "$dir/stdout.log" >&2 2>/dev/null
    exit 1
fi

echo "demo: private mosquitto (pid $broker_pid) on 127.0.0.1 port $port"
# In the background so that a signal reaches the traps at once.
# shellcheck disable=SC2086
$LUA examples/demo.lua 127.0.0.1 "$port" &
demo_pid=$!
wait "$demo_pid"
status=$?
demo_pid=""
exit $status
