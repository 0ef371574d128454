/*
 * The filter tree of mqtt.core (lua_route.c): topic filters stored by level
 * for the Lua half's routing of callbacks. Private to the Lua binding.
 */
#ifndef MQTT_LUA_ROUTE_H
#define MQTT_LUA_ROUTE_H

#include "compat.h"

/** Adds filter_tree, tree_add, tree_remove and tree_match to the module
 * table at the top of the stack. */
__attribute__((visibility("hidden"))) void mqtt__lua_route_open(lua_State *L);

#endif
