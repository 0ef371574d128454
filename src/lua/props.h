/*
 * MQTT 5.0 properties between Lua tables and mqtt_property arrays (props.c),
 * and the binding's way of raising its error values (core.c). Private to
 * the Lua binding.
 */
#ifndef MQTT_LUA_PROPS_H
#define MQTT_LUA_PROPS_H

#include "compat.h"
#include "mqtt.h"

/** The client metatable; core.init keeps the error constructor in it. */
#define MQTT_LUA_CLIENT_MT "zmqtt.core.client"

/**
 * Raises the MQTTError of a status name with message, made by the
 * constructor core.init keeps (a plain string error before core.init ran).
 * Never returns.
 */
__attribute__((visibility("hidden"), noreturn)) void
mqtt__lua_raise(lua_State *L, const char *name, const char *message);

/**
 * Reads the properties table at idx (nil or none: no properties) for
 * packet_type (MQTT_PUBLISH, ..., or MQTT_WILL_PROPERTIES) into an array
 * kept in a userdata pushed on the stack (nil when there are none; always
 * +1), so an error raised half-way leaks nothing. *n receives the count.
 * Names are the property table's; the array borrows the table's strings, so
 * the table must stay referenced (an argument) while the array is used. A
 * property that is unknown, mistyped, out of range, not allowed in that
 * packet or not one a client sends raises MQTTError "invalid argument":
 * "bad argument #arg to 'fname' (property "x" ...)".
 */
__attribute__((visibility("hidden"))) const mqtt_property *
mqtt__lua_props_check(lua_State *L, int idx, int packet_type, const char *fname, int arg,
                      size_t *n);

/**
 * Pushes the property block (len bytes, as a packet carried it and the codec
 * validated it) of a packet of packet_type as a table: {name = value};
 * user_property a list of {name, value}; a property that may repeat in that
 * packet (subscription_identifier in PUBLISH) a list. nil for an empty block.
 * Stack: +1.
 */
__attribute__((visibility("hidden"))) void mqtt__lua_props_push(lua_State *L,
                                                                const uint8_t *block, size_t len,
                                                                int packet_type);

#endif
