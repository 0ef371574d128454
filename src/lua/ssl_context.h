/*
 * The TLS part of mqtt.core: ssl_context userdata holding a reference to an
 * mqtt_tls_config. Private to the Lua binding.
 */
#ifndef MQTT_LUA_TLS_H
#define MQTT_LUA_TLS_H

#include "compat.h"

#include "mqtt.h"

/** Adds ssl_context(options_table) to the module table at the top of the stack. */
__attribute__((visibility("hidden"))) void mqtt__lua_tls_open(lua_State *L);
/** The config of the ssl_context at idx, NULL when idx is nil or none; raises otherwise. */
__attribute__((visibility("hidden"))) mqtt_tls_config *mqtt__lua_tls_check(lua_State *L, int idx);

#endif
