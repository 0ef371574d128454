/*
 * For the C tests that embed Lua 5.4 with mqtt.core linked in: a state whose
 * require('mqtt.core') finds the binding and whose require('mqtt') loads the
 * sources under lua/ (the tests run from the repository root, as make does).
 */
#ifndef ZMQTT_LUA_HOST_H
#define ZMQTT_LUA_HOST_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_mqtt_core(lua_State *L);

/* alloc NULL: Lua's own allocator. */
static inline lua_State *lua_host_state(lua_Alloc alloc, void *ud)
{
    lua_State *L = alloc ? lua_newstate(alloc, ud) : luaL_newstate();
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_mqtt_core);
    lua_setfield(L, -2, "mqtt.core");
    lua_getglobal(L, "package");
    lua_pushliteral(L, "lua/?.lua;lua/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 2);
    return L;
}

#endif
