# examples/broker.sh: sourced by the example runners (run-demo.sh,
# openresty/run.sh) for what they share: where the broker is, a private
# mosquitto on a free 127.0.0.1 port, and stopping processes by PID.
# shellcheck shell=sh

# True while the PID exists and is not a zombie (PID 1 may not reap it).
alive() {
    [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat"
}

# stop_pid PID SIGNAL: sends SIGNAL, waits up to 10 s for PID to go, then SIGKILL.
# shellcheck disable=SC2317  # called from EXIT traps
stop_pid() {
    kill "-$2" "$1" 2>/dev/null
    i=0
    while [ "$i" -lt 100 ] && alive "$1"; do
        sleep 0.1
        i=$((i + 1))
    done
    alive "$1" && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# parse_broker HOST:PORT: sets broker_host and broker_port (default 1883);
# IPv6 addresses as [addr]:port or bare.
parse_broker() {
    case $1 in
        \[*\]:*) broker_host=${1%\]:*}; broker_host=${broker_host#\[}; broker_port=${1##*\]:} ;;
        *:*:*)   broker_host=$1; broker_port=1883 ;;
        *:*)     broker_host=${1%:*}; broker_port=${1##*:} ;;
        *)       broker_host=$1; broker_port=1883 ;;
    esac
}

# start_broker DIR: starts mosquitto on a free 127.0.0.1 port with its config
# and logs in DIR; sets broker_host, broker_port and broker_pid, and returns
# once it accepts connections (non-zero, logs printed, if it does not in 5 s).
start_broker() {
    broker_host=127.0.0.1
    broker_port=$(${LUA:-lua5.4} -e 'local s = require("socket"); local srv = assert(s.bind("127.0.0.1", 0));
                             local _, p = srv:getsockname(); srv:close(); io.write(p)') || return 2
    {
        echo "listener $broker_port 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_dest file $1/mosquitto.log"
        [ "$(id -u)" = 0 ] && echo "user root"   # else it switches to "mosquitto"
    } >"$1/mosquitto.conf"
    mosquitto -c "$1/mosquitto.conf" >"$1/mosquitto.out" 2>&1 &
    broker_pid=$!
    echo "$broker_pid" >"$1/mosquitto.pid"
    i=0
    until grep -q " running" "$1/mosquitto.log" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 50 ] || ! alive "$broker_pid"; then
            echo "mosquitto did not start on 127.0.0.1:$broker_port" >&2
            cat "$1/mosquitto.out" "$1/mosquitto.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
}
