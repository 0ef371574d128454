/*
 * The protocol tables of mqtt.h as Lua values (lua/proto.c): packet names,
 * MQTT 5.0 properties, reason code names. Private to the Lua binding.
 */
#ifndef MQTT_LUA_PROTO_H
#define MQTT_LUA_PROTO_H

#include "compat.h"

/** Adds protocols, packet_names, packet_types, properties, property_names, reasons and
 * reason_name to the module table at the top of the stack. */
__attribute__((visibility("hidden"))) void mqtt__lua_proto_open(lua_State *L);

#endif
