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
. examples/broker.sh
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
    parse_broker "$MQTT_BROKER"
else
    start_broker "$dir" || exit 1
fi
mqtt_host=$broker_host
mqtt_port=$broker_port

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
