#!/bin/sh
# examples/openresty/run.sh: nginx + zmqtt in the foreground (`make openresty`).
# Renders nginx.conf.in into a temp dir (the nginx prefix), starts a private
# mosquitto on a free 127.0.0.1 port unless MQTT_BROKER=host:port is given,
# and runs nginx (master + 2 workers) on 127.0.0.1:${HTTP_PORT:-8080} until
# Ctrl-C; then stops nginx and mosquitto by PID and removes the temp dir.
# Needs build/luajit/mqtt/core.so (make LUA=luajit).

set -u

cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)
http_port=${HTTP_PORT:-8080}
client_id=${CLIENT_ID:-zmqtt-nginx-$http_port}
topic=${TOPIC:-zmqtt/in/#}

if [ ! -f "$root/build/luajit/mqtt/core.so" ]; then
    echo "openresty: build/luajit/mqtt/core.so is missing: run make LUA=luajit" >&2
    exit 2
fi

dir=""
broker_pid=""
nginx_pid=""

# True while the PID exists and is not a zombie (PID 1 may not reap it).
alive() {
    [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat"
}

# Sends SIGNAL to PID and waits up to 10 s for it to go, then SIGKILL.
# shellcheck disable=SC2317  # called from the EXIT trap
stop_pid() {
    kill "-$2" "$1" 2>/dev/null
    i=0
    while [ "$i" -lt 100 ] && alive "$1"; do
        sleep 0.1
        i=$((i + 1))
    done
    alive "$1" && kill -KILL "$1" 2>/dev/null
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    # QUIT is nginx's graceful shutdown: workers close their MQTT clients.
    [ -n "$nginx_pid" ] && stop_pid "$nginx_pid" QUIT
    [ -n "$broker_pid" ] && stop_pid "$broker_pid" TERM
    [ -n "$dir" ] && rm -rf "$dir"
    nginx_pid="" broker_pid="" dir=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

dir=$(mktemp -d -t zmqtt-nginx.XXXXXX) || exit 2
mkdir -p "$dir/tmp"

if [ -n "${MQTT_BROKER:-}" ]; then
    mqtt_host=${MQTT_BROKER%:*}
    mqtt_port=${MQTT_BROKER##*:}
    [ "$mqtt_port" = "$MQTT_BROKER" ] && mqtt_port=1883
else
    mqtt_host=127.0.0.1
    mqtt_port=$(lua5.4 -e 'local s = require("socket"); local srv = assert(s.bind("127.0.0.1", 0));
                           local _, p = srv:getsockname(); srv:close(); io.write(p)') || exit 2
    {
        echo "listener $mqtt_port 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_dest file $dir/mosquitto.log"
        [ "$(id -u)" = 0 ] && echo "user root"
    } >"$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.out" 2>&1 &
    broker_pid=$!
    i=0
    until grep -q " running" "$dir/mosquitto.log" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 50 ] || ! alive "$broker_pid"; then
            echo "openresty: mosquitto did not start" >&2
            cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2 2>/dev/null
            exit 1
        fi
        sleep 0.1
    done
fi

sed -e "s|@ROOT@|$root|g" -e "s|@USER@|$(id -un)|g" -e "s|@HTTP_PORT@|$http_port|g" \
    -e "s|@MQTT_HOST@|$mqtt_host|g" -e "s|@MQTT_PORT@|$mqtt_port|g" \
    -e "s|@CLIENT_ID@|$client_id|g" -e "s|@TOPIC@|$topic|g" \
    examples/openresty/nginx.conf.in >"$dir/nginx.conf"

nginx -p "$dir/" -c "$dir/nginx.conf" -e stderr -t -q || exit 1
nginx -p "$dir/" -c "$dir/nginx.conf" -e stderr &
nginx_pid=$!
cat <<EOF
openresty: nginx (pid $nginx_pid) on http://127.0.0.1:$http_port, broker $mqtt_host:$mqtt_port,
subscribed to $topic; prefix $dir. Try, in another shell:
  curl -d 'hello' 'http://127.0.0.1:$http_port/publish?topic=zmqtt/in/hi&qos=1'
  mosquitto_pub -h $mqtt_host -p $mqtt_port -t zmqtt/in/hi -m 'from MQTT'
  curl 'http://127.0.0.1:$http_port/messages?format=text'
  nginx -p $dir/ -c $dir/nginx.conf -e stderr -s reload
Ctrl-C stops nginx and the broker.
EOF
wait "$nginx_pid"
status=$?
nginx_pid=""
exit $status
