/* Temporary: replaced by the mbedtls implementation. */
#include <lauxlib.h>

#include "lua_tls.h"

static int l_is_ssl_context(lua_State *L)
{
    lua_pushboolean(L, 0);
    return 1;
}

void mqtt__lua_tls_open(lua_State *L)
{
    lua_pushcfunction(L, l_is_ssl_context);
    lua_setfield(L, -2, "is_ssl_context");
}

mqtt_tls_config *mqtt__lua_tls_check(lua_State *L, int idx)
{
    if (!lua_isnoneornil(L, idx))
        luaL_argerror(L, idx, "TLS is not built");
    return NULL;
}
