#!/usr/bin/python3
"""websockify (Debian's WebSocket-to-TCP gateway) answering the "mqtt"
subprotocol, so spec/c/test_ws_broker.c can put a real WebSocket server in
front of a real mosquitto (Debian's mosquitto is built without websockets).
Arguments as websockify's own: [--ssl-only --cert C --key K] SRC DST."""
import sys

from websockify import websockifyserver
from websockify.websocketproxy import websockify_init


def select_mqtt(_self, protocols):
    """websockify knows only "binary"; a broker must pick "mqtt" (MQTT-6.0.0-4)."""
    offered = [p.strip() for p in protocols]
    return "mqtt" if "mqtt" in offered else ""


websockifyserver.CompatibleWebSocket.select_subprotocol = select_mqtt
sys.argv[0] = "websockify"
websockify_init()
